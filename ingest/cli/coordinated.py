"""`ingest run --coordinator URL`: this process as one worker of a run shared through Redis.

Owns the scale-out flags of `run` (`--coordinator`, `--run-name`), the
worker's signals (SIGINT or SIGTERM: take no new chunk and finish the one in
flight; a second: stop now), its lines (the run's name at start, the run's
counts at the end) and its exit code: 0 when the whole run is done (every
worker exits 0 then), 1 when it finished with items failed or rejected, 3
when it stopped (a STOP-class error at any worker, or the coordinator down
for longer than its bound), 130 when interrupted. The work is
`ingest.coord.worker.Worker`'s. Also `status`, `export` and `retry-failed`
of a shared run (`--coordinator URL --run-name NAME` instead of a journal).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.cli import exits
from ingest.cli.options import positive_int, positive_seconds
from ingest.coord import CHUNK_LINES, LEASE_S

if TYPE_CHECKING:
    from ingest.cli.report import Reporter
    from ingest.config import Settings
    from ingest.coord.retry import Retried
    from ingest.coord.worker import Worker, WorkerResult


def add_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("scale-out (pip install 'ingest[redis]')")
    group.add_argument(
        "--coordinator",
        metavar="URL",
        help=(
            "redis://HOST:PORT/DB: run as one worker of a run shared by every process given "
            "the same URL and run name (one manifest, one rate budget, one record)"
        ),
    )
    group.add_argument(
        "--run-name",
        metavar="NAME",
        help="the shared run's name (default: PROVIDER-MANIFESTSTEM, printed at start)",
    )
    group.add_argument(
        "--chunk-lines",
        type=positive_int,
        default=CHUNK_LINES,
        metavar="N",
        help=f"manifest lines a chunk holds, if this worker plans the run (default: {CHUNK_LINES})",
    )
    group.add_argument(
        "--lease",
        type=positive_seconds,
        default=LEASE_S,
        metavar="S",
        help=(
            f"seconds a dead worker's chunk stays its own before another takes it over "
            f"(default: {LEASE_S:g}; renewed every third of it)"
        ),
    )


def check_args(args: argparse.Namespace) -> None:
    """A `ConfigError` for flags a coordinated run cannot take."""
    from ingest.errors import ConfigError

    url, name = getattr(args, "coordinator", None), getattr(args, "run_name", None)
    if name is not None and not url:
        raise ConfigError("--run-name names a shared run: give --coordinator too", key="run_name")
    if not url:
        return  # `retry-failed` has neither flag; a plain run imports nothing of ingest.coord
    from ingest.coord.connection import check_url
    from ingest.coord.names import check_run_name

    check_url(url)
    if name is not None and (why := check_run_name(name)):
        raise ConfigError(f"--run-name {name!r}: {why}", key="run_name")
    for flag, given in (
        ("--sim", args.sim),
        ("--dry-run", args.dry_run),
        ("--journal", args.journal),
    ):
        if given:
            raise ConfigError(
                f"{flag} cannot be used with --coordinator (workers share the coordinator's "
                "record, not a journal or an emulator of their own: point --base-url at one "
                "`ingest sim` to try it)",
                key="coordinator",
            )


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
        Coordinator(args.coordinator, args.run_name, args.lease, args.chunk_lines),
        observer=reporter,
        retry_failed=args.retry_failed,
        reupload_changed=args.reupload_changed,
        on_start=on_start,
    )
    return anyio.run(_main, worker, reporter, backend_options=backend_options())


async def _main(worker: Worker, reporter: Reporter) -> int:
    import anyio

    interrupted = False

    async def on_signals() -> None:
        nonlocal interrupted
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:  # the first drains, any later one stops now
                if not interrupted:
                    reporter.note("stopping: finishing this worker's chunk in flight", always=True)
                (worker.abort if interrupted else worker.drain)()
                interrupted = True

    failed: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(on_signals)
        try:
            result = await worker.run()
        except Exception as exc:  # raised as itself below, not in the task group's group
            failed = exc
        tg.cancel_scope.cancel()
    if failed is not None:
        raise failed
    return _report(result, reporter, interrupted=interrupted)


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
    if result.stop_reason is not None and result.stop_reason.value != "interrupted":
        return exits.EXIT_STOPPED
    if interrupted or result.stop_reason is not None:
        return exits.EXIT_INTERRUPTED
    if result.complete:
        return exits.EXIT_OK
    return exits.EXIT_FAILED


# -- status and export of a shared run ------------------------------------------


def add_reader_flags(p: argparse.ArgumentParser) -> None:
    """`status`/`export --coordinator URL --run-name NAME`: read a shared run instead of a journal."""
    group = p.add_argument_group("a shared run (instead of JOURNAL)")
    group.add_argument("--coordinator", metavar="URL", help="redis://HOST:PORT/DB of the run")
    group.add_argument("--run-name", metavar="NAME", help="the run's name (its workers print it)")


def reads_coordinator(args: argparse.Namespace) -> bool:
    """Whether `status`/`export` read a shared run; a `ConfigError` for a half-given pair."""
    from ingest.errors import ConfigError

    if args.coordinator is None and args.run_name is None:
        if args.journal is None:
            raise ConfigError("give a JOURNAL, or --coordinator URL --run-name NAME")
        return False
    if args.journal is not None or not (args.coordinator and args.run_name):
        raise ConfigError("give either a JOURNAL or both --coordinator URL and --run-name NAME")
    return True


def status(args: argparse.Namespace) -> int:
    """The shared run's counts (`--failed`: its failed and rejected items), exit 0."""
    import anyio
    import orjson

    info = anyio.run(_read, args.coordinator, args.run_name, args.failed)
    if args.failed:
        for rec in info["failures"]:
            if args.json:
                print(orjson.dumps(rec).decode())
            else:
                why = rec.get("message") or rec.get("reason") or ""
                print(
                    f"{rec.get('k')}: line {rec['line']}: {rec['kind']} {rec.get('code', '')} {why}"
                )
        if not info["failures"] and not args.json:
            print("no failed or rejected items")
        return exits.EXIT_OK
    del info["failures"]
    if args.json:
        print(orjson.dumps(info).decode())
        return exits.EXIT_OK
    print(
        f"run {info['run_name']!r}: {info['done']} of {info['total']} done, {info['failed']} "
        f"failed, {info['rejected']} rejected, {info['left']} left; chunks {info['finished']} "
        f"of {info['chunks']} finished"
        + (f", {info['poisoned']} given up (poison)" if info["poisoned"] else "")
        + (f"; {info['landed']} landed, not finalized yet" if info["landed"] else "")
    )
    if info["stopped"]:
        print(f"stopped: {info['stopped']}")
    return exits.EXIT_OK


def export(args: argparse.Namespace) -> int:
    """The shared run's done items, one row each (jsonl or csv), by manifest line."""
    import anyio

    from ingest.cli.export import write_rows
    from ingest.errors import ConfigError

    if args.format == "provider":
        raise ConfigError("--format provider reads a journal; with --coordinator: jsonl or csv")
    rows = anyio.run(_rows, args.coordinator, args.run_name)
    out = args.output.open("w", newline="") if args.output else sys.stdout
    try:
        write_rows(out, args.format, rows, EXPORT_COLUMNS)
    finally:
        if args.output:
            out.close()
    return exits.EXIT_OK


EXPORT_COLUMNS = ("key", "line", "remote_id", "url", "size")


async def _rows(url: str, name: str) -> list[dict[str, Any]]:
    from ingest.coord.connection import connect
    from ingest.coord.names import RunKeys
    from ingest.coord.record import Record

    async with connect(url) as conn:
        await _planned(conn, RunKeys(name), url)
        records = await Record(conn, RunKeys(name)).records("done")
    rows = []
    for rec in sorted(records, key=lambda r: int(r["line"])):
        row = {
            "key": rec["k"],
            "line": rec["line"],
            "remote_id": rec["id"],
            "url": rec.get("url"),
            "size": rec["size"],
        }
        if rec.get("extra"):
            row["extra"] = rec["extra"]
        rows.append(row)
    return rows


async def _planned(conn: Any, keys: Any, url: str) -> dict[str, Any]:
    from ingest.coord.connection import describe
    from ingest.coord.plan import read_plan
    from ingest.errors import ConfigError

    plan = await read_plan(conn, keys)
    if plan is None:
        raise ConfigError(f"no run named {keys.name!r} on {describe(url)}", key="run_name")
    return plan


async def _read(url: str, name: str, failures: bool) -> dict[str, Any]:
    from ingest.coord.connection import connect
    from ingest.coord.names import RunKeys
    from ingest.coord.record import Record

    keys = RunKeys(name)
    async with connect(url) as conn:
        plan = await _planned(conn, keys, url)
        record = Record(conn, keys)
        counts = await record.counts()
        finished = int(await conn.call(lambda: conn.client.get(keys.finished)) or 0)
        poisoned = int(await conn.call(lambda: conn.client.llen(keys.poison)))
        landed = int(await conn.call(lambda: conn.client.hlen(keys.landed)))
        stopped = await record.stop_message()
        found = []
        if failures:
            found = [*await record.records("failed"), *await record.records("rejected")]
    total = int(plan["entries"])
    return {
        "run_name": name,
        "total": total,
        "done": counts.done,
        "failed": counts.failed,
        "rejected": counts.rejected,
        "left": total - counts.done - counts.failed - counts.rejected,
        "chunks": int(plan["chunks"]),
        "finished": finished,
        "poisoned": poisoned,
        "landed": landed,  # bytes landed, finalize not made yet (or failed)
        "stopped": stopped,
        "failures": sorted(found, key=lambda r: int(r["line"])),
    }


# -- retry-failed of a shared run -------------------------------------------------


def retry_failed(
    args: argparse.Namespace, default: Callable[[argparse.Namespace, str, str], None]
) -> int:
    """Work as one of the run's workers, its failed items made pending again (`Worker`).

    `default(args, key, value)` sets a provider flag the user did not give
    (`retry_failed._default`): the run's plan gives them, as a journal's header does.
    """
    import anyio

    from ingest.cli import run as run_cmd
    from ingest.errors import ConfigError, IngestError
    from ingest.redact import redact

    try:
        reads_coordinator(args)
        check_args(args)
        plan, source = anyio.run(_run_of, args.coordinator, args.run_name)
        manifest = args.shared_manifest or (Path(source) if source else None)
        if manifest is None:
            raise ConfigError(
                f"run {args.run_name!r} does not record its manifest: give --manifest"
            )
    except ConfigError as exc:
        print(f"ingest: error: {redact(str(exc))}", file=sys.stderr)
        return exits.EXIT_USAGE
    except IngestError as exc:
        print(f"ingest: stopped: {redact(str(exc))}", file=sys.stderr)
        return exits.EXIT_STOPPED
    args.manifest, args.provider, args.retry_failed = manifest, plan["provider"], True
    default(args, "base_url", plan["endpoint"])
    for key, value in plan.get("bind", {}).items():
        default(args, key, value)
    return run_cmd.run(args)


async def _run_of(url: str, name: str) -> tuple[dict[str, Any], str | None]:
    """The run's plan, and where its planning worker read the manifest."""
    from ingest.coord.connection import connect
    from ingest.coord.names import RunKeys

    keys = RunKeys(name)
    async with connect(url) as conn:
        plan = await _planned(conn, keys, url)
        source: str | None = await conn.call(lambda: conn.client.get(keys.source))
    return plan, source


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
