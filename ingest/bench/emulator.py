"""The emulator in benchmark mode: a storage fast path, a sink for other tools, a child process.

`build_app(settings, fast=True)` assembles the same emulator as
`ingest.sim.app.build_app` (every provider's API from `ingest.sim.app.PROVIDERS`,
the ``/_sim`` routes, the same `SimContext`, faults and counters; Scenario
creates any model a run names) with one change: the stock storage route
runs with `discard_bodies` (`ingest.sim.storage.add_routes`): each PUT is
admitted exactly as always (SigV4 over the raw target, expiry, issued key, no
chunked bodies, Content-Length required, the fault plan's delay, stall, reset
and statuses), then its body is *counted and discarded* instead of hashed.
Objects are recorded with their size and an empty ``sha256``. With
``fast=False`` the storage route keeps bodies as usual.

`sink` adds ``PUT /{bucket}/{key}`` for tools that sign with an
``Authorization`` header (rclone's S3 backend, path style): the body is
discarded and counted (``GET /_bench/sink``: puts and bytes); no signature check.

Run it as its own process with ``python -m ingest.bench.emulator`` (same first
stdout line as ``ingest sim``); `EmulatorProcess` does that and reads its CPU
time from ``/proc`` (`ingest.bench.procs`) so a benchmark can report the emulator's share.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from ingest.bench.procs import ServerProcess
from ingest.loop import backend_options
from ingest.sim import control, storage
from ingest.sim.app import PROVIDERS
from ingest.sim.context import SimContext
from ingest.sim.faults import FaultPlan
from ingest.sim.settings import ScenarioSimSettings, SimSettings

READY_PREFIX = "ingest sim listening on "


def _add_sink(ctx: SimContext) -> None:
    """``PUT /{bucket}/{key}``: a discarding sink for header-signed S3 clients."""

    async def sink(request: web.Request) -> web.StreamResponse:
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
        ctx.state.count("sink_puts")
        ctx.state.count("sink_bytes", size)
        return web.Response(headers={"ETag": '"00000000000000000000000000000000"'})

    async def counts(request: web.Request) -> web.StreamResponse:
        events = ctx.state.events
        return web.json_response({"puts": events["sink_puts"], "bytes": events["sink_bytes"]})

    ctx.app.router.add_get("/_bench/sink", counts, allow_head=False)
    ctx.app.router.add_route("PUT", "/{bucket}/{key:.+}", sink)


def build_app(
    settings: SimSettings, *, fast: bool = True, sink: bool = False
) -> tuple[web.Application, SimContext]:
    """The emulator's app, with the storage fast path unless `fast` is False."""
    app = web.Application(client_max_size=8 * 1024 * 1024)
    ctx = SimContext(settings, app)
    storage.add_routes(ctx, discard_bodies=fast)
    control.add_routes(ctx)
    for add_routes in PROVIDERS:
        add_routes(ctx)
    if sink:
        _add_sink(ctx)
    return app, ctx


@asynccontextmanager
async def serve(
    settings: SimSettings, *, fast: bool = True, sink: bool = False
) -> AsyncIterator[str]:
    """Run the benchmark emulator for the block; yields its base URL."""
    import anyio

    app, ctx = build_app(settings, fast=fast, sink=sink)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        await site.start()
        yield f"http://{settings.host}:{runner.addresses[0][1]}"
    finally:
        ctx.closing.set()
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """``python -m ingest.bench.emulator``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m ingest.bench.emulator")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=120.0)
    parser.add_argument("--faults", default="")
    parser.add_argument("--stock", action="store_true", help="the stock storage route (hashes)")
    parser.add_argument("--sink", action="store_true", help="also PUT /BUCKET/KEY for rclone")
    args = parser.parse_args(argv)

    import signal

    import anyio

    settings = SimSettings(
        host="127.0.0.1",
        port=args.port,
        url_lifetime_s=args.lifetime,
        faults=FaultPlan.parse(args.faults),
        scenario=ScenarioSimSettings(auto_create_models=True),
    )

    async def run() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with serve(settings, fast=not args.stock, sink=args.sink) as url:
                print(READY_PREFIX + url, flush=True)
                async for _ in signals:
                    break

    anyio.run(run, backend="asyncio", backend_options=backend_options())
    return 0


class EmulatorProcess(ServerProcess):
    """A benchmark emulator in its own process, stopped by its PID (`ServerProcess`)."""

    @classmethod
    def start(
        cls, *, lifetime: float = 120.0, faults: str = "", fast: bool = True, sink: bool = False
    ) -> EmulatorProcess:
        args = [sys.executable, "-m", "ingest.bench.emulator", "--lifetime", str(lifetime)]
        if faults:
            args += ["--faults", faults]
        if not fast:
            args.append("--stock")
        if sink:
            args.append("--sink")
        return cls.spawn(args, READY_PREFIX, "emulator")

    def get(self, route: str) -> Any:
        with urllib.request.urlopen(self.base_url + route, timeout=30) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        return dict(self.get("/_sim/stats"))


if __name__ == "__main__":
    sys.exit(main())
