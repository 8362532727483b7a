"""One worker of a coordinated run: lease a chunk, run the unchanged engine on it, ship, ack.

Owns the loop every `ingest run --coordinator URL` process runs, and the
library's `run_worker`. How it works:

1. Connect (and check the server), read the manifest once for its layout
   and digest (a joiner whose manifest file is the planner's takes the
   plan's: `plan.known_layout`; a manifest of at most `KEEP_ENTRIES` is kept
   for the chunks, not parsed again), and plan the run or check this worker
   against its binding.
2. Open the provider's sessions once, then, until the run is done: take a
   chunk (`lease.Leases.take`) and run an `Engine` on it and the chunks after
   it (`feed.Feed`: the next lease is taken as the reader reaches a chunk's
   end, so the pipeline does not empty between chunks), on each chunk's lines
   not yet settled (`entries.ChunkReader`), with a scratch journal as the
   write-ahead log, the `Shipper` as its observer through the feed (and the
   receiver of its `up` records: `landing.ShippingEngine`), the `SharedPacer`
   as its API pacer; items another worker landed but did not finalize are
   given to the engine as a resumed journal's (`landing.resume`). A chunk
   whose every line has its outcome is shipped, then acknowledged, while the
   engine goes on; when the engine ends (no chunk to take at once, a drain, a
   stop), the chunks it did not finish are handed back. With no chunk to take
   while others hold leases, wait for them to finish or lapse (then reclaim).
   With `retry_failed`, a worker joining an ended run first makes its failed
   items pending again as new chunks (`retry.make_pending`).
3. Beside it: `renew` every lease/3; a fence that drains the engine (starts
   nothing more; its chunks go back) once the last renewal of a chunk it has
   not finished is older than lease - margin, or another worker has taken
   it; and the stop flag:
   a STOP-class error at any worker (a bad key) stops every worker.

Invariants: a chunk is acknowledged only when every outcome of its lines is
shipped; a worker that stops (a signal, a stop, the coordinator gone) leaves
its chunk unacknowledged, so another worker redoes only its unshipped lines;
the scratch journals (one per engine) live in a folder of `scratch` (removed at exit; a
dead worker's at the next start).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ingest import bandwidth
from ingest.clock import SYSTEM
from ingest.coord import CHUNK_LINES, LEASE_S
from ingest.coord.budget import Budget, SharedBytes, SharedPacer
from ingest.coord.connection import Connection, connect
from ingest.coord.entries import ChunkReader, Entry
from ingest.coord.feed import Fed, Feed
from ingest.coord.lease import Leases
from ingest.coord.namecounts import SharedNameCounts
from ingest.coord.names import BudgetKeys, RunKeys, account_digest, default_run_name
from ingest.coord.plan import (
    Layout,
    Planned,
    fingerprint,
    join_run,
    known_layout,
    read_layout,
    read_plan,
)
from ingest.coord.pushed import PauseWatch
from ingest.coord.record import Counts, Record, Shipper
from ingest.coord.retry import Retried, make_pending
from ingest.coord.scratch import scratch_folder
from ingest.engine.outcomes import Counters, Observer, Outcome, StopReason
from ingest.redact import redact

if TYPE_CHECKING:
    from ingest.api.wiring import Plan
    from ingest.engine import Engine
    from ingest.manifest import ManifestFormat
    from ingest.providers.base import Provider

WAIT_S = 1.0  # longest wait between looks for a chunk while others hold the rest
# A manifest of at most this many entries is parsed once: the planning read keeps them for
# the chunks (~800 bytes an entry: 16 MB at most; 5,000 entries cost ~0.3 s of CPU to parse).
KEEP_ENTRIES = 20_000


@dataclass(frozen=True, slots=True)
class Coordinator:
    """Where and how a worker joins a run."""

    url: str
    run_name: str | None = None  # None: `names.default_run_name`
    lease_s: float = LEASE_S
    chunk_lines: int = CHUNK_LINES
    burst: int | None = None  # the shared budget's burst (None: api_rate / 25, at least 1)


@dataclass(frozen=True, slots=True)
class WorkerResult:
    """How one worker ended, and the run's counts as the coordinator holds them."""

    run_name: str
    entries: int  # the manifest's entries (the run's total)
    counts: Counts  # the run's, every worker's
    this_worker: Counters
    chunks: int  # chunks this worker acknowledged
    poisoned: int  # chunks given up (by this worker)
    planned: bool  # this worker wrote the plan
    resumed: int = 0  # items another worker landed that this one finalized (or tried to)
    stop_reason: StopReason | None = None
    stop_message: str | None = None

    @property
    def settled(self) -> int:
        return self.counts.done + self.counts.failed + self.counts.rejected

    @property
    def complete(self) -> bool:
        """Every entry of the run is done (not failed or rejected), and nothing stopped."""
        return self.stop_reason is None and self.counts.done == self.entries


def _consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """One worker's run; `await run()` once. `drain` and `abort` may come from a signal."""

    def __init__(
        self,
        plan: Plan,
        coordinator: Coordinator,
        *,
        observer: Observer | None = None,
        retry_failed: bool = False,
        reupload_changed: bool = False,
        on_start: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.plan = plan
        self.coordinator = coordinator
        self.run_name = coordinator.run_name or default_run_name(plan.provider, plan.manifest)
        self.keys = RunKeys(self.run_name)
        self._observer = observer
        self._retry_failed = retry_failed
        self._reupload_changed = reupload_changed
        self._on_start = on_start
        self._engine: Engine | None = None
        self.last_engine: Engine | None = None  # the current engine, else the last one
        self._feed: Feed | None = None  # the chunks the engine is on
        self._acked = 0  # chunks this worker acknowledged
        self._draining = False
        self._stop: tuple[StopReason, str] | None = None
        self.counters = Counters()
        self.resumed = 0  # items another worker landed that this one finalized (or tried to)
        self.retried: Retried | None = None  # with retry_failed: what it made pending again

    @property
    def drained(self) -> bool:
        """`drain` or `abort` was called (or the stop flag obeyed)."""
        return self._draining

    def drain(self) -> None:
        """Take no new chunk; the engine finishes what is in flight."""
        self._draining = True
        if self._engine is not None:
            self._engine.drain()

    def abort(self, message: str = "interrupted") -> None:
        self._draining = True
        self._stop = self._stop or (StopReason.INTERRUPTED, message)
        if self._engine is not None:
            self._engine.abort(message)

    async def run(self) -> WorkerResult:
        """Work until the run is done (or this worker stops); raises `IngestError`s as themselves."""
        try:
            return await self._run()
        except ExceptionGroup as group:
            raise _first(group) from None

    async def _run(self) -> WorkerResult:
        from ingest.api import wiring

        plan, c = self.plan, self.coordinator
        async with connect(c.url) as conn:
            layout, kept = await self._layout(conn)
            endpoint = wiring.endpoint_of(plan.provider_settings.base_url)
            planned, bind = await join_run(
                conn, self.keys, layout, plan.provider, endpoint,
                lambda previous: plan.cls.run_params(plan.provider_settings, previous),
            )  # fmt: skip
            if planned.created:  # where `retry-failed` finds the manifest, unless told
                source = str(plan.manifest.absolute())
                await conn.call(lambda: conn.client.set(self.keys.source, source, nx=True))
            elif self._retry_failed:  # the failed items of an ended run: pending again
                self.retried = await make_pending(conn, self.keys, c.chunk_lines)
                planned = dataclasses.replace(planned, chunks=self.retried.total)
            if self._on_start is not None:
                self._on_start(self.run_name, planned.created)
            record = Record(conn, self.keys)
            leases = Leases(conn, self.keys, _consumer(), lease_s=c.lease_s)
            account = BudgetKeys(account_digest(plan.provider, endpoint, plan.secrets))
            pacer = self._pacer(conn, account)
            shipper = Shipper(record, self._observer)
            names = SharedNameCounts(conn, account)  # Autoenhance's same-name rule, shared
            async with (
                wiring.connect(
                    plan.cls, plan.provider_settings, plan.run, plan.secrets, bind, names
                ) as provider,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(pacer.run)
                if pacer.budget.rate is None:  # no rate: the pauses are pushed, not polled
                    tg.start_soon(PauseWatch(conn, pacer, SYSTEM).run)
                tg.start_soon(shipper.run)
                tg.start_soon(self._renew, leases, record)
                tg.start_soon(self._fence, leases)
                try:
                    with bandwidth.using(_bytes(conn, account, plan.run.max_mbps)):
                        chunks = await self._loop(provider, planned, leases, shipper, pacer, kept)
                finally:
                    with anyio.CancelScope(shield=True):
                        await shipper.flush()
                tg.cancel_scope.cancel()
            counts = await record.counts()
        reason, message = self._stop or (None, None)
        return WorkerResult(
            self.run_name, planned.entries, counts, self.counters, chunks,
            len(leases.poisoned), planned.created, self.resumed, reason, message,
        )  # fmt: skip

    async def _layout(self, conn: Connection) -> tuple[Layout, list[Entry] | None]:
        """The manifest's layout: the stored plan's if this is the planner's file, else read
        (and then its entries too, if at most KEEP_ENTRIES: the chunks are fed from them)."""
        plan, chunk_lines = self.plan, self.coordinator.chunk_lines
        printed = await anyio.to_thread.run_sync(fingerprint, plan.manifest, plan.format)
        known = known_layout(await read_plan(conn, self.keys), printed)
        if known is not None:
            return known, None
        return await anyio.to_thread.run_sync(
            read_layout, plan.manifest, plan.format, chunk_lines, KEEP_ENTRIES
        )

    def _pacer(self, conn: Connection, account: BudgetKeys) -> SharedPacer:
        from ingest.pacing import Pacer

        run = self.plan.run
        rate = run.api_rate or None
        burst = self.coordinator.burst or max(1, int((rate or 0) / 25))
        budget = Budget(conn, account, rate, burst)
        # The local pacer keeps this worker's pause; the budget learns the account's rate.
        local = Pacer(None, clock=SYSTEM, max_pause_s=run.max_pause_s, learns=False)
        return SharedPacer(budget, local, SYSTEM, max_pause_s=run.max_pause_s)

    async def _loop(
        self,
        provider: Provider,
        planned: Planned,
        leases: Leases,
        shipper: Shipper,
        pacer: SharedPacer,
        kept: list[Entry] | None,
    ) -> int:
        reader = ChunkReader(
            self.plan.manifest, self.plan.format, kept, duplicates=planned.duplicates
        )
        try:
            with scratch_folder() as scratch:
                engines = 0
                while not self._draining and self._stop is None:
                    first = await self._take(leases, shipper.record)
                    if first is None:
                        if await leases.finished() >= planned.chunks:
                            break  # the whole run is done
                        await anyio.sleep(min(WAIT_S, leases.lease_s / 3))
                        continue
                    engines += 1
                    path = Path(scratch) / f"engine-{engines}.journal"
                    feed = Feed(reader, first, lambda: self._take(leases, shipper.record), shipper)
                    outcome = await self._engine_run(provider, feed, leases, shipper, pacer, path)
                    path.unlink(missing_ok=True)
                    if outcome.stop_reason is not None:
                        message = outcome.stop_message or outcome.stop_reason.value
                        if outcome.stop_reason is StopReason.PROVIDER:  # a bad key: every worker
                            await shipper.record.set_stop(redact(message))
                        self._stop = self._stop or (outcome.stop_reason, message)
        finally:
            reader.close()
        return self._acked

    async def _take(self, leases: Leases, record: Record) -> Fed | None:
        """The next chunk and its record's state (settled lines, landed items), or None."""
        lease = await leases.take()
        if lease is None:
            return None
        skip, landed = await record.chunk_state(lease.chunk.first, lease.chunk.last)
        return Fed(lease, skip, landed)

    async def _engine_run(
        self,
        provider: Provider,
        feed: Feed,
        leases: Leases,
        shipper: Shipper,
        pacer: SharedPacer,
        journal_path: Path,
    ) -> Outcome:
        """One engine, fed chunk after chunk (`feed.Feed`), each acknowledged once complete;
        then what it took and did not finish goes back to the others."""
        from ingest.api import wiring
        from ingest.coord import landing
        from ingest.engine import EngineSettings

        plan = dataclasses.replace(self.plan, journal=journal_path)
        journal, replay, _ = await anyio.to_thread.run_sync(lambda: wiring.open_journal(plan))
        complete, completed = anyio.create_memory_object_stream[Fed](math.inf)
        with journal:
            settings = EngineSettings(
                plan.run, retry_failed=self._retry_failed, reupload_changed=self._reupload_changed
            )
            engine = landing.ShippingEngine(
                provider, journal, replay, feed.fitted(settings), observer=feed, api_pacer=pacer,
                shipper=shipper,
            )  # fmt: skip
            feed.bind(replay, complete.send_nowait, lambda: self._draining or _stopping(engine))
            self._engine = self.last_engine = engine
            self._feed = feed
            if self._draining:
                engine.drain()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._acks, completed, leases, shipper)
                    async with complete:  # closed at the end: the acks that are left, then done
                        outcome = await engine.run(feed.entries())
                        if outcome.stop_reason is None and not outcome.drained:
                            for fed in feed.ended():
                                complete.send_nowait(fed)
            finally:
                self._engine = self._feed = None
        self.resumed += feed.resumed
        _add(self.counters, outcome.counters)
        await shipper.flush()  # what the unfinished chunks did stays done
        for fed in feed.fed:
            if fed.acked:
                continue
            if fed.lease.valid(leases.lease_s, leases.margin_s):
                await leases.hand_back(fed.lease)  # unfinished: another worker takes it now
            else:
                leases.release(fed.lease)  # maybe another's already: it lapses back
        return outcome

    async def _acks(
        self, completed: MemoryObjectReceiveStream[Fed], leases: Leases, shipper: Shipper
    ) -> None:
        """Acknowledge each complete chunk once every outcome of its lines is shipped."""
        async with completed:
            async for fed in completed:
                await shipper.flush()
                self._acked += await leases.ack(fed.lease)
                fed.acked = True

    async def _renew(self, leases: Leases, record: Record) -> None:
        """Renew every lease/3, and obey the stop flag another worker may have set."""
        every = leases.lease_s / 3
        while True:
            await leases.renew()
            message = await record.stop_message()
            if message is not None and self._stop is None:
                self._stop = (StopReason.PROVIDER, message)
                self._draining = True
                if self._engine is not None:
                    self._engine.abort(message)
            await anyio.sleep(every)

    async def _fence(self, leases: Leases) -> None:
        """Drain the engine once its chunk's lease may have lapsed (local monotonic clock)."""
        while True:
            engine, feed = self._engine, self._feed
            if engine and feed and not feed.valid(leases.lease_s, leases.margin_s):
                engine.drain()  # start nothing more on a chunk that may be another's
            await anyio.sleep(leases.margin_s / 2)


def _stopping(engine: Engine) -> bool:
    return engine.draining or engine.stop_reason is not None


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a task group wrapped: its first `IngestError` (else the group itself)."""
    from ingest.errors import IngestError

    for exc in group.exceptions:
        found = _first(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if isinstance(found, IngestError):
            return found
    return group


def _add(total: Counters, more: Counters) -> None:
    for f in dataclasses.fields(Counters):
        setattr(total, f.name, getattr(total, f.name) + getattr(more, f.name))


async def run_worker(
    source: str | os.PathLike[str],
    *,
    provider: str,
    coordinator: str,
    run_name: str | None = None,
    lease_s: float = LEASE_S,
    chunk_lines: int = CHUNK_LINES,
    config: Path | str | None = None,
    observer: Observer | None = None,
    format: ManifestFormat | None = None,
    retry_failed: bool = False,
    reupload_changed: bool = False,
    **settings: Any,
) -> WorkerResult:
    """The library's coordinated run: this call is one worker of the run at `coordinator`.

    Takes `ingest.upload`'s arguments (less `journal` and `sim`: the record is
    the coordinator's) plus the coordinator's URL, the run's name, the lease
    and the chunk size (if this worker plans the run); returns
    when the whole run is done or this worker stopped. Raises `ConfigError`
    (a setting, the URL, a worker bound to another manifest: `RunMismatch`),
    `ManifestError`, or `CoordinatorError` (down for longer than its bound).
    """
    from ingest.api import wiring
    from ingest.coord.connection import check_url

    check_url(coordinator)
    plan = wiring.prepare(
        source, provider=provider, config=config, settings=settings, format=format
    )
    worker = Worker(
        plan,
        Coordinator(coordinator, run_name, lease_s, chunk_lines),
        observer=observer,
        retry_failed=retry_failed,
        reupload_changed=reupload_changed,
    )
    return await worker.run()


def _bytes(conn: Connection, account: BudgetKeys, max_mbps: float) -> SharedBytes | None:
    """`--max-mbps` shared by every worker on the account (None: unlimited)."""
    rate = bandwidth.bytes_per_s(max_mbps)
    return None if rate is None else SharedBytes(conn, account, rate)
