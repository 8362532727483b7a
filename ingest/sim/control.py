"""The emulator's own control and inspection routes under ``/_sim``.

Owns the out-of-process view of `SimState` and the runtime fault switch.
No auth, but only loopback peers are answered (403 otherwise):

    GET /_sim/health   {"ok": true, "providers": [...], "faults": "<plan>"}
    GET /_sim/objects  {"objects": [{key, size, sha256, puts, remote_id, content_type, provider}]}
    GET /_sim/assets   {"assets": [{remote_id, provider, key, created, expires, content_type}]}
    GET /_sim/stats    the counters of `SimStats`
    GET /_sim/faults   {"faults": "<plan>"}
    PUT /_sim/faults   body: a plan string → {"faults": "<plan>"}, or 400 {"error": "..."}

These routes are not counted, faulted or rate limited.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ingest.sim.context import Handler, SimContext, is_loopback
from ingest.sim.faults import FaultPlan


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def add_routes(ctx: SimContext) -> None:
    """Register the ``/_sim`` routes."""

    def local(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not is_loopback(request):
                return _json({"error": "control routes answer loopback peers only"}, 403)
            return await handler(request)

        return guarded

    @local
    async def health(request: web.Request) -> web.StreamResponse:
        return _json({"ok": True, "providers": ctx.providers, "faults": str(ctx.faults)})

    @local
    async def objects(request: web.Request) -> web.StreamResponse:
        found = sorted(ctx.state.objects.values(), key=lambda o: o.key)
        return _json({"objects": [obj.to_json() for obj in found]})

    @local
    async def assets(request: web.Request) -> web.StreamResponse:
        listed = [
            {
                "remote_id": a.remote_id,
                "provider": a.provider,
                "key": a.key,
                "created": a.created,
                "expires": a.expires,
                "content_type": a.content_type,
            }
            for a in ctx.state.assets.values()
        ]
        return _json({"assets": listed})

    @local
    async def stats(request: web.Request) -> web.StreamResponse:
        return _json(ctx.state.stats().to_json())

    @local
    async def get_faults(request: web.Request) -> web.StreamResponse:
        return _json({"faults": str(ctx.faults)})

    @local
    async def put_faults(request: web.Request) -> web.StreamResponse:
        text = (await request.read()).decode("utf-8", errors="replace")
        try:
            plan = FaultPlan.parse(text)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        ctx.set_faults(plan)
        return _json({"faults": str(plan)})

    router = ctx.app.router
    router.add_get("/_sim/health", health, allow_head=False)
    router.add_get("/_sim/objects", objects, allow_head=False)
    router.add_get("/_sim/assets", assets, allow_head=False)
    router.add_get("/_sim/stats", stats, allow_head=False)
    router.add_get("/_sim/faults", get_faults, allow_head=False)
    router.add_put("/_sim/faults", put_faults)
