"""Novita AI's training-image upload API, as its docs describe it.

Sources: novita.ai/docs/api-reference/model-apis-get-training-images-url (the
page this project was started from: request, response, example URL),
/basic-error-code (reasons), /guides/error; the SDK
`novita-client` 0.7.1 (`novita_client/novita.py`, `proto.py`). Each behaviour
below names its source, or says "invented" and why.

Owns ``POST /v3/assets/training_dataset`` (get-training-images-url): Bearer
auth and ``Content-Type: application/json``, both required; the body
``{"file_extension": "png"|"webp"|"jpeg"}``; the response ``{"assets_id",
"upload_url", "method": "PUT", "headers": {"Host": {"values": [host]}}}``
whose URL is a SigV4 pre-signed PUT signing only ``host``, with ``x-id=PutObject``
and ``X-Amz-Expires=120`` (the page's example URL), to this emulator's
``/s3/faas-training-dataset/sim/<32 hex>.<ext>`` (the example's bucket and
key shape; the ``sim`` prefix is invented, for the example's ``test``).

Errors: Novita's v3 envelope ``{"code", "reason", "message", "metadata"}``
(third-party reports; `NovitaSimSettings.error_body` plays a plain-text or
empty body instead, a gap). No key → 400 ``MISSING_API_KEY`` and a wrong one →
403 ``INVALID_API_KEY`` "invalid api-key" (basic-error-code; the 403 is a live
probe's); a bad body → 400 ``INVALID_REQUEST_BODY`` (basic-error-code; the
messages are invented). Injected 429/500/503 (the fault plan) carry
``RATE_LIMIT_EXCEEDED`` (basic-error-code) and the invented
``INTERNAL_ERROR`` / ``SERVICE_UNAVAILABLE``; no rate limit is documented
for this route, so none is played unless the fault plan asks (``api.rate``).

`assets_id` is an int (the API reference's type) counting up from 100001
(invented start, near the example's 100024), or the 32-hex string form (the
guide's example, and the SDK's ``str``) when
`SimSettings.assets_id_as_string` is set. The state records it as a string.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from typing import Any

import orjson
from aiohttp import web

from ingest.sim.context import SimContext
from ingest.sim.settings import NovitaErrorBody

PROVIDER = "novita"
BUCKET = "faas-training-dataset"
PREFIX = "sim"
ROUTE = "/v3/assets/training_dataset"
EXTENSIONS = ("png", "webp", "jpeg")
FIRST_ASSETS_ID = 100001

_INJECTED = {
    429: ("RATE_LIMIT_EXCEEDED", "rate limit exceeded, please try again later"),
    500: ("INTERNAL_ERROR", "internal server error"),
    503: ("SERVICE_UNAVAILABLE", "service unavailable, please try again later"),
}


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def error(status: int, reason: str, message: str, body: NovitaErrorBody = "v3") -> web.Response:
    """Novita's v3 error envelope, or the plain-text or empty body `body` asks for (a gap)."""
    if body == "text":
        return web.Response(status=status, text=f"{reason}: {message}")
    if body == "empty":
        return web.Response(status=status)
    return _json(status, {"code": status, "reason": reason, "message": message, "metadata": {}})


def injected_error(status: int, body: NovitaErrorBody = "v3") -> web.Response:
    """A fault-plan 429/500/503 in the error body `body` asks for."""
    reason, message = _INJECTED[status]
    return error(status, reason, message, body)


def bearer_token(header: str | None) -> str | None:
    """The key of ``Bearer <key>``; "" for another scheme; None when no key was sent."""
    if header is None or not header.strip():
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip() or None


def _validate(raw: bytes, body: NovitaErrorBody) -> str | web.Response:
    """The requested file extension, or the 400 that explains what is wrong."""

    def bad(message: str) -> web.Response:
        return error(400, "INVALID_REQUEST_BODY", message, body)

    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return bad("request body is not valid JSON")
    if not isinstance(data, dict):
        return bad("request body must be a JSON object")
    if "file_extension" not in data:
        return bad("file_extension: field is required")
    extension = data["file_extension"]
    if not isinstance(extension, str):
        return bad("file_extension: must be a string")
    if extension not in EXTENSIONS:
        return bad(f"file_extension: must be one of {', '.join(EXTENSIONS)}, got {extension!r}")
    return extension


def add_routes(ctx: SimContext) -> None:
    """Register Novita's routes on the emulator."""
    ids = itertools.count(FIRST_ASSETS_ID)
    body = ctx.settings.novita.error_body

    async def create_upload(request: web.Request) -> web.StreamResponse:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return error(400, "MISSING_API_KEY", "missing api key", body)
        if not ctx.key_accepted(token):
            return error(403, "INVALID_API_KEY", "invalid api-key", body)
        if request.content_type != "application/json":
            message = "Content-Type: must be application/json"
            return error(400, "INVALID_REQUEST_BODY", message, body)
        checked = _validate(await request.read(), body)
        if isinstance(checked, web.Response):
            return checked
        extension = checked
        hex_id = uuid.uuid4().hex
        assets_id: int | str = hex_id if ctx.settings.assets_id_as_string else next(ids)
        url, host = ctx.issue_upload(
            request,
            provider=PROVIDER,
            remote_id=str(assets_id),
            bucket=BUCKET,
            object_key=f"{PREFIX}/{uuid.uuid4().hex}.{extension}",
        )
        return _json(
            200,
            {
                "assets_id": assets_id,
                "upload_url": url,
                "method": "PUT",
                "headers": {"Host": {"values": [host]}},
            },
        )

    errors = functools.partial(injected_error, body=body)
    # novita.ai/docs/api-reference/model-apis-get-training-images-url; novita-client 0.7.1
    # `upload_training_assets` makes this call (tests/sdk/test_novita_sdk.py).
    ctx.add_api_route("POST", ROUTE, create_upload, provider=PROVIDER, errors=errors)
