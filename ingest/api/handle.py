"""A run in progress, under the caller's control: `open_upload` and `Upload`.

Owns the lifecycle of one run inside the caller's event loop: open (journal,
emulator, sessions, adapter, engine), run in a task of its own, stop on
request, and close everything in order.

How it works: `Upload.__aenter__` does the checks and opens of `wiring` (the
journal's replay in a worker thread, so a large journal does not stall the
loop) and starts the engine in a task group it owns; the block then watches
(`snapshot`), steers (`drain`, `abort`) or waits (`wait`). Leaving the block
normally waits for the run to end; leaving it by an exception (or a
cancellation) aborts the run first. The `Result` is counted from the journal
once the engine has returned and the journal is synced.

Invariants: no signal handler is installed and nothing is printed; errors of
configuration and manifest are raised by `open_upload`, of the journal by
`__aenter__`, all before any request; a stopped run is a `Result` with a
`stop_reason`, not an exception, also one stopped before it started (no room
to open its journal: `StopReason.JOURNAL`, as a full disk mid-run; the block
then has one snapshot and nothing to steer).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ingest.api import arguments, wiring
from ingest.api.result import Result, counted, still, unopened
from ingest.errors import JournalError, out_of_room

if TYPE_CHECKING:
    from ingest.config import Settings
    from ingest.engine import Engine, Outcome, Snapshot
    from ingest.engine.outcomes import Observer
    from ingest.errors import ManifestError
    from ingest.item import Item
    from ingest.journal import Journal
    from ingest.manifest import ManifestFormat
    from ingest.providers.base import Provider
    from ingest.sim import SimServer, SimSettings


class Upload:
    """One run of a manifest through a provider. Use as `async with open_upload(...)`.

    Made from a `wiring.Plan` (what `open_upload` does after its checks); the
    keywords are `open_upload`'s, with `sim` the emulator's settings or None.
    """

    def __init__(
        self,
        plan: wiring.Plan,
        *,
        sim: SimSettings | None = None,
        observer: Observer | None = None,
        force: bool = False,
        retry_failed: bool = False,
        reupload_changed: bool = False,
        wrap: Callable[[Provider], Provider] | None = None,
    ) -> None:
        self.plan = plan
        self._sim = sim
        self._observer = observer
        self._force = force
        self._retry_failed = retry_failed
        self._reupload_changed = reupload_changed
        self._wrap = wrap
        self._stack = contextlib.AsyncExitStack()
        self._tasks: anyio.abc.TaskGroup | None = None
        self._engine: Engine | None = None
        self._finished: anyio.Event | None = None  # made in the loop, on entering
        self.emulator: SimServer | None = None  # the in-process emulator of a `sim` run
        self._result: Result | None = None
        self._error: Exception | None = None
        self.resumed = False  # the journal recorded an earlier run
        self.already_done = 0  # items done before this run
        self.notes: tuple[str, ...] = ()  # to show once (an older journal's unchecked binding)

    @property
    def journal(self) -> Path | None:
        """The run's journal; None for a coordinated run (its record is the coordinator's)."""
        return self.plan.journal

    @property
    def result(self) -> Result | None:
        """The run's `Result` once it has ended, else None."""
        return self._result

    # -- control -------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """This run's live counters and pacing state, frozen."""
        if self._engine is None and self._result is not None:  # stopped before it started
            return still(self._result)
        return self._open()[0].snapshot()

    async def snapshots(self, every: float = 1.0) -> AsyncIterator[Snapshot]:
        """A snapshot now, then every `every` seconds while the run goes on, then a last one."""
        if self._engine is None and self._result is not None:
            yield still(self._result)
            return
        engine, finished = self._open()
        while not finished.is_set():
            yield engine.snapshot()
            with anyio.move_on_after(every):
                await finished.wait()
        yield engine.snapshot()

    def drain(self) -> None:
        """Start no new items; finish those in flight, then end (`Result.drained`)."""
        if self._engine is not None or self._result is None:
            self._open()[0].drain()

    def abort(self) -> None:
        """End now (`StopReason.INTERRUPTED`); items in flight are redone by the next run."""
        if self._engine is not None or self._result is None:
            self._open()[0].abort()

    async def ended(self) -> None:
        """Wait for the run to end, raising nothing (`wait` then gives its `Result`)."""
        await self._running().wait()

    async def wait(self) -> Result:
        """Wait for the run to end; its journal counts and stop reason.

        Raises what ended the run if it was not a stop (a `JournalError` counting
        the journal at the end, a bug), as itself, never in an `ExceptionGroup`.
        """
        await self._running().wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None  # set before `_finished`
        return self._result

    def _running(self) -> anyio.Event:
        """Set when the run has ended; a `RuntimeError` outside the block."""
        if self._tasks is None or self._finished is None:
            raise RuntimeError("the upload is not open: use `async with ingest.open_upload(...)`")
        return self._finished

    def _open(self) -> tuple[Engine, anyio.Event]:
        if self._engine is None or self._finished is None:
            raise RuntimeError("the upload is not open: use `async with ingest.open_upload(...)`")
        return self._engine, self._finished

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Upload:
        from ingest.engine import Engine, EngineSettings
        from ingest.manifest import SeekAhead, read_manifest

        if self._finished is not None:
            raise RuntimeError("an Upload runs once: call open_upload again for another run")
        stack = self._stack
        finished = self._finished = anyio.Event()
        try:
            entries = read_manifest(self.plan.manifest, self.plan.format)
            stack.callback(entries.close)
            ahead = SeekAhead(self.plan.manifest, self.plan.format)  # the total, early
            stack.callback(ahead.cancel)
            try:
                journal, replay, self.notes = await anyio.to_thread.run_sync(
                    lambda: wiring.open_journal(
                        self.plan, force=self._force, emulator=self._sim is not None
                    )
                )
            except JournalError as exc:
                if not out_of_room(exc):
                    raise
                # No room to open the journal: the machine's state, not the call's. A
                # stopped run, as a full disk mid-run is, with nothing sent.
                self._result = await anyio.to_thread.run_sync(unopened, self.plan.journal, exc)
            if self._result is not None:
                await stack.aclose()
                self._tasks = tg = anyio.create_task_group()
                await tg.__aenter__()
                finished.set()
                return self
            stack.enter_context(journal)
            plan = self.plan
            if self._sim is not None:
                plan, self.emulator = await stack.enter_async_context(
                    wiring.emulate(plan, self._sim)
                )
            provider = await stack.enter_async_context(
                wiring.connect(
                    plan.cls, plan.provider_settings, plan.run, plan.secrets, replay.header.bind
                )
            )
            if self._wrap is not None:
                provider = self._wrap(provider)
            self._engine = engine = Engine(
                provider,
                journal,
                replay,
                EngineSettings(
                    plan.run,
                    retry_failed=self._retry_failed,
                    reupload_changed=self._reupload_changed,
                ),
                observer=self._observer,
                ahead=ahead,
            )
            self.resumed = replay.runs > 0
            self.already_done = len(replay.done)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        # Entered last and exited first, outside any other scope (anyio requires it).
        self._tasks = tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(self._run, engine, journal, entries, finished)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        finished = self._running()
        if exc is not None:
            self.abort()  # the block failed or was cancelled: stop the run now
        try:
            if exc is None:
                await finished.wait()  # the block ended: the run goes on to its end
        except BaseException as waiting:  # cancelled while waiting
            self.abort()
            await self._close(type(waiting), waiting, waiting.__traceback__)
            raise
        await self._close(exc_type, exc, tb)
        if exc is None and self._error is not None:
            raise self._error

    async def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tasks is not None
        try:
            if isinstance(exc, Exception):
                # The caller's own error, raised as it is (not in an ExceptionGroup):
                # the run was aborted, so the task group only waits for it to end.
                exc_type, exc, tb = None, None, None
            await self._tasks.__aexit__(exc_type, exc, tb)
        finally:
            with anyio.CancelScope(shield=True):  # sessions and journal close whatever happens
                await self._stack.aclose()

    async def _run(
        self,
        engine: Engine,
        journal: Journal,
        entries: Iterator[Item | ManifestError],
        finished: anyio.Event,
    ) -> None:
        try:
            outcome = await engine.run(entries)
            # The journal's fsync and, after a write error, its replay: off the caller's loop.
            self._result = await anyio.to_thread.run_sync(
                _result, engine, journal, outcome, self.already_done
            )
            self._error = engine.observer_error  # the caller's own, raised as itself
        except Exception as exc:  # not a stop: raised by `wait` and on leaving the block
            self._error = _unwrap(exc)
        finally:
            finished.set()


def _unwrap(exc: Exception) -> Exception:
    """The error an engine's task group wrapped: its only one, else its first `IngestError`.

    Several workers often meet the same error at once; the caller gets that error
    itself (what the CLI and a library user catch), and a group only when its
    errors are bugs of different kinds.
    """
    from ingest.errors import IngestError

    leaves = list({id(leaf): leaf for leaf in _leaves(exc)}.values())
    if len(leaves) == 1:
        return leaves[0]
    return next((leaf for leaf in leaves if isinstance(leaf, IngestError)), exc)


def _leaves(exc: Exception) -> Iterator[Exception]:
    if isinstance(exc, ExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _result(engine: Engine, journal: Journal, outcome: Outcome, already_done: int) -> Result:
    """The run's `Result` from the journal's counts (blocking: fsync, maybe a replay)."""
    from ingest.journal import replay

    journal.sync()
    unjournaled = 0
    if journal.error is None:
        counts, total, removed = engine.tally.counts(), engine.tally.total, engine.tally.removed
    else:  # records may not have reached the disk: count what did
        final = replay(journal.path)
        counts, removed = final.counts(), final.removed
        total = final.total if final.read_to_end else None
        # Done by this run but not on disk (a re-uploaded changed file counts here too).
        unjournaled = max(0, already_done + outcome.counters.done - len(final.done))
    return counted(
        counts,
        total=total,
        stop_reason=outcome.stop_reason,
        stop_message=outcome.stop_message,
        drained=outcome.drained,
        journal=journal.path,
        elapsed_s=outcome.elapsed_s,
        this_run=outcome.counters,
        removed=removed,
        unjournaled=unjournaled,
    )


def open_upload(
    source: str | os.PathLike[str],
    *,
    provider: str,
    journal: str | os.PathLike[str] | None = None,
    sim: bool | SimSettings = False,
    config: Path | str | Settings | None = None,
    observer: Observer | None = None,
    format: ManifestFormat | None = None,
    force: bool = False,
    retry_failed: bool = False,
    reupload_changed: bool = False,
    wrap: Callable[[Provider], Provider] | None = None,
    coordinator: str | None = None,
    run_name: str | None = None,
    **settings: Any,
) -> Upload:
    """A run of `source` to `provider`, to enter with `async with`.

    `source` is a manifest (JSON lines, CSV, a list of paths) or a folder;
    `format` forces how it is read. `journal` defaults to a file beside the
    manifest; a run on a journal that records an earlier one resumes it.
    `sim` uploads to an in-process emulator (True, or the
    `ingest.sim.SimSettings` to start it with). `config` is a TOML file (or a
    `Settings`); `**settings` are `[run]` or provider keys that override it
    (`put_concurrency=8`, `model_id="..."`). `observer` receives each item's
    outcome. `force` reuses a journal bound to another run; `retry_failed`
    also retries items that failed before; `reupload_changed` uploads again
    files changed since their upload. `wrap` instruments the adapter
    (benchmarks and tests wrap it to time or break its steps). `coordinator`
    (redis://HOST:PORT/DB) makes this call one worker of the run `run_name`
    shared through Redis, as `ingest run --coordinator` (`ingest.coord.front`):
    no `journal`, `sim`, `force` or `wrap` then, and the `Result` holds the
    run's counts.

    Raises `ConfigError` or `ManifestError` now, and `JournalError` on
    entering the block: nothing is sent before the block starts. No room to
    open the journal (a full disk, a quota) is not raised: the run is stopped
    before it starts, its `Result` (`wait`) at once, `StopReason.JOURNAL`.
    """
    arguments.check_call(
        source=source,
        journal=journal,
        config=config,
        sim=sim,
        observer=observer,
        flags={"force": force, "retry_failed": retry_failed, "reupload_changed": reupload_changed},
        settings=settings,
        provider=provider,
    )
    if coordinator is not None or run_name is not None:
        arguments.check_coordinated(
            coordinator, run_name, journal=journal, sim=sim, force=force, wrap=wrap
        )
    plan = wiring.prepare(
        source,
        provider=provider,
        journal=journal,
        config=config,
        settings=settings,
        format=format,
        keys="env" if sim is False else "sim",
    )
    if coordinator is not None:
        from ingest.coord.front import CoordinatedUpload
        from ingest.coord.worker import Coordinator

        return CoordinatedUpload(
            plan,
            Coordinator(coordinator, run_name),
            observer=observer,
            retry_failed=retry_failed,
            reupload_changed=reupload_changed,
        )
    return Upload(
        plan,
        sim=_sim_settings(sim),
        observer=observer,
        force=force,
        retry_failed=retry_failed,
        reupload_changed=reupload_changed,
        wrap=wrap,
    )


def _sim_settings(sim: bool | SimSettings) -> SimSettings | None:
    if sim is False:
        return None
    if sim is True:
        return wiring.sim_settings()
    return sim
