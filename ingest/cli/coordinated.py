"""`ingest run --coordinator URL`: this process as one worker of a run shared through Redis.

Owns the worker's signals (SIGINT or SIGTERM: take no new chunk and finish the one in
flight; a second: stop now), its lines (the run's name at start, the run's
counts at the end) and its exit code: 0 when the whole run is done (every
worker exits 0 then), 1 when it finished with items failed or rejected, 3
when it stopped (a STOP-class error at any worker, or the coordinator down
for longer than its bound), 130 when interrupted, 141 when its output was
closed (`--json | head -1`: drained as by a first Ctrl-C) before the run was
done. The work is
`ingest.coord.worker.Worker`'s. A joiner given a `--chunk-lines` the run was
not planned with says once that it is ignored (the plan rules, as the
binding treats the chunk count). The scale-out flags and their checks are
`scaleout`'s, so a plain run imports nothing of this module; `status`, `export`
and `retry-failed` of a shared run are `shared_run`'s (both imported from here too).
"""

from __future__ import annotations

import argparse
import functools
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ingest.cli import exits
from ingest.cli.scaleout import add_flags, check_args
from ingest.cli.shared_run import add_reader_flags, reads_coordinator, retry_failed, status
from ingest.coord import CHUNK_LINES

# The flags and their checks are scaleout's, a shared run's `status`, `export` and
# `retry-failed` shared_run's: imported here too.
__all__ = [
    "add_flags",
    "add_reader_flags",
    "check_args",
    "reads_coordinator",
    "retry_failed",
    "run",
    "status",
]

if TYPE_CHECKING:
    from ingest.cli.report import Reporter
    from ingest.config import Settings
    from ingest.coord.retry import Retried
    from ingest.coord.worker import Worker, WorkerResult


def run(args: argparse.Namespace, settings: Settings, reporter: Reporter) -> int:
    import anyio

    from ingest.api.wiring import prepare
    from ingest.coord.connection import describe
    from ingest.coord.worker import Coordinator, Worker
    from ingest.loop import backend_options

    plan = prepare(
        args.manifest, provider=args.provider, config=settings, format=args.format, keys="env"
    )

    def on_start(name: str, planned: bool) -> None:
        reporter.event("start", provider=plan.provider, manifest=str(args.manifest),
                       run_name=name, coordinator=describe(args.coordinator), planned=planned)  # fmt: skip
        reporter.note(
            f"worker of run {name!r} on {describe(args.coordinator)} "
            f"({'planned it' if planned else 'joined it'}); {plan.provider} upload of "
            f"{args.manifest}"
        )
        if worker.retried is not None:
            reporter.note(_retried(name, worker.retried), always=True)

    worker = Worker(
        plan,
        Coordinator(args.coordinator, args.run_name, args.lease, args.chunk_lines or CHUNK_LINES),
        observer=reporter,
        retry_failed=args.retry_failed,
        reupload_changed=args.reupload_changed,
        on_start=on_start,
    )
    ignored = None  # --chunk-lines given: said once if a run planned otherwise ignores it
    if args.chunk_lines is not None:
        ignored = functools.partial(
            _chunk_lines_ignored, worker, args.chunk_lines, args.retry_failed
        )
    return anyio.run(_main, worker, reporter, ignored, backend_options=backend_options())


async def _main(
    worker: Worker, reporter: Reporter, ignored: Callable[[], Awaitable[str | None]] | None
) -> int:
    import anyio

    if ignored is not None and (why := await ignored()) is not None:
        reporter.note(why, always=True)
    interrupted = False

    async def on_signals() -> None:
        nonlocal interrupted
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:  # the first drains, any later one stops now
                if not interrupted:
                    reporter.note(
                        "stopping: finishing the uploads in flight, then handing this worker's "
                        "chunk back to the run (its other items go to another worker); press "
                        "Ctrl-C again to stop now",
                        always=True,
                    )
                (worker.abort if interrupted else worker.drain)()
                interrupted = True

    # A closed output (`--json | head -1`) drains as a first Ctrl-C does; exit 141 unless done.
    reporter.output.on_closed = worker.drain
    if reporter.output.closed:  # closed before this point (the start line)
        worker.drain()
    failed: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(on_signals)
        try:
            result = await worker.run()
        except Exception as exc:  # raised as itself below, not in the task group's group
            failed = exc
        tg.cancel_scope.cancel()
    reporter.output.on_closed = None
    if failed is not None:
        raise failed
    return _report(result, reporter, interrupted=interrupted)


async def _chunk_lines_ignored(worker: Worker, given: int, retrying: bool) -> str | None:
    """Why `--chunk-lines given` does nothing: the run is planned otherwise (None: it counts).

    As the binding treats the chunk count (the stored plan rules, a joiner is not
    refused for it), a joiner's value is ignored, and this says so. The run's value
    is its first chunk's count when it has more than one (a chunk is cut when full);
    a run planned as one chunk of N entries had a value of N or more. A worker that
    retries an ended run's failed items cuts its new chunks with `given`: it counts."""
    from ingest.cli.wording import plural
    from ingest.coord.connection import connect
    from ingest.coord.plan import Chunk, read_plan

    keys = worker.keys
    async with connect(worker.coordinator.url) as conn:
        plan = await read_plan(conn, keys)
        if plan is None:
            return None  # this worker plans it (unless another wins the race to, meanwhile)
        first = await conn.call(lambda: conn.client.xrange(keys.chunks, count=1))
        finished = int(await conn.call(lambda: conn.client.get(keys.finished)) or 0)
    if not first or (retrying and finished >= int(plan["chunks"])):
        return None
    count, entries = Chunk.decode(*first[0]).count, int(plan["entries"])
    if count < entries:
        if given == count:
            return None
        planned = f"in chunks of {count} entries"
    elif given >= entries:
        return None
    else:
        planned = f"as one chunk of {plural(count, 'entry', 'entries')}"
    return (
        f"run {keys.name!r} was planned {planned}: this worker's --chunk-lines {given} is "
        "ignored (the worker that plans a run sets its chunks)"
    )


def _report(result: WorkerResult, reporter: Reporter, *, interrupted: bool) -> int:
    from ingest.cli.summary import worker_summary

    c, mine = result.counts, result.this_worker
    fields: dict[str, Any] = {
        "run_name": result.run_name,
        "total": result.entries,
        "done": c.done,
        "failed": c.failed,
        "rejected": c.rejected,
        "this_worker": {"done": mine.done, "api_calls": mine.api_calls, "chunks": result.chunks},
        "poisoned": result.poisoned,
        "stop_reason": result.stop_reason.value if result.stop_reason else None,
    }
    reporter.event("summary", **fields)
    reporter.note(worker_summary(result), always=True)
    if result.stop_message:
        reporter.note(f"ingest: stopped: {result.stop_message}", always=True)
        from ingest.cli.summary import stop_hint

        if hint := stop_hint(result.stop_reason, reporter.key_envs):
            reporter.note(hint, always=True)
    if result.stop_reason is not None and result.stop_reason.value != "interrupted":
        return exits.EXIT_STOPPED
    if reporter.output.closed and not result.complete:
        reporter.output.say(
            f"ingest: stopped because its output was closed; {worker_summary(result)} "
            "(run the same command to resume)"
        )
        return exits.EXIT_OUTPUT_CLOSED
    if interrupted or result.stop_reason is not None:
        return exits.EXIT_INTERRUPTED
    if result.complete:
        return exits.EXIT_OK
    return exits.EXIT_FAILED


def _retried(name: str, retried: Retried) -> str:
    from ingest.journal.report import plural

    if retried.in_progress:
        return (
            f"run {name!r} has not ended: joining it as a worker; its failed items are "
            "retried by `ingest retry-failed` once it has"
        )
    return (
        f"{plural(retried.items, 'failed item')} of run {name!r} pending again "
        f"({plural(retried.chunks, 'chunk')})"
    )
