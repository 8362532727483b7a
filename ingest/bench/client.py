"""The measured side of `ingest bench`: one engine run, in its own process.

``python -m ingest.bench.client CONFIG_JSON`` wires a run the way ``ingest
run`` does (settings, journal, one session per role, the provider adapter,
`Engine`) but wraps the adapter in `TimedProvider` and has no display. It
prints one JSON object: the engine's counters, the timings, and the CPU time
of the event loop's thread during the run. Whole-process CPU and peak RSS
are measured by the parent (`os.wait4`), so start-up and imports count.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

import orjson

from ingest.loop import backend_options


class ClientConfig(TypedDict):
    """What the parent passes (as JSON on the command line)."""

    provider: str
    base_url: str
    manifest: str
    journal: str
    put_concurrency: int | None
    api_concurrency: int | None
    api_rate: float | None
    emulator: bool  # fill in a placeholder key, as `ingest run --sim` does


async def _run(config: ClientConfig) -> dict[str, Any]:
    from ingest.bench.timing import percentile, timed
    from ingest.config import load_settings, read_secrets
    from ingest.engine import Engine, EngineSettings
    from ingest.http import Timeouts, api_session, storage_session
    from ingest.journal import Header, Journal
    from ingest.manifest import read_manifest
    from ingest.providers import provider_class
    from ingest.providers.context import Context

    name = config["provider"]
    overrides = {
        key: value
        for key in ("put_concurrency", "api_concurrency", "api_rate")
        if (value := config[key]) is not None
    }
    settings = load_settings(
        None, run_overrides=overrides, provider_overrides={name: {"base_url": config["base_url"]}}
    )
    cls = provider_class(name)
    psettings = settings.provider(name)
    if config["emulator"]:
        for field in cls.key_envs:
            os.environ.setdefault(getattr(psettings, field), "sim-key")
    secrets = read_secrets(name, psettings, cls.key_envs)
    manifest = Path(config["manifest"])
    header = Header(provider=name, manifest=str(manifest), bind=cls.run_params(psettings, {}))
    journal, replay = Journal.open(
        Path(config["journal"]), header, sync_interval=settings.run.journal_sync_interval_s
    )
    run = settings.run
    timeouts = Timeouts(connect=run.connect_timeout_s, read=run.read_timeout_s)
    with journal:
        async with (
            api_session(
                psettings.base_url.rstrip("/") + "/",
                cls.auth_headers(secrets),
                timeouts,
                run.api_concurrency,
            ) as api,
            storage_session(timeouts, run.put_concurrency) as store,
        ):
            ctx = Context(
                params=dict(replay.header.bind),
                api=api,
                storage=store,
                settings=psettings,
                allow_insecure_http=run.allow_insecure_http,
            )
            provider = timed(cls(ctx))
            engine = Engine(provider, journal, replay, EngineSettings.from_run(run))
            cpu0 = time.thread_time()
            outcome = await engine.run(read_manifest(manifest))
            loop_cpu = time.thread_time() - cpu0
    c = outcome.counters
    t = provider.timings
    shares = [q / g for q, g in zip(t.queued_s, t.granted_s, strict=True) if g > 0]
    return {
        "done": c.done,
        "failed": c.failed,
        "rejected": c.rejected,
        "bytes": c.bytes_done,
        "api_calls": c.api_calls,
        "puts": c.puts,
        "retries": c.retries,
        "resigns": c.resigns,
        "throttles": c.throttles,
        "stop_reason": outcome.stop_reason,
        "elapsed_s": outcome.elapsed_s,
        "loop_cpu_s": loop_cpu,
        "acquires": t.acquires,
        "transfers": t.transfers,
        "api_429": t.api_429,
        "put_429": t.put_429,
        "api_latency_s": _quantiles(t.acquire_s, percentile),
        "put_latency_s": _quantiles(t.transfer_s, percentile),
        "queued_s": _quantiles(t.queued_s, percentile),
        "granted_s": _quantiles(t.granted_s, percentile),
        "queued_share": _quantiles(shares, percentile),
    }


def _quantiles(samples: Any, percentile: Any) -> dict[str, float | None]:
    return {
        "p50": percentile(samples, 0.5),
        "p99": percentile(samples, 0.99),
        "max": max(samples) if len(samples) else None,
    }


def main(argv: list[str] | None = None) -> int:
    import anyio

    args = sys.argv[1:] if argv is None else argv
    config: ClientConfig = orjson.loads(args[0])
    result = anyio.run(_run, config, backend="asyncio", backend_options=backend_options())
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
