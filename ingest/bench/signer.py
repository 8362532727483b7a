"""The minimal signing process of the reference benchmarks: each provider's acquire, nothing else.

Owns the smallest API that lets `ingest run`, `ingest bench` and the bare
reference loop (`ingest.bench.bare`) upload through every provider's flow to
the nginx sink (`ingest.bench.sink`), at little CPU: no state but counters,
no checks, no faults. It is not the emulator (`ingest.sim`, which verifies
SigV4 and keeps every object and is what lease and fault benchmarks use).

How it works: an aiohttp app (uvloop when installed) in its own process
(``python -m ingest.bench.signer --sink URL``; its first stdout line is
``signer listening on URL``). Every upload URL points at the sink with an
``X-Amz-*`` query whose signature is one HMAC-SHA256 over the path and the
date; the sink ignores it, the engine reads its expiry for the lease (one
hour). Each route names the provider page it answers like:

- Novita, https://novita.ai/docs/api-reference/model-apis-get-training-images-url:
  ``POST /v3/assets/training_dataset`` (JSON in) → ``{assets_id, upload_url}``.
- ModelHunter, https://docs.modelhunter.ai/core-concepts/file-uploads:
  ``POST /api/v1/files/upload-url`` → ``{success, data: {upload_url, file_id,
  expires_at}}``; ``POST /api/v1/files/{id}/complete`` answers at once
  (``url`` is an invented ``.invalid`` CDN address: nothing fetches it).
- Autoenhance, https://docs.autoenhance.ai/images/managing-images/creating-and-uploading:
  ``POST /v3/images/`` → ``{image_id, order_id, upload_url, status: waiting}``;
  ``GET /v3/orders/{id}`` is 404 (invented: only a resumed run asks, to tidy).
- Scenario, https://docs.scenario.com/api/resources/models/subresources/training_images
  and https://docs.scenario.com/get-started/content/uploading-assets, under
  ``/v1``: ``GET /models/{id}`` (any id exists: invented, a benchmark names
  no real model); ``POST /assets`` (the base64 JSON body is read and
  dropped, never decoded) → ``{asset: {id}}``; ``POST /models/{id}/training-images``
  (attach) → ``{trainingImage: {id}}``; ``POST /uploads`` → part URLs on the
  sink; ``POST /uploads/{id}/action`` and ``GET /uploads/{id}`` → ``complete``
  with the new asset's ``entityId`` at once (invented: no import delay).

``GET /_signer`` answers the counters (calls per route, Scenario body bytes);
``GET /_signer/arrivals?from=N`` the arrival times (``time.time()``, seconds)
of every API call from the Nth on, which the scale-out benchmark counts per
1-second window (invented: a benchmark's judge of a shared rate budget, as
the emulator's token bucket is the tests').
"""

from __future__ import annotations

import argparse
import array
import hashlib
import hmac
import itertools
import json
import os
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ingest.bench.procs import ServerProcess

READY_PREFIX = "signer listening on "
LIFETIME_S = 3600
_KEY = os.urandom(32)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Signer:
    """URLs on the sink, ids, and the counters."""

    def __init__(self, sink: str) -> None:
        self.sink = sink.rstrip("/")
        self.calls: Counter[str] = Counter()
        self.body_bytes = 0
        self.arrivals = array.array("d")  # time.time() of every API call, in arrival order
        self._ids = itertools.count(1)
        self._prefix = os.urandom(4).hex()
        self._second = -1
        self._amz_date = ""
        self._iso_expiry = ""

    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids):024x}"

    def _dates(self) -> tuple[str, str]:
        now = int(time.time())
        if now != self._second:  # formatted once a second, not per URL
            self._second = now
            self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            self._iso_expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + LIFETIME_S))
        return self._amz_date, self._iso_expiry

    def url(self, path: str) -> str:
        """A sink URL for `path` with a signed-looking ``X-Amz-*`` query (one HMAC)."""
        amz_date, _ = self._dates()
        mac = hmac.new(_KEY, f"{path}\n{amz_date}".encode(), hashlib.sha256).hexdigest()
        return (
            f"{self.sink}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={amz_date}"
            f"&X-Amz-Expires={LIFETIME_S}&X-Amz-SignedHeaders=host&X-Amz-Signature={mac}"
        )

    def expiry(self) -> str:
        return self._dates()[1]


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


async def _body(request: web.Request) -> dict[str, object]:
    data = orjson.loads(await request.read() or b"{}")
    return data if isinstance(data, dict) else {}


_EXTS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def _routes(s: _Signer) -> list[web.RouteDef]:
    async def novita(request: web.Request) -> web.StreamResponse:
        ext = str((await _body(request)).get("file_extension") or "bin")
        asset = s.new_id()
        return _json({"assets_id": asset, "upload_url": s.url(f"/novita/{asset}.{ext}")})

    async def modelhunter_url(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        file_id = s.new_id()
        ext = _EXTS.get(str(body.get("contentType")), "")
        data = {"upload_url": s.url(f"/modelhunter/{file_id}{ext}"), "file_id": file_id,
                "expires_at": s.expiry()}  # fmt: skip
        return _json({"success": True, "data": data})

    async def modelhunter_complete(request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        url = f"https://cdn.modelhunter.invalid/{file_id}"
        return _json({"success": True, "data": {"id": file_id, "url": url}})

    async def autoenhance_create(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        image = s.new_id()
        ext = _EXTS.get(str(body.get("content_type")), "")
        return _json({"image_id": image, "order_id": str(body.get("order_id") or s.new_id()),
                      "upload_url": s.url(f"/autoenhance/{image}{ext}"),
                      "status": "waiting"})  # fmt: skip

    async def autoenhance_order(request: web.Request) -> web.StreamResponse:
        return _json({"message": "Order not found"}, status=404)

    async def scenario_model(request: web.Request) -> web.StreamResponse:
        return _json({"model": {"id": request.match_info["model_id"], "status": "new"}})

    async def scenario_asset(request: web.Request) -> web.StreamResponse:
        while chunk := await request.content.readany():  # read and dropped, never decoded
            s.body_bytes += len(chunk)
        return _json({"asset": {"id": f"asset_{s.new_id()}", "status": "success"}})

    async def scenario_attach(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if len(raw) > 4096:  # inline mode: an image in base64, dropped undecoded
            s.body_bytes += len(raw)
            return _json({"trainingImage": {"id": f"asset_{s.new_id()}"}})
        body = orjson.loads(raw or b"{}")
        ids = body.get("assetIds") or [body.get("assetId") or ""]
        return _json({"trainingImage": {"id": str(ids[0])}})

    async def scenario_upload(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        upload = s.new_id()
        parts = int(body.get("parts") or 1)  # type: ignore[call-overload]
        urls = [{"number": n, "url": s.url(f"/scenario/{upload}/{n}")} for n in range(1, parts + 1)]
        return _json({"upload": {"id": upload, "status": "pending", "parts": urls}})

    async def scenario_done(request: web.Request) -> web.StreamResponse:
        upload = request.match_info["upload_id"]
        return _json({"upload": {"id": upload, "status": "complete",
                                 "entityId": f"asset_{upload}"}})  # fmt: skip

    async def counters(request: web.Request) -> web.StreamResponse:
        return _json({"calls": dict(s.calls), "body_bytes": s.body_bytes})

    async def arrivals(request: web.Request) -> web.StreamResponse:
        start = int(request.query.get("from", "0"))
        return _json({"arrivals": s.arrivals[start:].tolist(), "total": len(s.arrivals)})

    def counted(name: str, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            s.calls[name] += 1
            s.arrivals.append(time.time())
            return await handler(request)

        return wrapped

    table: list[tuple[str, str, str, Handler]] = [
        ("POST", "/v3/assets/training_dataset", "novita.acquire", novita),
        ("POST", "/api/v1/files/upload-url", "modelhunter.acquire", modelhunter_url),
        ("POST", "/api/v1/files/{file_id}/complete", "modelhunter.complete", modelhunter_complete),
        ("POST", "/v3/images/", "autoenhance.acquire", autoenhance_create),
        ("GET", "/v3/orders/{order_id}", "autoenhance.order", autoenhance_order),
        ("GET", "/v1/models/{model_id}", "scenario.model", scenario_model),
        ("POST", "/v1/assets", "scenario.asset", scenario_asset),
        ("POST", "/v1/models/{model_id}/training-images", "scenario.attach", scenario_attach),
        ("POST", "/v1/uploads", "scenario.upload", scenario_upload),
        ("POST", "/v1/uploads/{upload_id}/action", "scenario.complete", scenario_done),
        ("GET", "/v1/uploads/{upload_id}", "scenario.poll", scenario_done),
    ]
    routes = [web.route(m, path, counted(name, h)) for m, path, name, h in table]
    return [*routes, web.get("/_signer", counters), web.get("/_signer/arrivals", arrivals)]


def build_app(sink: str) -> web.Application:
    app = web.Application()
    app.add_routes(_routes(_Signer(sink)))
    return app


def main(argv: list[str] | None = None) -> int:
    """``python -m ingest.bench.signer --sink URL``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m ingest.bench.signer")
    parser.add_argument("--sink", required=True, help="the PUT sink's base URL")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    import asyncio
    import signal

    async def serve() -> None:
        runner = web.AppRunner(build_app(args.sink), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(f"{READY_PREFIX}http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await stop.wait()
        await runner.cleanup()

    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())
    return 0


class SignerProcess(ServerProcess):
    """A signer in its own process, stopped by its PID (`ServerProcess`)."""

    @classmethod
    def start(cls, sink: str) -> SignerProcess:
        args = [sys.executable, "-m", "ingest.bench.signer", "--sink", sink]
        return cls.spawn(args, READY_PREFIX, "signer")

    def counters(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/_signer", timeout=30) as resp:
            return dict(json.loads(resp.read()))

    def arrivals(self, start: int = 0) -> list[float]:
        """The arrival times (``time.time()``) of the API calls from the `start`-th on."""
        url = f"{self.base_url}/_signer/arrivals?from={start}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            return [float(t) for t in json.loads(resp.read())["arrivals"]]

    def calls(self) -> int:
        """API calls answered so far, all routes together."""
        return sum(int(n) for n in self.counters()["calls"].values())


if __name__ == "__main__":
    sys.exit(main())
