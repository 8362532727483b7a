"""What every emulator route shares: clock, faults, state, URL issuing, API plumbing.

Owns `SimContext`, the one object a provider module receives in its
``add_routes(ctx)``. A provider module registers its control-plane routes
through `SimContext.add_api_route`, which wraps each handler with what every
API route has in common, in this order:

1. one decision drawn from the fault plan, and one token from ``api.rate``;
2. a stall (hold, then drop the connection) or the injected latency;
3. a 429 from the token bucket (Retry-After from the bucket), else an injected
   429/500/503 rendered by the provider's own `ErrorRenderer`, else the handler;
4. a ``Date`` header from the emulator's (possibly skewed) clock, and the
   response counted under ``"<METHOD> <path>"`` and its status.

Upload targets are handed out with `issue_upload`, which signs a SigV4 URL
for this emulator's ``/s3/<bucket>/<key>`` route (or, with
`SimSettings.external_storage`, for an S3-compatible server:
`ingest.sim.external`) and records the asset; the storage route
(`ingest.sim.storage`) is shared by every provider. A route that must know
whether an asset's bytes landed asks `stored` / `landed`, which ask the
external store when there is one (and record what it holds).

Must be created inside the running event loop (it owns an `anyio.Event`).
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import math
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import anyio
from aiohttp import web

from ingest.sim import sigv4
from ingest.sim.external import ExternalStore
from ingest.sim.faults import FaultInjector, FaultPlan, retry_after_header
from ingest.sim.settings import SimSettings
from ingest.sim.state import IssuedAsset, SimState, StoredObject

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Renders an injected or rate-limit error (status 429, 500 or 503) in the provider's envelope.
ErrorRenderer = Callable[[int], web.Response]

STORAGE_PREFIX = "/s3"


class SimContext:
    """Shared runtime of one emulator: settings, state, faults, clock, router."""

    def __init__(self, settings: SimSettings, app: web.Application) -> None:
        self.settings = settings
        self.app = app
        self.state = SimState()
        self.injector = FaultInjector(settings.faults)
        self.closing = anyio.Event()
        self.providers: list[str] = []
        # Buckets whose storage answers in Cloudflare R2's dialect where it differs
        # from S3's (an expired URL: 403 ExpiredRequest); a provider module adds its own.
        self.r2_buckets: set[str] = set()
        self._date_cache: tuple[int, str] = (0, "")
        where = settings.external_storage
        self.external = None if where is None else ExternalStore(where, self.now)

    # -- clock and faults ---------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        return self.injector.plan

    def set_faults(self, plan: FaultPlan) -> None:
        """Replace the fault plan (fresh random streams and token bucket)."""
        self.injector = FaultInjector(plan)

    def now(self) -> float:
        """The emulator's clock: real time plus the plan's skew, epoch seconds."""
        return time.time() + self.injector.plan.skew

    def http_date(self) -> str:
        """The emulator's clock as an HTTP ``Date`` value (formatted once per second)."""
        second = int(self.now())
        cached_second, text = self._date_cache
        if second != cached_second:
            text = email.utils.formatdate(second, usegmt=True)
            self._date_cache = (second, text)
        return text

    def url_lifetime(self, provider: str) -> int:
        """Lifetime of `provider`'s URLs issued now, in whole seconds (at least 1)."""
        lifetime = self.injector.plan.lifetime
        seconds = self.settings.lifetime_of(provider) if lifetime is None else lifetime
        return max(1, math.ceil(seconds))

    async def hold(self, request: web.Request) -> None:
        """Stall: keep `request` unanswered until shutdown or the cap, then drop it."""
        with anyio.move_on_after(self.settings.stall_cap_s):
            await self.closing.wait()
        abort_connection(request)

    # -- auth ----------------------------------------------------------------

    def key_accepted(self, key: str) -> bool:
        """Whether an API key is valid here (any non-empty key when none are configured)."""
        keys = self.settings.api_keys
        return bool(key) and (keys is None or key in keys)

    # -- upload targets --------------------------------------------------------

    def issue_upload(
        self,
        request: web.Request,
        *,
        provider: str,
        remote_id: str,
        bucket: str,
        object_key: str,
        content_type: str | None = None,
        keep_body: bool = False,
    ) -> tuple[str, str]:
        """Sign a PUT URL for ``/s3/<bucket>/<object_key>`` and record the asset.

        The URL points at the authority the API request came in on, so it works
        whichever name the client used. With `content_type`, the URL signs
        ``content-type`` too and the PUT must send exactly that value. With
        `keep_body`, storage keeps the uploaded body in `SimState.bodies`.
        Returns ``(url, host)``: the Host the URL is signed for (the external
        store's, when there is one).
        """
        host = request.host
        now = self.now()
        lifetime = self.url_lifetime(provider)
        if self.external is not None:
            host = self.external.host
            url = self.external.presign(
                "PUT", f"{bucket}/{object_key}", lifetime=lifetime, content_type=content_type
            )
        else:
            signed = {"host": host}
            if content_type is not None:
                signed["content-type"] = content_type
            creds = self.settings.credentials
            url = sigv4.presign(
                "PUT",
                f"http://{host}",
                f"{STORAGE_PREFIX}/{bucket}/{object_key}",
                access_key=creds.access_key,
                secret=creds.secret,
                region=creds.region,
                now=datetime.fromtimestamp(now, tz=UTC),
                expires=lifetime,
                signed_headers=signed,
                extra_query=[("x-id", "PutObject")],
            )
        self.state.issue(
            IssuedAsset(
                remote_id=remote_id,
                provider=provider,
                key=f"{bucket}/{object_key}",
                created=now,
                expires=math.floor(now) + lifetime,
                content_type=content_type,
                keep_body=keep_body,
            )
        )
        return url, host

    async def stored(self, key: str, *, body: bool = False) -> StoredObject | None:
        """The object at issued `key` if its bytes landed (`body`: read them back too).

        Without an external store, what ``/s3`` recorded. With one, the store
        is asked (HEAD, or GET for `body`) until it holds the object, which is
        then recorded like a PUT to ``/s3`` (objects are never deleted there).
        """
        obj = self.state.objects.get(key)
        if obj is not None or self.external is None:
            return obj
        found = await (self.external.get(key) if body else self.external.head(key))
        if found is None:
            return None
        return self.state.store(
            key,
            size=found.size,
            sha256=found.sha256,
            content_type=found.content_type,
            body=found.body,
        )

    async def landed(self, *remote_ids: str) -> None:
        """Ask the external store about these issued assets (nothing to do without one)."""
        if self.external is None:
            return
        async with anyio.create_task_group() as tg:
            limit = anyio.Semaphore(16)
            for remote_id in remote_ids:
                asset = self.state.assets.get(remote_id)
                if asset is not None and asset.key not in self.state.objects:

                    async def ask(key: str = asset.key) -> None:
                        async with limit:
                            await self.stored(key)

                    tg.start_soon(ask)

    async def aclose(self) -> None:
        """Release what the context holds open (the external store's connections)."""
        if self.external is not None:
            await self.external.aclose()

    # -- API routes -------------------------------------------------------------

    def add_api_route(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        provider: str,
        errors: ErrorRenderer,
    ) -> None:
        """Register a provider API route wrapped with faults, rate limit, Date and counting."""
        if provider not in self.providers:
            self.providers.append(provider)
        label = f"{method} {path}"

        async def wrapped(request: web.Request) -> web.StreamResponse:
            injector = self.injector
            decision = injector.decide_api(request.path)
            wait = injector.throttle_api()
            if decision.stall:
                self.state.count("api_stalls")
                await self.hold(request)
                return web.Response()
            if decision.delay:
                await anyio.sleep(decision.delay)
            response: web.StreamResponse
            if wait is not None:
                self.state.count("api_rate_limited")
                response = errors(429)
                response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            elif decision.status is not None:
                response = errors(decision.status)
                retry_after = retry_after_header(injector.plan.api_retry_after)
                if decision.status == 429 and retry_after is not None:
                    response.headers["Retry-After"] = retry_after
            else:
                response = await handler(request)
            response.headers["Date"] = self.http_date()
            self.state.count_api(label, response.status)
            return response

        self.app.router.add_route(method, path, wrapped)


def abort_connection(request: web.Request) -> None:
    """Drop the request's connection with a TCP reset (SO_LINGER 0, then abort)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # The socket may already be gone; the abort below is still right.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def is_loopback(request: web.Request) -> bool:
    """Whether the peer is on this machine (control routes answer nobody else)."""
    remote = request.remote
    if remote is None:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:  # a Unix socket peer has no IP address
        return True
