"""The measured side of `ingest bench`: one engine run, in its own process.

``python -m ingest.bench.client CONFIG_JSON`` runs an upload through the
library (`ingest.api`), as ``ingest run`` does, but wraps the adapter in
`TimedProvider` and has no display. It
prints one JSON object: the engine's counters, the timings, and the CPU time
of the event loop's thread during the run. Whole-process CPU and peak RSS
are measured by the parent (`os.wait4`), so start-up and imports count.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TypedDict

import orjson


class ClientConfig(TypedDict):
    """What the parent passes (as JSON on the command line)."""

    provider: str
    base_url: str
    settings: dict[str, Any]  # provider settings given as flags
    manifest: str
    journal: str
    put_concurrency: int | None
    api_concurrency: int | None
    api_rate: float | None
    put_transport: str | None  # "lean" or "aiohttp"; None: the [run] default
    emulator: bool  # fill in a placeholder key, as `ingest run --sim` does


async def _run(config: ClientConfig) -> dict[str, Any]:
    from ingest.api import Upload
    from ingest.api.wiring import prepare
    from ingest.bench.timing import TimedProvider, percentile, timed
    from ingest.providers.base import Provider

    overrides: dict[str, Any] = {
        key: value
        for key in ("put_concurrency", "api_concurrency", "api_rate", "put_transport")
        if (value := config[key]) is not None
    }
    plan = prepare(
        config["manifest"],
        provider=config["provider"],
        journal=config["journal"],
        settings={**overrides, **config["settings"], "base_url": config["base_url"]},
        keys="sim" if config["emulator"] else "env",
    )
    wrapped: list[TimedProvider] = []

    def wrap(provider: Provider) -> Provider:
        wrapped.append(timed(provider))
        return wrapped[-1]

    async with Upload(plan, wrap=wrap) as run:
        cpu0 = time.thread_time()
        result = await run.wait()
        loop_cpu = time.thread_time() - cpu0
    c = result.this_run
    t = wrapped[0].timings
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
        "stop_reason": None if result.stop_reason is None else result.stop_reason.value,
        "stop_message": result.stop_message,
        "elapsed_s": result.elapsed_s,
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

    from ingest.loop import backend_options

    args = sys.argv[1:] if argv is None else argv
    from ingest.errors import IngestError
    from ingest.redact import redact

    config: ClientConfig = orjson.loads(args[0])
    try:
        result = anyio.run(_run, config, backend="asyncio", backend_options=backend_options())
    except IngestError as exc:  # bad settings, key, journal: one line for the parent to show
        sys.stderr.write(redact(str(exc)) + "\n")
        return 2
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
