"""Assembly of the emulator's aiohttp application from its route modules.

Owns which routes exist: the shared storage route, the ``/_sim`` control
routes, and one module per provider, each exposing ``add_routes(ctx)``.
Adding a provider (ModelHunter, Autoenhance, Scenario) means a sibling
module and one line in `PROVIDERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ingest.sim import autoenhance, control, modelhunter, novita, scenario, storage
from ingest.sim.context import SimContext
from ingest.sim.settings import SimSettings

# Provider route modules, each `add_routes(ctx)`; their routes share storage, state and faults.
PROVIDERS: tuple[Callable[[SimContext], None], ...] = (
    novita.add_routes,
    modelhunter.add_routes,
    autoenhance.add_routes,
    scenario.add_routes,
)

# Largest API request body read into memory (provider JSON bodies are small).
_CLIENT_MAX_SIZE = 8 * 1024 * 1024


def build_app(settings: SimSettings) -> tuple[web.Application, SimContext]:
    """A fresh emulator app and its context. Call inside the running event loop."""
    app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
    ctx = SimContext(settings, app)
    storage.add_routes(ctx)
    control.add_routes(ctx)
    for add_routes in PROVIDERS:
        add_routes(ctx)
    return app, ctx
