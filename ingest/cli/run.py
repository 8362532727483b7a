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
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
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
        epilog=(
            "exit codes: 0 all done, 1 some items failed or were rejected, 2 bad usage/config/journal, "
            "3 run stopped (bad key, outage, disk full), 130 interrupted"
        ),
    )
    p.add_argument("manifest", type=Path, help="JSON lines, CSV, a list of paths, or a folder")
    add_common(p)
    p.add_argument("--journal", type=Path, help="journal file (default: beside the manifest)")
    p.add_argument("--force", action="store_true", help="reuse a journal bound to another run")
    p.add_argument(
        "--retry-failed", action="store_true", help="also retry items the provider rejected before"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    out.add_argument("--quiet", action="store_true", help="only problems and the summary")
    out.add_argument("--plain", action="store_true", help="status lines instead of a live display")
    p.set_defaults(func=run)


def add_common(p: argparse.ArgumentParser) -> None:
    from ingest.providers import PROVIDER_NAMES

    p.add_argument("--provider", required=True, choices=PROVIDER_NAMES)
    p.add_argument("--config", type=Path, help="TOML settings (default: ./ingest.toml if present)")
    p.add_argument(
        "--format",
        choices=("jsonl", "csv", "list", "folder"),
        help="manifest format (default: from the name)",
    )
    p.add_argument("--base-url", help="provider API base URL (overrides the config)")
    p.add_argument("--model-id", help="scenario: the model to attach training images to")
    p.add_argument("--order-id", help="autoenhance: the order to add images to")
    p.add_argument("--mode", choices=("inline", "assets"), help="scenario: upload mode")
    p.add_argument("--api-concurrency", type=int, help="concurrent API calls")
    p.add_argument("--put-concurrency", type=int, help="concurrent uploads")
    p.add_argument("--api-rate", type=float, help="API calls per second (0: until throttled)")
    p.add_argument("--max-attempts", type=int, help="tries per step before an item fails")
    p.add_argument(
        "--sim", action="store_true", help="upload to the built-in emulator (no network)"
    )
    p.add_argument(
        "--sim-lifetime", type=float, default=120.0, help="emulator URL lifetime, s (with --sim)"
    )
    p.add_argument(
        "--sim-faults", default="", help="emulator fault plan (with --sim), e.g. seed=1,put.503=0.1"
    )


def load(args: argparse.Namespace) -> Any:
    """Settings from defaults, the config file and the flags."""
    from ingest.config import load_settings

    config = args.config
    if config is None and Path("ingest.toml").exists():
        config = Path("ingest.toml")
    run_overrides = {
        key: value
        for key, value in (
            ("api_concurrency", args.api_concurrency),
            ("put_concurrency", args.put_concurrency),
            ("api_rate", args.api_rate),
            ("max_attempts", args.max_attempts),
        )
        if value is not None
    }
    chosen = {
        key: value
        for key, value in (
            ("base_url", args.base_url),
            ("model_id", args.model_id),
            ("order_id", args.order_id),
            ("mode", args.mode),
        )
        if value is not None
    }
    provider_overrides = {args.provider: chosen} if chosen else {}
    return load_settings(config, run_overrides=run_overrides, provider_overrides=provider_overrides)


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
    from ingest.redact import register_secret

    settings = load(args)
    cls = provider_class(args.provider)
    psettings = settings.provider(args.provider)
    if args.sim:
        for field in cls.key_envs:
            variable = getattr(psettings, field)
            if not os.environ.get(variable):
                os.environ[variable] = SIM_KEY
    secrets = read_secrets(args.provider, psettings, cls.key_envs)
    for value in secrets.values():
        register_secret(value)

    manifest = args.manifest.resolve()
    entries = read_manifest(manifest, args.format)  # raises ManifestError if unusable
    journal_path = (args.journal or default_journal(manifest, args.provider)).resolve()
    previous = peek_header(journal_path)
    params = cls.run_params(
        psettings, previous.bind if previous and previous.provider == args.provider else {}
    )
    header = Header(provider=args.provider, manifest=str(manifest), bind=params, created=_now())
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
            backend_options=_loop_options(),
        )


def _loop_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def _now() -> float:
    import time

    return time.time()


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
    from ingest.http import Timeouts, api_session, storage_session
    from ingest.journal import replay as replay_journal
    from ingest.providers.context import Context
    from ingest.scheduler import Engine, EngineSettings

    reporter = Reporter(_mode(args), interval=settings.run.status_interval_s)
    run_settings = settings.run
    psettings = settings.provider(args.provider)
    timeouts = Timeouts(connect=run_settings.connect_timeout_s, read=run_settings.read_timeout_s)
    async with contextlib.AsyncExitStack() as stack:
        base_url = psettings.base_url
        if args.sim:
            from ingest.sim import FaultPlan, SimSettings, serve

            sim = await stack.enter_async_context(
                serve(
                    SimSettings(
                        url_lifetime_s=args.sim_lifetime, faults=FaultPlan.parse(args.sim_faults)
                    )
                )
            )
            base_url = sim.base_url
            reporter.note(
                f"using the built-in emulator at {base_url} (nothing leaves this machine)"
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
            params=dict(replay.header.bind),
            api=api,
            storage=storage,
            settings=psettings,
            allow_insecure_http=run_settings.allow_insecure_http,
        )
        provider = cls(ctx)
        engine = Engine(
            provider,
            journal,
            replay,
            EngineSettings.from_run(run_settings, retry_failed=args.retry_failed),
            observer=reporter,
        )
        resumed = replay.runs > 0
        reporter.note(
            f"{'resuming' if resumed else 'starting'} {args.provider} upload of {args.manifest} "
            f"(journal {journal.path}; {len(replay.done)} already done)"
        )
        reporter.event(
            "start",
            provider=args.provider,
            manifest=str(args.manifest),
            journal=str(journal.path),
            resumed=resumed,
            already_done=len(replay.done),
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
                        f"(at most {DRAIN_GRACE_S:.0f}s); press Ctrl-C again to stop now"
                    )
                    engine.drain()
                    tg.start_soon(_grace, engine)

        async with anyio.create_task_group() as tg:
            tg.start_soon(on_signals, tg)
            tg.start_soon(reporter.watch, engine)
            outcome = await engine.run(entries)
            tg.cancel_scope.cancel()
    journal.sync()
    final = replay_journal(journal.path)
    counts = final.counts()
    reporter.summary(outcome, counts, final.total, str(journal.path))
    if outcome.stop_reason == "interrupted" or (interrupted and outcome.drained):
        reporter.note(
            f"interrupted; run the same command again to resume ({len(final.done)} done so far)"
        )
        return EXIT_INTERRUPTED
    if outcome.stop_reason:
        return EXIT_STOPPED
    if outcome.drained:
        return EXIT_INTERRUPTED
    if counts["failed"] or counts["rejected"] or counts["in_flight"]:
        reporter.note(
            f"{counts['failed'] + counts['rejected']} items not uploaded "
            f"({counts['failed']} failed, {counts['rejected']} rejected)"
        )
        return EXIT_FAILED
    return EXIT_OK


async def _grace(engine: Any) -> None:
    import anyio

    await anyio.sleep(DRAIN_GRACE_S)
    engine.abort("interrupted")
