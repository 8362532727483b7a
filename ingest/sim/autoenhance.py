"""Autoenhance.ai's image API (v3), as its docs and SDK describe it.

API: https://docs.autoenhance.ai/images/managing-images/creating-and-uploading
Limits: https://docs.autoenhance.ai/rate-limits
SDK: PyPI ``autoenhance`` 1.1.0 (``api/images_api.py``, ``api/orders_api.py``,
``models/*``). docs/fidelity/autoenhance.md is the table of every behaviour
here, its source or why it is invented, and the setting for each gap.

Owns these routes, all authenticated with ``x-api-key`` (SDK
``configuration.py``; required on the two GETs too, which the SDK sends
without it: invented, stricter):

    POST /v3/images/            {image_name*, content_type?, order_id?, hdr?, ...}
        → 200 ImageCreatedOut with ``upload_url`` or, for older API versions,
          ``s3PutObjectUrl`` (seed page; SDK ``models/image_created_out.py``)
    GET  /v3/images/{image_id}  → ImageOut, no URL (SDK ``models/image_out.py``);
          "waiting" until the bytes land, then "processing"
          (docs.autoenhance.ai/uploading-your-first-image)
    DELETE /v3/images/{image_id} → 204, the image leaves its order (SDK
          ``delete_image``; docs .../managing-images/deleting)
    GET  /v3/orders/{order_id}  → OrderOut (SDK ``models/order_out.py``)
    PUT  /v3/images/{image_id}/upload   only with ``upload_host="api"``
          (invented: plays fidelity gap 11, an ``upload_url`` on the API's
          host; the HDR quickstart's PUT carries ``x-api-key``) → 200
          ``{"status": "success"}`` (the seed page's example PUT answer)

Errors are ``HTTPError {message, detail}``, ``detail`` an object or absent
(SDK ``models/http_error.py``; the words are invented), and 422
``ValidationError {message, detail: {"<location>": {"<field>": [msgs]}}}``
(SDK ``models/validation_error*.py``).

The S3 upload URL (``/s3/autoenhanceapi-prod/<order>/<image>``, the docs'
bucket; the key layout invented) signs ``content-type`` as declared, or
``application/octet-stream`` when none was (seed page), so another
Content-Type gets 403 SignatureDoesNotMatch. ``content_type="ignored"`` plays
an API that drops the field (SDK 1.1.0's ``models/image_in.py`` has none):
every URL then signs octet-stream.

Limits, each a setting of `AutoenhanceSimSettings` (rate-limits page; every
``Retry-After`` value is invented): ``rate`` requests/s per client IP → 429;
``same_name_limit`` creates per ``same_name_window_s`` with one exact
``image_name`` → 429; ``daily_limit`` images per key per day → created with
``status: "error"`` and ``status_reason``, not an HTTP error. The 429 bodies
are undocumented: ``body_429`` plays "worded", "generic" and "empty".

``x-api-version`` on or after ``upload_url_since`` gets ``upload_url``, an
earlier date ``s3PutObjectUrl``, anything else the account's ``url_field``
(versions: docs.autoenhance.ai/api-versions; the cut-over date is invented).
``content_types`` and ``max_size_bytes`` (413 on the API-host route; on S3,
a landed image over it shows ``status: "error"``) are invented gaps too.

The last `RECEIVED_KEPT` requests (method, path, the headers that matter,
the JSON body) are kept in ``app[RECEIVED]`` for the SDK shape tests.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import ClientPayloadError, web

from ingest.sim.context import SimContext, abort_connection
from ingest.sim.faults import TokenBucket
from ingest.sim.settings import AutoenhanceSimSettings

PROVIDER = "autoenhance"
BUCKET = "autoenhanceapi-prod"  # the bucket in the docs' example URL
IMAGES_ROUTE = "/v3/images/"
IMAGE_ROUTE = "/v3/images/{image_id}"
UPLOAD_ROUTE = "/v3/images/{image_id}/upload"  # invented (upload_host="api" only)
ORDER_ROUTE = "/v3/orders/{order_id}"
OCTET_STREAM = "application/octet-stream"
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
_BOOLEANS = ("hdr", "threesixty", "enhance", "sky_replacement", "privacy", "upscale")
_CHUNK = 256 * 1024
_RECORDED_HEADERS = ("x-api-key", "x-api-version", "content-type")
RECEIVED_KEPT = 64  # bounded: a benchmark's million creates must not grow memory

# Fault-plan bodies; their words are invented (Autoenhance documents none).
_INJECTED = {500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image created through the API."""

    image_id: str
    order_id: str
    owner: str  # the API key that created it
    image_name: str
    content_type: str | None
    date_added: int  # ms since the epoch, emulator clock
    status: str  # "waiting" until its bytes land; "error" past the daily limit
    status_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """One request to these routes, as it arrived (for shape tests)."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names, only `_RECORDED_HEADERS`
    body: Any  # the decoded JSON body, or None


RECEIVED: web.AppKey[collections.deque[Received]] = web.AppKey("autoenhance.received")


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def http_error(status: int, message: str, detail: dict[str, Any] | None = None) -> web.Response:
    """Autoenhance's ``HTTPError`` body: ``detail`` is an object, or absent (SDK)."""
    return _json(
        status, {"message": message} if detail is None else {"message": message, "detail": detail}
    )


def validation_error(location: str, field: str, *messages: str) -> web.Response:
    """Autoenhance's 422 ``ValidationError`` body."""
    return http_error(422, "Validation error", {location: {field: list(messages)}})


def too_many(options: AutoenhanceSimSettings, name: str | None = None) -> web.Response:
    """A 429 as `body_429` plays it; `name` is set for the identical-file-name rule."""
    if options.body_429 == "empty":
        return web.Response(status=429)
    if options.body_429 == "worded" and name is not None:
        return http_error(
            429,
            f"Duplicate filename {name!r}: at most {options.same_name_limit} images with the "
            f"same file name per {options.same_name_window_s:g} s",
        )
    return http_error(429, "Too Many Requests")


def _image_type(content_type: str | None, name: str) -> str:
    if content_type and content_type.startswith("image/"):
        return content_type.split("/", 1)[1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else "unknown"


def _validate(body: bytes, options: AutoenhanceSimSettings) -> dict[str, Any] | web.Response:
    """The create request's fields, or the 422 naming the first bad one (SDK ``image_in.py``)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return validation_error("json", "_schema", "Invalid JSON body.")
    if not isinstance(data, dict):
        return validation_error("json", "_schema", "Invalid input type.")
    name = data.get("image_name")
    if name is None:
        return validation_error("json", "image_name", "Missing data for required field.")
    if not isinstance(name, str) or not name.strip():
        return validation_error("json", "image_name", "Not a valid string.")
    content_type = data.get("content_type")
    if options.content_type == "ignored":
        data.pop("content_type", None)  # not in SDK 1.1.0's schema: an unknown field
    elif content_type is not None:
        if not isinstance(content_type, str):
            return validation_error("json", "content_type", "Not a valid string.")
        accepted = options.content_types | {OCTET_STREAM}
        if content_type.lower() not in accepted:
            return validation_error(
                "json",
                "content_type",
                f"Unsupported content type {content_type!r}; must be one of "
                + ", ".join(sorted(accepted)),
            )
    order_id = data.get("order_id")
    if order_id is not None and (not isinstance(order_id, str) or not order_id.strip()):
        return validation_error("json", "order_id", "Not a valid string.")
    for flag in _BOOLEANS:
        if flag in data and not isinstance(data[flag], bool):
            return validation_error("json", flag, "Not a valid boolean.")
    if data.get("hdr") and order_id is None:
        return validation_error("json", "order_id", "order_id is required when hdr is true.")
    return data


def add_routes(ctx: SimContext) -> None:
    """Register Autoenhance's routes on the emulator."""
    options = ctx.settings.autoenhance
    images: dict[str, ImageRecord] = {}
    orders: dict[str, list[str]] = {}
    order_created: dict[str, float] = {}
    names: dict[tuple[str, str], collections.deque[float]] = {}
    daily: collections.Counter[tuple[str, int]] = collections.Counter()
    buckets: dict[str, TokenBucket] = {}
    received: collections.deque[Received] = collections.deque(maxlen=RECEIVED_KEPT)
    ctx.app[RECEIVED] = received

    def injected_error(status: int) -> web.Response:
        """The body of a fault-plan (or rate-limit) 429/500/503."""
        return too_many(options) if status == 429 else http_error(status, _INJECTED[status])

    def throttled(request: web.Request) -> web.Response | None:
        """The 429 of the per-IP request rate (rate-limits page), or None to go on."""
        if options.rate is None:
            return None
        peer = request.remote or ""
        now = time.monotonic()
        bucket = buckets.get(peer)
        if bucket is None:
            bucket = buckets[peer] = TokenBucket(options.rate, options.rate, now)
        wait = bucket.take(now)
        if wait <= 0.0:
            return None
        ctx.state.count("api_rate_limited")
        response = too_many(options)
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response

    def caller(request: web.Request) -> str | web.Response:
        key = request.headers.get("x-api-key", "").strip()
        if not key:
            return http_error(401, "Unauthorized", {"x-api-key": "Missing API key"})
        if not ctx.key_accepted(key):
            return http_error(401, "Unauthorized", {"x-api-key": "Invalid API key"})
        return key

    def admit(request: web.Request) -> str | web.Response:
        """The caller's key after the rate limit and auth, or the answer refusing it."""
        return throttled(request) or caller(request)

    def same_name_refusal(key: str, name: str, now: float) -> web.Response | None:
        """The 429 of the identical-file-name rule (rate-limits page), or None (use counted)."""
        limit = options.same_name_limit
        if limit is None:
            return None
        window = options.same_name_window_s
        uses = names.setdefault((key, name), collections.deque())
        while uses and uses[0] <= now - window:
            uses.popleft()
        if len(uses) < limit:
            uses.append(now)
            return None
        response = too_many(options, name)
        response.headers["Retry-After"] = str(max(1, math.ceil(uses[0] + window - now)))
        return response

    def url_field(request: web.Request) -> str:
        """Which URL field to answer (the cut-over date is invented, see the docstring)."""
        version = (request.headers.get("x-api-version") or "").strip()
        if not _VERSION.fullmatch(version):
            return options.url_field
        return "upload_url" if version >= options.upload_url_since else "s3PutObjectUrl"

    def image_out(record: ImageRecord) -> dict[str, Any]:
        status, reason = record.status, record.status_reason
        landed = ctx.state.object_for(record.image_id)
        if status == "waiting" and landed is not None:
            status = "processing"
            limit = options.max_size_bytes
            if limit is not None and landed.size > limit:
                status, reason = "error", f"Image file too large: over {limit} bytes"  # invented
        return {
            "image_id": record.image_id,
            "order_id": record.order_id,
            "image_name": record.image_name,
            "image_type": _image_type(record.content_type, record.image_name),
            "user_id": f"user_{uuid.uuid5(uuid.NAMESPACE_OID, record.owner).hex[:12]}",
            "date_added": record.date_added,
            "status": status,
            "status_reason": reason,
            "enhanced": False,
            "error": status == "error",
            "downloaded": False,
            "scene": None,
        }

    async def create(request: web.Request) -> web.StreamResponse:
        key = admit(request)
        if isinstance(key, web.Response):
            return key
        if request.content_type != "application/json":
            return validation_error("json", "_schema", "Content-Type must be application/json.")
        data = _validate(await request.read(), options)
        if isinstance(data, web.Response):
            return data
        name: str = data["image_name"]
        now = ctx.now()
        refused = same_name_refusal(key, name, now)
        if refused is not None:
            return refused
        content_type: str | None = data.get("content_type")
        content_type = content_type.lower() if content_type else None
        order_id: str = data.get("order_id") or str(uuid.uuid4())
        image_id = str(uuid.uuid4())
        status, reason = "waiting", None
        day = int(now // 86400)
        daily[(key, day)] += 1
        if options.daily_limit is not None and daily[(key, day)] > options.daily_limit:
            status = "error"
            reason = f"Daily enhancement limit of {options.daily_limit} images reached"
        url, _host = ctx.issue_upload(
            request,
            provider=PROVIDER,
            remote_id=image_id,
            bucket=BUCKET,
            object_key=f"{order_id}/{image_id}",
            content_type=content_type or OCTET_STREAM,
        )
        if options.upload_host == "api":
            url = f"http://{request.host}{UPLOAD_ROUTE.format(image_id=image_id)}"
        record = ImageRecord(
            image_id=image_id,
            order_id=order_id,
            owner=key,
            image_name=name,
            content_type=content_type,
            date_added=int(now * 1000),
            status=status,
            status_reason=reason,
        )
        images[image_id] = record
        orders.setdefault(order_id, []).append(image_id)
        order_created.setdefault(order_id, now)
        echoed = {k: v for k, v in data.items() if k not in ("image_name", "order_id")}
        return _json(200, {**echoed, **image_out(record), url_field(request): url})

    def owned(request: web.Request) -> ImageRecord | web.Response:
        """The caller's image named in the path, or the answer refusing the request."""
        key = admit(request)
        if isinstance(key, web.Response):
            return key
        record = images.get(request.match_info["image_id"])
        if record is None or record.owner != key:
            return http_error(404, "Image not found")
        return record

    async def get_image(request: web.Request) -> web.StreamResponse:
        record = owned(request)
        if isinstance(record, web.Response):
            return record
        await ctx.landed(record.image_id)  # an external store is asked (HEAD), as S3 would be
        return _json(200, image_out(record))

    async def delete_image(request: web.Request) -> web.StreamResponse:
        record = owned(request)
        if isinstance(record, web.Response):
            return record
        del images[record.image_id]
        orders[record.order_id].remove(record.image_id)
        return web.Response(status=204)

    async def upload(request: web.Request) -> web.StreamResponse:
        """The invented API-host PUT (see the docstring): the key, a length, the bytes."""
        record = owned(request)
        if isinstance(record, web.Response):
            return record
        expected = request.content_length
        if expected is None:
            return http_error(411, "Length Required")
        if options.max_size_bytes is not None and expected > options.max_size_bytes:
            return http_error(413, f"Image file too large: over {options.max_size_bytes} bytes")
        digest, size = hashlib.sha256(), 0
        try:
            while chunk := await request.content.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        except (OSError, ClientPayloadError):
            size = -1
        if size != expected:
            ctx.state.count("incomplete_bodies")
            abort_connection(request)
            return web.Response()
        ctx.state.store(
            ctx.state.assets[record.image_id].key,
            size=size,
            sha256=digest.hexdigest(),
            content_type=request.headers.get("Content-Type"),
        )
        return _json(200, {"status": "success"})

    async def get_order(request: web.Request) -> web.StreamResponse:
        key = admit(request)
        if isinstance(key, web.Response):
            return key
        order_id = request.match_info["order_id"]
        owned = [images[i] for i in orders.get(order_id, ()) if images[i].owner == key]
        if not owned:
            return http_error(404, "Order not found")
        await ctx.landed(*(record.image_id for record in owned))  # external store: HEADs
        listed = [image_out(record) for record in owned]
        processing = any(image["status"] == "processing" for image in listed)
        created = order_created[order_id]
        return _json(
            200,
            {
                "order_id": order_id,
                "name": order_id,
                "images": listed,
                "total_images": len(listed),
                "status": "processing" if processing else "waiting",
                "is_processing": processing,
                "is_merging": False,
                "is_deleted": False,
                "created_at": created,
                "last_updated_at": max(image["date_added"] for image in listed) / 1000,
            },
        )

    routes = [
        ("POST", IMAGES_ROUTE, create),  # seed page; SDK images_api.create_image
        ("GET", IMAGE_ROUTE, get_image),  # SDK images_api.retrieve_image
        ("DELETE", IMAGE_ROUTE, delete_image),  # SDK images_api.delete_image
        ("GET", ORDER_ROUTE, get_order),  # SDK orders_api.retrieve_order
    ]
    if options.upload_host == "api":
        routes.append(("PUT", UPLOAD_ROUTE, upload))  # invented (gap 11)
    for method, path, handler in routes:
        ctx.add_api_route(
            method, path, _recording(handler, received), provider=PROVIDER, errors=injected_error
        )


def _recording(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    received: collections.deque[Received],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`handler`, with each request it gets kept in `received` first."""

    async def recorded(request: web.Request) -> web.StreamResponse:
        body = None
        if request.content_type == "application/json" and request.can_read_body:
            with contextlib.suppress(ValueError):
                body = orjson.loads(await request.read())  # aiohttp keeps it for the handler
        headers = {h: request.headers[h] for h in _RECORDED_HEADERS if h in request.headers}
        received.append(Received(request.method, request.path, headers, body))
        return await handler(request)

    return recorded
