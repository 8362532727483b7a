"""`ingest run`: upload a manifest, or resume the run its journal records.

A caller of the library (`ingest.open_upload`): this module keeps the flags,
the signals (SIGINT drains, a second one aborts; SIGTERM drains), the
display (`Reporter` is the run's observer) and the exit codes.

Exit codes: `ingest.cli.exits` (the text `run --help` and the README show).

A closed output is a drain, as the first Ctrl-C is: what is in flight
finishes and is journaled, nothing new starts, and the exit code follows the
journal (0 only if every item is done). Like git, rclone or `yes | head`, the
writer stops when its reader goes away (141 = 128 + SIGPIPE, what a shell
reports for them), but cleanly, without orphan uploads or a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.cli import exits, scaleout, startup
from ingest.cli.exits import EXIT_OUTPUT_CLOSED, HelpFormatter, help_text
from ingest.cli.options import (
    add_settings_flags,
    fault_plan,
    positive_seconds,
    settings_from_args,
)

if TYPE_CHECKING:
    from ingest.api import Result, Upload
    from ingest.api.wiring import Plan
    from ingest.cli.report import Reporter
    from ingest.config import Settings
    from ingest.engine import Progress
    from ingest.sim import SimSettings

# The codes, where `retry-failed` and the tests have always imported them from.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = (
    exits.EXIT_OK,
    exits.EXIT_FAILED,
    exits.EXIT_USAGE,
    exits.EXIT_STOPPED,
    exits.EXIT_INTERRUPTED,
)
DRAIN_GRACE_S = 30.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="upload a manifest (or resume it)",
        description=(
            "Upload every image of MANIFEST to PROVIDER. Running the same command again "
            "resumes: done items are skipped, unfinished ones redone."
        ),
        epilog_of=help_text,  # the exit codes, rendered only for --help (cli.main.Parser)
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "manifest",
        type=Path,
        help=(
            "JSON lines, CSV, a list of paths or URLs (http(s)://, s3://), a tar or zip shard, "
            "a Parquet file, or a folder (its images, shards and Parquet files)"
        ),
    )
    p.add_argument("--provider", required=True, choices=_provider_names())
    add_run_flags(p)
    scaleout.add_flags(p)
    p.set_defaults(func=run)


def _provider_names() -> tuple[str, ...]:
    from ingest.providers import PROVIDER_NAMES

    return PROVIDER_NAMES


def add_run_flags(p: argparse.ArgumentParser, *, retry_failed_flag: bool = True) -> None:
    """Flags shared by `run` and `retry-failed` (which always retries: no --retry-failed)."""
    p.add_argument(
        "--format",
        choices=("jsonl", "csv", "list", "folder", "tar", "zip", "parquet"),
        help="manifest format (default: from the file name)",
    )
    p.add_argument("--journal", type=Path, help="journal file (default: beside the manifest)")
    p.add_argument(
        "--force",
        action="store_true",
        help=(
            "reuse a journal made for a manifest at another path (moved or renamed); "
            "never one of another provider, endpoint, mode, model or order"
        ),
    )
    if retry_failed_flag:
        p.add_argument(
            "--retry-failed",
            action="store_true",
            help="also retry items the provider rejected before",
        )
    p.add_argument(
        "--reupload-changed",
        action="store_true",
        help="upload again items whose file changed since they were uploaded",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be uploaded, skipped and rejected; call no API",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    out.add_argument("--quiet", action="store_true", help="only problems and the summary")
    out.add_argument("--plain", action="store_true", help="status lines instead of a live display")
    sim = p.add_argument_group("built-in emulator")
    sim.add_argument(
        "--sim", action="store_true", help="upload to the built-in emulator (no network)"
    )
    sim.add_argument(
        "--sim-lifetime",
        type=positive_seconds,
        default=None,
        metavar="S",
        help="emulator URL lifetime, seconds (default: the provider's own, as `ingest sim`)",
    )
    sim.add_argument(
        "--sim-faults",
        default="",
        type=fault_plan,
        metavar="PLAN",
        help="emulator fault plan, e.g. seed=1,put.503=0.1",
    )
    add_settings_flags(p)


def run(args: argparse.Namespace) -> int:
    from ingest.errors import ConfigError, IngestError, JournalError, ManifestError
    from ingest.redact import redact

    try:
        return _run(args)
    except (ConfigError, JournalError, ManifestError) as exc:
        if exits.out_of_room(exc):  # a full disk at the journal's opening: as one mid-run
            print(f"ingest: stopped: {redact(str(exc))}", file=sys.stderr)
            return EXIT_STOPPED
        print(f"ingest: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except IngestError as exc:
        print(f"ingest: stopped: {redact(str(exc))}", file=sys.stderr)
        return EXIT_STOPPED


def _mode(args: argparse.Namespace) -> Any:
    if args.json:
        return "json"
    if args.quiet:
        return "quiet"
    if args.plain or not sys.stderr.isatty():
        return "plain"
    return "live"


def _run(args: argparse.Namespace) -> int:
    from ingest.cli.report import Reporter
    from ingest.cli.wording import packed

    settings = settings_from_args(args, args.provider)
    reporter = Reporter(_mode(args), interval=settings.run.status_interval_s)
    reporter.folder = args.manifest.is_dir()
    reporter.packed = packed(args.manifest, args.format)
    section = settings.provider(args.provider)
    reporter.key_envs = tuple(v for f in section.key_envs if (v := str(getattr(section, f))))
    try:
        return _run_reporting(args, settings, reporter)
    finally:
        reporter.flush()  # the item lines held since the last flush (`Output.write`)


def _run_reporting(args: argparse.Namespace, settings: Settings, reporter: Reporter) -> int:
    import anyio

    from ingest.api import open_upload
    from ingest.loop import backend_options

    scaleout.check_args(args)
    if getattr(args, "coordinator", None):  # one worker of a run shared through Redis
        from ingest.cli import coordinated

        startup.resume()
        return coordinated.run(args, settings, reporter)
    if args.dry_run:
        from ingest.api.wiring import check_journal, prepare

        startup.resume()  # before the journal's replay
        plan = prepare(
            args.manifest,
            provider=args.provider,
            journal=args.journal,
            config=settings,
            format=args.format,
            keys="none",
        )
        check_journal(plan, emulator=args.sim, force=args.force)
        return dry_run(
            reporter,
            plan,
            retry_failed=args.retry_failed,
            reupload_changed=args.reupload_changed,
        )
    sim: SimSettings | bool = False
    if args.sim:
        from ingest.api.wiring import sim_settings
        from ingest.sim import FaultPlan

        sim = sim_settings(
            url_lifetime_s=args.sim_lifetime, faults=FaultPlan.parse(args.sim_faults)
        )
    upload = open_upload(
        args.manifest,
        provider=args.provider,
        journal=args.journal,
        sim=sim,
        config=settings,
        observer=reporter,
        format=args.format,
        force=args.force,
        retry_failed=args.retry_failed,
        reupload_changed=args.reupload_changed,
    )
    return anyio.run(_main, args, upload, reporter, backend_options=backend_options())


# The event each fate of a dry run prints (a rejection prints `item_rejected`).
_WOULD = {
    "upload": "would_upload",
    "finalize": "would_finalize",
    "skip": "would_skip",
    "changed": "would_keep_changed",
    "failed": "would_keep_failed",
}


def dry_run(
    reporter: Reporter, plan: Plan, *, retry_failed: bool = False, reupload_changed: bool = False
) -> int:
    """Show what a run would do (`ingest.api.preview`); exit 1 if an entry would not end done."""
    from collections import Counter

    from ingest.api.preview import dry_run as preview
    from ingest.cli.report import human_bytes, plural

    fates: Counter[str] = Counter()
    size = 0
    planned_all = preview(plan, retry_failed=retry_failed, reupload_changed=reupload_changed)
    for planned in planned_all:
        if reporter.output.closed:
            return EXIT_OUTPUT_CLOSED  # nobody reads the rest
        fates[planned.fate] += 1
        size += planned.size
        if planned.error is not None:
            reporter.item_rejected(planned.key, planned.error)
        elif planned.fate == "upload":
            reporter.event("would_upload", key=planned.key, line=planned.line, size=planned.size)
        else:
            reporter.event(_WOULD[planned.fate], key=planned.key, line=planned.line)
    upload, skip, rejected = fates["upload"], fates["skip"], fates["reject"]
    finalize, changed, failed = fates["finalize"], fates["changed"], fates["failed"]
    reporter.event(
        "summary",
        dry_run=True,
        upload=upload,
        bytes=size,
        finalize=finalize,
        skip=skip,
        changed=changed,
        failed=failed,
        rejected=rejected,
    )
    if reporter.mode != "json":
        kept = [
            f"{plural(changed, 'file')} changed since upload (--reupload-changed uploads them)"
            if changed
            else "",
            f"{plural(failed, 'item')} failed before (--retry-failed retries them)"
            if failed
            else "",
        ]
        reporter.output.say(
            f"dry run: would upload {plural(upload, 'file')} ({human_bytes(size)}), "
            + (f"finalize {finalize} uploaded before, " if finalize else "")
            + f"skip {skip} already done, reject {rejected}"
            + "".join(f"; would keep {k}" for k in kept if k)
            + "; nothing was sent"
        )
    if reporter.output.closed:
        return EXIT_OUTPUT_CLOSED
    return EXIT_FAILED if rejected or changed or failed else EXIT_OK


async def _main(args: argparse.Namespace, upload: Upload, reporter: Reporter) -> int:
    import anyio
    import anyio.abc

    from ingest.cli.report import plural
    from ingest.redact import redact

    startup.resume()  # the start-up's objects frozen, the collector back (before any replay)
    async with upload as run:
        if (early := run.result) is not None:  # stopped before it started (no room for the journal)
            print(f"ingest: stopped: {redact(early.stop_message or '')}", file=sys.stderr)
            return EXIT_STOPPED
        if run.emulator is not None:
            reporter.note(
                f"using the built-in emulator at {run.emulator.base_url} "
                "(nothing leaves this machine)"
            )
        for note in run.notes:
            reporter.note(note, always=True)
        reporter.event(
            "start",
            provider=run.plan.provider,
            manifest=str(args.manifest),
            journal=str(run.journal),
            resumed=run.resumed,
            already_done=run.already_done,
        )
        earlier = (
            f": {plural(run.already_done, 'item')} done by earlier runs" if run.resumed else ""
        )
        reporter.note(
            f"{'resuming' if run.resumed else 'starting'} {run.plan.provider} upload of "
            f"{args.manifest} (journal {run.journal}{earlier})"
        )
        interrupted = False

        async def on_signals(tg: anyio.abc.TaskGroup) -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    if interrupted:
                        run.abort()
                        continue
                    interrupted = True
                    reporter.note(
                        f"stopping: finishing {plural(run.snapshot().counters.in_flight, 'upload')}"
                        f" in flight (at most {DRAIN_GRACE_S:.0f}s); press Ctrl-C again to stop now",
                        always=True,
                    )
                    run.drain()
                    tg.start_soon(_grace, run)

        async def until_ended(tg: anyio.abc.TaskGroup) -> None:
            await run.ended()
            tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:

            def on_output_closed() -> None:
                run.drain()
                tg.start_soon(_grace, run)

            reporter.output.on_closed = on_output_closed
            if reporter.output.closed:  # closed before this point (the first note)
                on_output_closed()
            tg.start_soon(on_signals, tg)
            tg.start_soon(reporter.watch, run)
            tg.start_soon(until_ended, tg)
        reporter.output.on_closed = None  # the run is over: nothing left to drain
        # Outside the task group: what `wait` raises reaches `run`'s handlers as itself.
        result = await run.wait()
        progress = run.snapshot().progress  # an interrupted run's total: the count ahead
    reporter.summary(result, progress)
    return exit_code(result, reporter, interrupted=interrupted, progress=progress)


def exit_code(
    result: Result,
    reporter: Reporter,
    *,
    interrupted: bool = False,
    progress: Progress | None = None,
) -> int:
    """0 only when every entry of the manifest ended done (`Result.complete`); see `exits.RUN`."""
    import dataclasses

    from ingest.api import StopReason
    from ingest.cli.report import plural
    from ingest.cli.summary import done_of, held_of

    of_total = done_of(result, progress)
    # The journal's word: a drain or Ctrl-C that came after the last entry was done is complete.
    stopped = None if result.stop_reason is StopReason.INTERRUPTED else result.stop_reason
    finished = dataclasses.replace(result, drained=False, stop_reason=stopped).complete
    if reporter.output.closed:
        if finished:
            reporter.output.say(
                f"ingest: its output was closed; {of_total} done: the run is complete"
            )
            return EXIT_OK
        reporter.output.say(
            f"ingest: stopped because its output was closed; {of_total} done"
            " per the journal (run the same command to resume)"
        )
        return EXIT_OUTPUT_CLOSED
    if interrupted or result.drained or result.stop_reason is StopReason.INTERRUPTED:
        if finished:
            reporter.note(f"interrupted, but {of_total} done: the run is complete", always=True)
            return EXIT_OK
        reporter.note(
            f"interrupted; run the same command again to resume ({of_total} done so far)",
            always=True,
        )
        return EXIT_INTERRUPTED
    if result.stop_reason is not None:
        return EXIT_STOPPED
    if not result.complete:
        c = result.this_run
        if result.not_done > c.changed:
            unfinished = result.not_done - c.failed - c.rejected - c.changed
            reporter.note(
                f"{plural(result.not_done - c.changed, 'item')} not uploaded ({c.failed} failed, "
                f"{c.rejected} rejected{f': {held} held back' if (held := held_of(reporter)) else ''}"
                f", {unfinished} unfinished)",
                always=True,
            )
        if c.changed:
            reporter.note(
                f"{plural(c.changed, 'file')} changed since upload; run with "
                f"--reupload-changed to upload {'it' if c.changed == 1 else 'them'} again",
                always=True,
            )
        return EXIT_FAILED
    return EXIT_OK


async def _grace(run: Upload) -> None:
    import anyio

    await anyio.sleep(DRAIN_GRACE_S)
    run.abort()
