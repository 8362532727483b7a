"""Scenario's wire in the emulator: its error envelope, credentials and request bodies.

Owns what every Scenario route shares: the JSON error envelope
``{"message", "reason"?, "details"?}``, ``Basic base64(key:secret)``
credentials, reading a bounded JSON body (a client that vanishes mid-body is
`ClientGone`, counted as `CLIENT_GONE`), and decoding an inline image (base64
or a data URL, under `INLINE_LIMIT`) whose type the emulator's own magic-byte
table (`ingest.sim.magic`) must find among the formats Scenario documents.

A JSON body over the limit (`ScenarioSimSettings.json_body_limit`, 6 MB by
default) is read to its end and refused with ``413 {"message":"Request Too
Long"}``: what an API Gateway in front of a Lambda answers (its 6 MB payload
cap; docs/fidelity/scenario.md). Reading it first lets the
client see the answer instead of a reset mid-body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from collections.abc import Callable
from typing import Any, Literal

import anyio
import orjson
from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError

from ingest.sim.magic import ImageFormat, identify
from ingest.sim.scenario_world import json_response

INLINE_LIMIT = 6_000_000  # bytes of image: "< 6 MB" goes to /assets; more needs /uploads [S15]
TOO_LONG = "Request Too Long"  # API Gateway's 413 message (docs/fidelity/scenario.md)
_DRAIN_CAP = 64 * 1024 * 1024  # past this a refused body is not read on: the connection is cut
BODY_SIZE: web.RequestKey[int] = web.RequestKey("scenario.body_size", int)
BODY_JSON: web.RequestKey[dict[str, Any]] = web.RequestKey("scenario.body_json", dict)
# Asset formats Scenario documents [S15]; BMP is not one of them.
ACCEPTED = frozenset(
    {
        ImageFormat.JPEG,
        ImageFormat.PNG,
        ImageFormat.GIF,
        ImageFormat.WEBP,
        ImageFormat.AVIF,
        ImageFormat.TIFF,
        ImageFormat.HEIC,
    }
)
ACCEPTED_MIMES = frozenset(t.mime for t in ACCEPTED) | {"image/svg+xml"}
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,(.*)", re.S)
_INJECTED = {
    429: "Too Many Requests",
    500: "Internal server error",
    503: "Service Unavailable",
}
INJECTED_REMAINING_S = 2  # remainingSeconds of an injected 429 (when it carries one)
ImageField = Literal["either", "data_url", "base64"]


# The envelope: {"message"} with "reason"/"details" in some answers (scenario-labs/skills
# [S16]; partly third-party, the exact envelope is a gap). Scenario's Blender client reads
# reason, message, error or detail (scenario/core/api/client.py::_reason).
def error(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    **extra: Any,
) -> web.Response:
    """Scenario's error envelope (`extra`: more top-level fields)."""
    body: dict[str, Any] = {"message": message, **extra}
    if reason is not None:
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    return json_response(status, body)


def injected_errors(
    remaining_at: Literal["none", "top", "details"], should_retry: Literal["none", "true", "false"]
) -> Callable[[int], web.Response]:
    """The renderer of fault-plan 429/500/503s.

    A 429 carries no ``actionName`` (a rate limit, not a ceiling); with
    `remaining_at` it says ``remainingSeconds`` at the top of the body (where
    Scenario's Blender client reads it, ``client.py::_retry_delay``) or under
    ``details`` (the cooldown 429 of scenario-labs/skills). `should_retry`
    adds the ``x-should-retry`` header the SDK obeys (``_base_client.py::_should_retry``);
    whether Scenario's API sends it is unknown (invented, to test that it is honoured).
    """

    def render(status: int) -> web.Response:
        extra: dict[str, Any] = {}
        details: dict[str, Any] | None = None
        if status == 429 and remaining_at == "top":
            extra["remainingSeconds"] = INJECTED_REMAINING_S
        elif status == 429 and remaining_at == "details":
            details = {"remainingSeconds": INJECTED_REMAINING_S}
        response = error(status, _INJECTED[status], details=details, **extra)
        if should_retry != "none":
            response.headers["x-should-retry"] = should_retry
        return response

    return render


# Basic base64(key:secret) [S14]; scenario-sdk _client.py builds the same header.
def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(key, secret)`` from ``Basic base64(key:secret)``; None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key, sep, secret = decoded.partition(":")
    return (key, secret) if sep else None


class BadRequest(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


class ClientGone(Exception):
    """The connection was lost before the request body was read (the client died)."""


# The status counted for a request whose client vanished mid-body (nginx's "client
# closed request"); it is never sent, and never confused with a real answer.
CLIENT_GONE = 499


def bad(message: str, status: int = 400) -> BadRequest:
    return BadRequest(error(status, message, reason="bad_request"))


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    """The JSON object of the body; over `limit` bytes, a 413 once the body is read."""
    if request.content_type != "application/json":
        raise bad("Content-Type must be application/json")
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.readany():
            size += len(chunk)
            request[BODY_SIZE] = size
            if size > _DRAIN_CAP:
                raise ClientGone
            if size <= limit:
                chunks.append(chunk)
    except (OSError, ClientPayloadError, HttpProcessingError):
        raise ClientGone from None
    if size > limit:
        raise BadRequest(error(413, TOO_LONG))
    try:
        data = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise bad("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad("request body must be a JSON object")
    request[BODY_JSON] = data
    return data


def decode_image(field_name: str, text: Any, *, accept: ImageField) -> tuple[bytes, str | None]:
    """Bytes and declared MIME type of a base64 field: a data URL, bare base64, or either.

    A field that takes only bare base64 decodes a data URL as base64, and its
    ``data:…;base64,`` prefix is not valid base64: that is the 400 it answers.
    """
    if not isinstance(text, str) or not text:
        raise bad(f"{field_name}: must be a non-empty string")
    mime: str | None = None
    match = _DATA_URL.fullmatch(text) if accept != "base64" else None
    if match:
        mime, text = match.group(1).lower(), match.group(2)
    elif accept == "data_url":
        raise bad(f"{field_name}: must be a data URL (data:<mime>;base64,...)")
    if mime is not None and mime not in ACCEPTED_MIMES:
        raise bad(f"{field_name}: unsupported image type {mime}")
    if len(text) > math.ceil(INLINE_LIMIT / 3) * 4:
        raise bad(f"{field_name}: images of 6 MB or more must be uploaded with /uploads", 413)
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise bad(f"{field_name}: not valid base64") from None
    if len(raw) >= INLINE_LIMIT:
        raise bad(f"{field_name}: images of 6 MB or more must be uploaded with /uploads", 413)
    return raw, mime


def image_type(field_name: str, raw: bytes, declared: str | None) -> str:
    """The MIME type of image bytes Scenario accepts, else a 400."""
    kind = identify(raw)
    if kind is None or kind not in ACCEPTED:
        what = "not an image" if kind is None else f"unsupported image type {kind.ext}"
        raise bad(f"{field_name}: {what}")
    if declared is not None and declared != kind.mime:
        raise bad(f"{field_name}: declared {declared} but the bytes are {kind.mime}")
    return kind.mime


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


async def digest(raw: bytes) -> str:
    if len(raw) < 256 * 1024:
        return sha256_hex(raw)
    return await anyio.to_thread.run_sync(sha256_hex, raw)
