"""Running the emulator on a socket: `serve` and the `SimServer` handle it yields.

Owns the listening socket and the server's lifetime. ``async with
serve(settings) as sim`` binds (port 0 picks a free port), serves until the
block exits, then shuts down: stalled requests are released first (they drop
their connections), in-flight handlers get a short grace, and cleanup runs
shielded from cancellation so an aborted test still frees the port. With an
external store, its bucket is checked first: a wrong URL or key raises
`ExternalStoreError` before anything listens.

Runs on asyncio (aiohttp), so from anyio only on the asyncio backend.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from aiohttp import web

from ingest.sim.app import build_app
from ingest.sim.context import SimContext
from ingest.sim.faults import FaultPlan
from ingest.sim.settings import SimSettings, StorageCredentials
from ingest.sim.state import SimState

_SHUTDOWN_GRACE_S = 2.0


class SimServer:
    """A running emulator: where it listens, what it recorded, and its fault switch."""

    def __init__(self, ctx: SimContext, base_url: str) -> None:
        self._ctx = ctx
        self.base_url = base_url

    @property
    def settings(self) -> SimSettings:
        return self._ctx.settings

    @property
    def state(self) -> SimState:
        return self._ctx.state

    @property
    def credentials(self) -> StorageCredentials:
        """The storage identity upload URLs are signed with (for tests that sign their own)."""
        return self._ctx.settings.credentials

    @property
    def faults(self) -> FaultPlan:
        return self._ctx.faults

    @property
    def providers(self) -> tuple[str, ...]:
        """The providers whose API routes this emulator serves."""
        return tuple(self._ctx.providers)

    def set_faults(self, plan: FaultPlan | str) -> None:
        """Replace the fault plan now; a string is parsed with `FaultPlan.parse`."""
        self._ctx.set_faults(FaultPlan.parse(plan) if isinstance(plan, str) else plan)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass  # a name such as "localhost"
    return host


@asynccontextmanager
async def serve(settings: SimSettings | None = None) -> AsyncIterator[SimServer]:
    """Run an emulator for the duration of the block."""
    settings = settings or SimSettings()
    app, ctx = build_app(settings)
    if ctx.external is not None:
        try:
            await ctx.external.check()  # ExternalStoreError: a wrong URL, bucket or key
        except BaseException:
            await ctx.aclose()
            raise
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE_S
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        yield SimServer(ctx, f"http://{_url_host(settings.host)}:{port}")
    finally:
        ctx.closing.set()
        with anyio.CancelScope(shield=True), anyio.move_on_after(_SHUTDOWN_GRACE_S * 3):
            await runner.cleanup()
            await ctx.aclose()
