"""`status`, `export` and `retry-failed` of a shared run: `--coordinator URL --run-name NAME`.

Owns the commands that read a run's record in Redis instead of a journal:
their flags, the run looked up by name (a name the coordinator does not
have is one line naming the runs it has, exit 2), `status`'s counts and
failures, the record `export` renders (`ingest.coord.exporting`, through the
journal's export path in `cli/export.py`), and `retry-failed`, which makes
the failed items pending again and works as one of the run's workers
(`coordinated.run`), or says there is nothing to retry before any key is
asked for. A coordinator that cannot be reached (or refuses) is one line,
exit 3, as it stops a worker.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.cli import exits

if TYPE_CHECKING:
    from ingest.coord.exporting import SharedRun
    from ingest.errors import ConfigError
    from ingest.journal.report import Failure

SCAN_ROUNDS = 20  # SCAN calls looking for the run names to list beside "no run named ..."


def add_reader_flags(p: argparse.ArgumentParser) -> None:
    """`status`/`export --coordinator URL --run-name NAME`: read a shared run instead of a journal."""
    group = p.add_argument_group("a shared run (instead of JOURNAL)")
    group.add_argument("--coordinator", metavar="URL", help="redis://HOST:PORT/DB of the run")
    group.add_argument("--run-name", metavar="NAME", help="the run's name (its workers print it)")


def add_manifest_flag(p: argparse.ArgumentParser, what: str) -> None:
    """`--manifest PATH` (`args.shared_manifest`): a shared run's manifest on this machine."""
    p.add_argument(
        "--manifest",
        dest="shared_manifest",
        type=Path,
        metavar="PATH",
        help=f"with --coordinator: {what} (default: where the run's planning worker read it)",
    )


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

    from ingest.coord.connection import CoordinatorError

    try:
        info = anyio.run(_read, args.coordinator, args.run_name, args.failed)
    except CoordinatorError as exc:  # down, or refusing: not the user's input (run's exit 3)
        print(f"ingest: error: {exc}", file=sys.stderr)
        return exits.EXIT_STOPPED
    if args.failed:
        from ingest.cli.status import failure_line

        for rec in info["failures"]:
            failure = _failure_of(rec)  # --json: a journal's fields, not the record's own
            print(orjson.dumps(failure.to_json()).decode() if args.json else failure_line(failure))
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


def _failure_of(rec: dict[str, Any]) -> Failure:
    """A failed or rejected item of the run's record as a journal's `failures` gives it, so
    that `status --failed` words it alike for both (it said "KEY: line N: failed CODE …"),
    and `--failed --json` gives the same fields (it gave the record's `kind`, `k`, …)."""
    from ingest.journal.report import Failure
    from ingest.reasons import group

    if rec["kind"] == "failed":
        message = str(rec.get("message", ""))
        code = str(rec.get("code", "")) or group(message)
        return Failure(rec.get("k"), rec["line"], "fail", code, message, rec.get("action"))
    reason = str(rec.get("reason", ""))
    return Failure(rec.get("k"), rec["line"], "bad", group(reason), reason)


async def shared_run(url: str, name: str) -> SharedRun:
    """The run `name` as `export` needs it (`coord.exporting`); `ConfigError` if there is none."""
    from ingest.coord.connection import connect
    from ingest.coord.exporting import read_run
    from ingest.coord.names import RunKeys

    async with connect(url) as conn:
        run = await read_run(conn, RunKeys(name))
        if run is None:
            raise await _no_run(conn, name, url)
    return run


async def _planned(conn: Any, keys: Any, url: str) -> dict[str, Any]:
    from ingest.coord.plan import read_plan

    plan = await read_plan(conn, keys)
    if plan is None:
        raise await _no_run(conn, keys.name, url)
    return plan


async def _no_run(conn: Any, name: str, url: str) -> ConfigError:
    """ "no run named NAME on URL", with the names of the runs there (a few, if any)."""
    from ingest.coord.connection import describe
    from ingest.errors import ConfigError

    found: set[str] = set()
    cursor = 0
    for _ in range(SCAN_ROUNDS):  # bounded: a database of other keys is not walked whole
        scan = functools.partial(conn.client.scan, cursor, "ingest:run:{*}:plan", 1000)
        cursor, names = await conn.call(scan)
        found.update(n.partition("{")[2].rpartition("}")[0] for n in names)
        if not cursor or len(found) > 5:
            break
    there = ", ".join(sorted(found)[:5]) + (", ..." if len(found) > 5 else "")
    return ConfigError(
        f"no run named {name!r} on {describe(url)} "
        + (f"(runs there: {there})" if found else "(no run there)")
        + ": check --run-name (each worker prints its run's name at start)"
    )


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
    from ingest.cli.scaleout import check_args
    from ingest.errors import ConfigError, IngestError
    from ingest.redact import redact

    try:
        reads_coordinator(args)
        check_args(args)
        plan, source, idle = anyio.run(_run_of, args.coordinator, args.run_name)
        if idle is not None and not args.reupload_changed:  # before any key is asked for
            print(idle[0], file=sys.stderr)  # entries rejected stay so: exit 1
            return exits.EXIT_OK if idle[1] else exits.EXIT_FAILED
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


async def _run_of(
    url: str, name: str
) -> tuple[dict[str, Any], str | None, tuple[str, bool] | None]:
    """The run's plan, where its planning worker read the manifest, and, if the run has
    ended with nothing failed, the line that says there is nothing to retry and whether
    every entry is done."""
    from ingest.cli.wording import nothing_to_retry
    from ingest.coord.connection import connect, describe
    from ingest.coord.names import RunKeys
    from ingest.coord.record import Record

    keys = RunKeys(name)
    async with connect(url) as conn:
        plan = await _planned(conn, keys, url)
        source: str | None = await conn.call(lambda: conn.client.get(keys.source))
        counts = await Record(conn, keys).counts()
        finished = int(await conn.call(lambda: conn.client.get(keys.finished)) or 0)
    if counts.failed or finished < int(plan["chunks"]):
        return plan, source, None  # failed items to retry, or a run to join as it is
    total = int(plan["entries"])
    left = total - counts.done - counts.rejected  # lines of chunks given up (poison)
    status = f"--coordinator {describe(url)} --run-name {name}"
    idle = nothing_to_retry(f"run {name!r}", counts.done, total, counts.rejected, status, left)
    return plan, source, idle
