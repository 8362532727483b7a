"""Autoenhance.ai's image API (v3), as its docs describe it.

API: https://docs.autoenhance.ai/images/managing-images/creating-and-uploading
Limits: https://docs.autoenhance.ai/rate-limits

Owns these routes, all authenticated with ``x-api-key``:

    POST /v3/images/            {image_name*, content_type?, order_id?, hdr?, ...}
        → 200 ImageCreatedOut with ``upload_url`` or, for older API versions,
          ``s3PutObjectUrl``
    GET  /v3/images/{image_id}  → ImageOut (no URL); ``status`` is "waiting"
          until the image's bytes land, then "processing" ("Once the image has
          been uploaded, our service will start enhancing your image":
          docs.autoenhance.ai/uploading-your-first-image)
    DELETE /v3/images/{image_id} → 204, the image leaves its order
          (https://docs.autoenhance.ai/images/managing-images/deleting; the
          ``autoenhance`` 1.1.0 SDK's ``api/images_api.py``)
    GET  /v3/orders/{order_id}  → OrderOut {order_id, images[], total_images, ...}

Error bodies are Autoenhance's: 401 ``{message, detail}`` for a missing or
unknown key; 422 ``{message, detail: {"<location>": {"<field>": [msgs]}}}``
for a bad body or ``x-api-version``; 404 for an id the caller does not own.

The upload URL is a SigV4 PUT to ``/s3/autoenhanceapi-prod/<order>/<image>``
that signs ``content-type`` as the create request declared it (or
``application/octet-stream`` when it declared none, as the docs say), so a
PUT with another Content-Type fails with 403 SignatureDoesNotMatch.

Limits (the rate-limits page above), each a setting of `AutoenhanceSimSettings`:
- ``rate`` requests/s per client IP on every route here (token bucket, burst
  = rate) → 429 ``{"message": "Too Many Requests", "detail": "Rate limit …"}``
  with ``Retry-After``;
- ``same_name_limit`` images per ``same_name_window_s`` with one exact
  ``image_name`` (per key) → 429 whose ``detail`` is an object naming the rule:
  ``{"rule": "same_file_name", "image_name", "limit", "window_s",
  "retry_after_s"}``, with ``Retry-After`` until the oldest use ages out. The
  real body is undocumented: this shape is ours, chosen so a client can
  tell it from a rate limit by structure; its ``message`` also names the rule;
- ``daily_limit`` images per key (off by default; 500 for new accounts) →
  the image is still created, with ``status: "error"`` and the reason in
  ``status_reason``: not an HTTP error, as the docs say.

Which URL field is returned: an ``x-api-version`` on or after
``upload_url_since`` gets ``upload_url``, an earlier one ``s3PutObjectUrl``;
without the header, the account default ``url_field`` applies. Which version
switched is undocumented.
"""

from __future__ import annotations

import collections
import math
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from ingest.sim.context import SimContext
from ingest.sim.faults import TokenBucket

PROVIDER = "autoenhance"
BUCKET = "autoenhanceapi-prod"
IMAGES_ROUTE = "/v3/images/"
IMAGE_ROUTE = "/v3/images/{image_id}"
ORDER_ROUTE = "/v3/orders/{order_id}"
SAME_NAME_RULE = "same_file_name"
OCTET_STREAM = "application/octet-stream"
SUPPORTED_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/webp", "image/heic", "image/tiff", OCTET_STREAM}
)
_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")
_BOOLEANS = ("hdr", "threesixty", "enhance", "sky_replacement", "privacy", "upscale")

_INJECTED = {
    429: ("Too Many Requests", "Rate limit exceeded: slow down"),
    500: ("Internal Server Error", "An unexpected error occurred"),
    503: ("Service Unavailable", "The service is temporarily unavailable"),
}


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


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def http_error(status: int, message: str, detail: Any) -> web.Response:
    """Autoenhance's ``HTTPError`` body."""
    return _json(status, {"message": message, "detail": detail})


def validation_error(location: str, field: str, *messages: str) -> web.Response:
    """Autoenhance's 422 ``ValidationError`` body."""
    return http_error(422, "Validation error", {location: {field: list(messages)}})


def injected_error(status: int) -> web.Response:
    """The body of a fault-plan (or rate-limit) 429/500/503."""
    message, detail = _INJECTED[status]
    return http_error(status, message, detail)


def _image_type(content_type: str | None, name: str) -> str:
    if content_type and content_type.startswith("image/"):
        return content_type.split("/", 1)[1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else "unknown"


def _validate(body: bytes) -> dict[str, Any] | web.Response:
    """The create request's fields, or the 422 naming the first bad one."""
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
    if content_type is not None:
        if not isinstance(content_type, str):
            return validation_error("json", "content_type", "Not a valid string.")
        if content_type.lower() not in SUPPORTED_TYPES:
            return validation_error(
                "json",
                "content_type",
                f"Unsupported content type {content_type!r}; must be one of "
                + ", ".join(sorted(SUPPORTED_TYPES)),
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

    def throttled(request: web.Request) -> web.Response | None:
        """The 429 of the per-IP request rate, or None to go on."""
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
        response = http_error(
            429, "Too Many Requests", f"Rate limit exceeded: {options.rate:g} requests per second"
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response

    def caller(request: web.Request) -> str | web.Response:
        key = request.headers.get("x-api-key", "").strip()
        if not key:
            return http_error(401, "Unauthorized", "Missing API key: send it in x-api-key")
        if not ctx.key_accepted(key):
            return http_error(401, "Unauthorized", "Invalid API key")
        return key

    def admit(request: web.Request) -> str | web.Response:
        """The caller's key after the rate limit and auth, or the answer refusing it."""
        return throttled(request) or caller(request)

    def same_name_refusal(key: str, name: str, now: float) -> web.Response | None:
        """The 429 of the identical-file-name rule, or None (and the use counted)."""
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
        retry_after = max(1, math.ceil(uses[0] + window - now))
        response = http_error(
            429,
            f"Too many images with the same file name: {limit} per {window:g} s",
            {
                "rule": SAME_NAME_RULE,
                "image_name": name,
                "limit": limit,
                "window_s": window,
                "retry_after_s": retry_after,
            },
        )
        response.headers["Retry-After"] = str(retry_after)
        return response

    def url_field(request: web.Request) -> str | web.Response:
        version = request.headers.get("x-api-version")
        if version is None:
            return options.url_field
        if not _VERSION.fullmatch(version.strip()):
            return validation_error(
                "headers", "x-api-version", "Not a valid API version (YYYY-MM-DD)."
            )
        return "upload_url" if version.strip() >= options.upload_url_since else "s3PutObjectUrl"

    def image_out(record: ImageRecord) -> dict[str, Any]:
        status = record.status
        if status == "waiting" and ctx.state.object_for(record.image_id) is not None:
            status = "processing"
        return {
            "image_id": record.image_id,
            "order_id": record.order_id,
            "image_name": record.image_name,
            "image_type": _image_type(record.content_type, record.image_name),
            "user_id": f"user_{uuid.uuid5(uuid.NAMESPACE_OID, record.owner).hex[:12]}",
            "date_added": record.date_added,
            "status": status,
            "status_reason": record.status_reason,
            "enhanced": False,
            "error": status == "error",
            "downloaded": False,
            "scene": None,
        }

    async def create(request: web.Request) -> web.StreamResponse:
        key = admit(request)
        if isinstance(key, web.Response):
            return key
        field = url_field(request)
        if isinstance(field, web.Response):
            return field
        if request.content_type != "application/json":
            return validation_error("json", "_schema", "Content-Type must be application/json.")
        data = _validate(await request.read())
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
        return _json(200, {**echoed, **image_out(record), field: url})

    def owned(request: web.Request) -> ImageRecord | web.Response:
        """The caller's image named in the path, or the answer refusing the request."""
        key = admit(request)
        if isinstance(key, web.Response):
            return key
        record = images.get(request.match_info["image_id"])
        if record is None or record.owner != key:
            return http_error(404, "Not Found", "Image not found")
        return record

    async def get_image(request: web.Request) -> web.StreamResponse:
        record = owned(request)
        if isinstance(record, web.Response):
            return record
        return _json(200, image_out(record))

    async def delete_image(request: web.Request) -> web.StreamResponse:
        record = owned(request)
        if isinstance(record, web.Response):
            return record
        del images[record.image_id]
        orders[record.order_id].remove(record.image_id)
        return web.Response(status=204)

    async def get_order(request: web.Request) -> web.StreamResponse:
        key = admit(request)
        if isinstance(key, web.Response):
            return key
        order_id = request.match_info["order_id"]
        owned = [images[i] for i in orders.get(order_id, ()) if images[i].owner == key]
        if not owned:
            return http_error(404, "Not Found", "Order not found")
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

    ctx.add_api_route("POST", IMAGES_ROUTE, create, provider=PROVIDER, errors=injected_error)
    ctx.add_api_route("GET", IMAGE_ROUTE, get_image, provider=PROVIDER, errors=injected_error)
    ctx.add_api_route("DELETE", IMAGE_ROUTE, delete_image, provider=PROVIDER, errors=injected_error)
    ctx.add_api_route("GET", ORDER_ROUTE, get_order, provider=PROVIDER, errors=injected_error)
