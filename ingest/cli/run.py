"""`ingest run`: upload a manifest, or resume the run its journal records.

Exit codes: 0 every item done; 1 the run ended with failed or rejected items;
2 bad usage, configuration or journal; 3 the run was stopped (bad key,
provider outage, full disk); 130 interrupted by the user.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ingest.cli.options import add_settings_flags, settings_from_args
from ingest.loop import backend_options

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = (
    "exit codes: 0 every item done; 1 some items failed or were rejected; "
    "2 bad usage, configuration or journal; 3 run stopped (bad key, provider outage, "
    "disk full); 130 interrupted (run the same command to resume)"
)
SIM_KEY = "sim-key"
DRAIN_GRACE_S = 30.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="upload a manifest (or resume it)",
        description=(
            "Upload every image of MANIFEST to PROVIDER. Running the same command again "
            "resumes: done items are skipped, unfinished ones redone."
        ),
        epilog=EXIT_CODES,
    )
    p.add_argument("manifest", type=Path, help="JSON lines, CSV, a list of paths, or a folder")
    p.add_argument("--provider", required=True, choices=_provider_names())
    add_run_flags(p)
    p.set_defaults(func=run)


def _provider_names() -> tuple[str, ...]:
    from ingest.providers import PROVIDER_NAMES

    return PROVIDER_NAMES


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `run` and `retry-failed`."""
    p.add_argument(
        "--format",
        choices=("jsonl", "csv", "list", "folder"),
        help="manifest format (default: from the file name)",
    )
    p.add_argument("--journal", type=Path, help="journal file (default: beside the manifest)")
    p.add_argument("--force", action="store_true", help="reuse a journal bound to another run")
    p.add_argument(
        "--retry-failed", action="store_true", help="also retry items the provider rejected before"
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
        type=float,
        default=120.0,
        metavar="S",
        help="emulator URL lifetime, seconds",
    )
    sim.add_argument(
        "--sim-faults",
        default="",
        metavar="PLAN",
        help="emulator fault plan, e.g. seed=1,put.503=0.1",
    )
    add_settings_flags(p)


def default_journal(manifest: Path, provider: str) -> Path:
    if manifest.is_dir():
        return manifest / ".ingest" / f"{provider}.journal"
    return manifest.with_name(f"{manifest.name}.{provider}.journal")


def run(args: argparse.Namespace) -> int:
    from ingest.errors import ConfigError, IngestError, JournalError, ManifestError
    from ingest.redact import redact

    try:
        return _run(args)
    except (ConfigError, JournalError, ManifestError) as exc:
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
    from ingest.config import read_secrets
    from ingest.journal import Header, Journal, peek_header
    from ingest.manifest import read_manifest
    from ingest.providers import provider_class

    settings = settings_from_args(args, args.provider)
    cls = provider_class(args.provider)
    psettings = settings.provider(args.provider)
    manifest = args.manifest.resolve()
    entries = read_manifest(manifest, args.format)  # raises ManifestError if unusable
    journal_path = (args.journal or default_journal(manifest, args.provider)).resolve()
    if args.dry_run:
        from ingest.cli.report import Reporter

        return dry_run(Reporter(_mode(args)), cls, psettings, args.provider, entries, journal_path)
    if args.sim:
        for field in cls.key_envs:
            variable = getattr(psettings, field)
            if variable and not os.environ.get(variable):
                os.environ[variable] = SIM_KEY
    secrets = read_secrets(args.provider, psettings, cls.key_envs)
    previous = peek_header(journal_path)
    params = cls.run_params(
        psettings, previous.bind if previous and previous.provider == args.provider else {}
    )
    header = Header(
        provider=args.provider, manifest=str(manifest), bind=params, created=time.time()
    )
    journal, replay = Journal.open(
        journal_path, header, force=args.force, sync_interval=settings.run.journal_sync_interval_s
    )
    with journal:
        import anyio

        return anyio.run(
            _main,
            args,
            settings,
            cls,
            secrets,
            journal,
            replay,
            entries,
            backend_options=backend_options(),
        )


def dry_run(
    reporter: Any, cls: Any, psettings: Any, provider: str, entries: Any, journal_path: Path
) -> int:
    """What a run would do, from the manifest, the files and the journal; no API calls."""
    from ingest.errors import ManifestError
    from ingest.item import Source
    from ingest.journal import Replay, replay
    from ingest.validate import Checker

    state: Replay | None = replay(journal_path) if journal_path.exists() else None
    checker = Checker(cls.capabilities(psettings), provider)
    upload = skip = rejected = 0
    size = 0
    for entry in entries:
        if isinstance(entry, ManifestError):
            rejected += 1
            reporter.item_rejected(None, entry)
            continue
        if state is not None and state.is_done(entry.key):
            skip += 1
            reporter.event("would_skip", key=entry.key, line=entry.line)
            continue
        result = checker(entry)
        if isinstance(result, Source):
            upload += 1
            size += result.size
            reporter.event("would_upload", key=entry.key, line=entry.line, size=result.size)
        else:
            rejected += 1
            reporter.item_rejected(entry.key, result)
    from ingest.cli.report import human_bytes

    reporter.event("summary", dry_run=True, upload=upload, bytes=size, skip=skip, rejected=rejected)
    if reporter.mode != "json":
        print(
            f"dry run: would upload {upload} files ({human_bytes(size)}), skip {skip} already done, "
            f"reject {rejected}; nothing was sent",
            file=sys.stderr,
        )
    return EXIT_FAILED if rejected else EXIT_OK


async def _main(
    args: argparse.Namespace,
    settings: Any,
    cls: Any,
    secrets: dict[str, str],
    journal: Any,
    replay: Any,
    entries: Any,
) -> int:
    import contextlib

    import anyio
    import anyio.abc

    from ingest.cli.report import Reporter
    from ingest.engine import Engine, EngineSettings
    from ingest.http import Timeouts, api_session, storage_session
    from ingest.journal import replay as replay_journal
    from ingest.providers.context import Context

    reporter = Reporter(_mode(args), interval=settings.run.status_interval_s)
    run_settings = settings.run
    psettings = settings.provider(args.provider)
    timeouts = Timeouts(connect=run_settings.connect_timeout_s, read=run_settings.read_timeout_s)
    async with contextlib.AsyncExitStack() as stack:
        base_url = psettings.base_url
        if args.sim:
            from ingest.sim import FaultPlan, SimSettings, serve
            from ingest.sim.settings import ScenarioSimSettings

            sim_settings = SimSettings(
                url_lifetime_s=args.sim_lifetime,
                faults=FaultPlan.parse(args.sim_faults),
                # A dry run names its own model: the emulator creates it on first use.
                scenario=ScenarioSimSettings(auto_create_models=True),
            )
            sim = await stack.enter_async_context(serve(sim_settings))
            base_url = sim.base_url + _sim_base_path(psettings.base_url)
            reporter.note(
                f"using the built-in emulator at {sim.base_url} (nothing leaves this machine)"
            )
        api = await stack.enter_async_context(
            api_session(
                base_url.rstrip("/") + "/",
                cls.auth_headers(secrets),
                timeouts,
                run_settings.api_concurrency,
            )
        )
        storage = await stack.enter_async_context(
            storage_session(timeouts, run_settings.put_concurrency)
        )
        ctx = Context(
            api=api,
            storage=storage,
            settings=psettings,
            params=dict(replay.header.bind),
            allow_insecure_http=run_settings.allow_insecure_http,
        )
        provider = cls(ctx)
        engine = Engine(
            provider,
            journal,
            replay,
            EngineSettings.from_run(
                run_settings, retry_failed=args.retry_failed, reupload_changed=args.reupload_changed
            ),
            observer=reporter,
        )
        resumed = replay.runs > 0
        reporter.event(
            "start",
            provider=args.provider,
            manifest=str(args.manifest),
            journal=str(journal.path),
            resumed=resumed,
            already_done=len(replay.done),
        )
        reporter.note(
            f"{'resuming' if resumed else 'starting'} {args.provider} upload of {args.manifest} "
            f"(journal {journal.path}; {len(replay.done)} already done)"
        )
        interrupted = False

        async def on_signals(tg: anyio.abc.TaskGroup) -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    if interrupted:
                        engine.abort("interrupted")
                        continue
                    interrupted = True
                    reporter.note(
                        f"stopping: finishing {engine.counters.in_flight} uploads in flight "
                        f"(at most {DRAIN_GRACE_S:.0f}s); press Ctrl-C again to stop now",
                        always=True,
                    )
                    engine.drain()
                    tg.start_soon(_grace, engine)

        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signals, tg)
            tg.start_soon(reporter.watch, engine)
            outcome = await engine.run(entries)
            tg.cancel_scope.cancel()
    journal.sync()
    if journal.error is None:
        counts, total = engine.tally.counts(), engine.tally.total
    else:  # records may not have reached the disk: count what did
        final = replay_journal(journal.path)
        counts, total = final.counts(), final.total
    reporter.summary(outcome, counts, total, str(journal.path))
    if outcome.stop_reason == "interrupted" or outcome.drained:
        reporter.note(
            f"interrupted; run the same command again to resume ({counts['done']} done so far)",
            always=True,
        )
        return EXIT_INTERRUPTED
    if outcome.stop_reason:
        return EXIT_STOPPED
    if counts["failed"] or counts["rejected"] or counts["in_flight"]:
        reporter.note(
            f"{counts['failed'] + counts['rejected']} items not uploaded "
            f"({counts['failed']} failed, {counts['rejected']} rejected)",
            always=True,
        )
        return EXIT_FAILED
    return EXIT_OK


def _sim_base_path(base_url: str) -> str:
    """The path part of a provider's real base URL (Scenario's `/v1`), kept under the emulator."""
    from urllib.parse import urlsplit

    return urlsplit(base_url).path.rstrip("/")


async def _grace(engine: Any) -> None:
    import anyio

    await anyio.sleep(DRAIN_GRACE_S)
    engine.abort("interrupted")
