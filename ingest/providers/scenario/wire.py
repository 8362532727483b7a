"""Scenario's wire format: the error envelope and its triage, answer shapes, base64 bodies.

Owns three things the adapter and its multipart uploads share: `classify`,
which turns an error answer (``{"message", "reason"?, "details"?}``) into a
`TransferError` with its `Action` (and `wrong_base`, what the first call's
answer says when the base URL's path, not the model or key, is wrong); the small readers of answer objects
(``{"asset": {"id": …}}`` and the like), which treat a malformed answer as
retryable; and `json_with_b64`, a JSON body whose middle is a file in base64,
read and encoded chunk by chunk so a 3.5 MB image never sits in memory.

When to come back: ``retry-after-ms``, else ``Retry-After`` (both read by
`ingest.http` through `ingest.retry.parse_retry_after`, the millisecond one first
as the SDK: scenario-sdk ``_base_client.py::_parse_retry_after_header``),
else a 429's ``remainingSeconds`` at the top of the body (where Scenario's
Blender client reads it: ``scenario/core/api/client.py::_retry_delay``) or
under ``details`` (the training cooldown of scenario-labs/skills [S16]).
``x-should-retry: true|false`` (the SDK obeys it: ``_should_retry``) turns a
retry into an item failure or back; it never overrides a STOP (auth, ceiling).
"""

from __future__ import annotations

import base64
import math
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import anyio

from ingest.errors import Action, TransferError
from ingest.http import Response, http_error, triage
from ingest.item import Source
from ingest.manifest.packed.access import read_member
from ingest.redact import redact
from ingest.storage import FileChanged

PROVIDER = "scenario"
_B64_CHUNK = 3 * 64 * 1024  # a multiple of 3, so chunk encodings concatenate cleanly


def classify(response: Response, *, provider: str, op: str, auth_hint: str = "") -> TransferError:
    """A `TransferError` for a Scenario error answer (envelope ``{message, reason?, details?}``)."""
    payload = response.json()
    message = response.body[:200].decode("utf-8", "replace").strip() or f"HTTP {response.status}"
    reason: str | None = None
    details: Mapping[str, Any] = {}
    if isinstance(payload, dict):
        message = str(payload.get("message") or payload.get("error") or message)
        reason = str(payload["reason"]) if payload.get("reason") else None
        if isinstance(payload.get("details"), dict):
            details = payload["details"]
    status, lowered = response.status, message.lower()
    code = reason or f"http_{status}"
    action: Action | None = None
    if status in (401, 403):
        action, code = Action.STOP, "unauthorized" if status == 401 else "forbidden"
        if auth_hint:
            message = f"{message} ({auth_hint})"
    elif status == 429 and ("actionName" in details or "actionLimit" in details):
        action, code = Action.STOP, "limit_reached"
        name, limit = details.get("actionName", "?"), details.get("actionLimit", "?")
        message = (
            f"{message} ({name} limit {limit}); attaching in smaller batches cannot get "
            "under this ceiling: free room in the model or raise the plan's limit, then re-run"
        )
    elif status == 400 and "already a training image" in lowered:
        action, code = Action.FAIL_ITEM, "already_attached"
    elif status == 400 and "too many assetids" in lowered:
        action, code = Action.FAIL_ITEM, "too_many_asset_ids"
    action = action or triage(status)
    should_retry = (response.headers.get("x-should-retry") or "").strip().lower()
    if should_retry == "true" and action is Action.FAIL_ITEM:
        action = Action.RETRY
    elif should_retry == "false" and action is Action.RETRY:
        action = Action.FAIL_ITEM
        message = f"{message} (the API says not to retry)"
    err = http_error(response, provider=provider, op=op, code=code, message=message, action=action)
    if err.retry_after is None and status == 429 and isinstance(payload, dict):
        err.retry_after = _seconds(payload.get("remainingSeconds")) or _seconds(
            details.get("remainingSeconds")
        )
    return err


BASE_URL = "https://api.cloud.scenario.com/v1"  # Scenario's API: an API Gateway stage [S12]


def wrong_base(
    response: Response, *, called: str, base_url: str, op: str, auth_hint: str
) -> TransferError | None:
    """The run-stopping error for the answer to the run's first call (`called`, the
    model) when it suggests the base URL's path is wrong, not the model or the key; else
    None.

    Signs: a 404 without Scenario's error envelope (a web server's "404: Not Found", an
    HTML page: no Scenario route answered; the emulator's answer off /v1 too), or API
    Gateway's 403 ``{"message": "Missing Authentication Token"}``, its answer for a path
    it has no resource for (AWS re:Post, "troubleshoot 403 missing authentication token
    errors … with a custom domain name": "if the URL path is incorrect"). Another 403 to a
    base URL without /v1 names both suspects: the key and the path.
    """
    payload = response.json()
    message = payload.get("message") if isinstance(payload, dict) else None
    lacks_v1 = not base_url.rstrip("/").endswith("/v1")
    no_route = (response.status == 403 and message == "Missing Authentication Token") or (
        response.status == 404 and not isinstance(message, str)
    )
    if not (no_route or (response.status == 403 and lacks_v1)):
        return None
    said = message or response.body[:80].decode("utf-8", "replace").strip() or "no body"
    text = f"GET {redact(called)} answered {response.status} ({' '.join(str(said).split())})"
    where = "providers.scenario.base_url (or --base-url)"
    if lacks_v1:
        text += f": Scenario's base URL ends in /v1 ({BASE_URL}), and {where} {redact(base_url)}"
        text += " does not"
    else:
        text += f", not an answer of Scenario's API: check {where} (Scenario's is {BASE_URL})"
    if not no_route:
        text += f"; or the key is refused ({auth_hint})"
    return TransferError(
        text,
        action=Action.STOP,
        code="wrong_base_url" if no_route else "forbidden",
        provider=PROVIDER,
        op=op,
        status=response.status,
    )


def _seconds(value: Any) -> float | None:
    """A positive number of seconds from a JSON number (or a number in a string), else None."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        return None
    return float(value)


def b64_length(size: int) -> int:
    """Length of the padded base64 encoding of `size` bytes."""
    return 4 * math.ceil(size / 3)


def bad_response(message: str, *, op: str, status: int | None = None) -> TransferError:
    return TransferError(
        message, action=Action.RETRY, code="bad_response", provider=PROVIDER, op=op, status=status
    )


def object_of(payload: Any, key: str) -> dict[str, Any] | None:
    value = payload.get(key) if isinstance(payload, dict) else None
    return value if isinstance(value, dict) else None


def id_of(payload: Any, key: str, *, op: str, status: int) -> str:
    """``payload[key]["id"]`` as a non-empty string, else a retryable bad answer."""
    obj = object_of(payload, key)
    value = obj.get("id") if obj is not None else None
    if not isinstance(value, str) or not value:
        raise bad_response(f"answer lacks {key}.id", op=op, status=status)
    return value


async def json_with_b64(
    head: bytes, source: Source, tail: bytes, problems: list[BaseException]
) -> AsyncGenerator[bytes, None]:
    """`head`, the file's bytes in base64 (read and encoded chunk by chunk), `tail`.

    A file that shrank or grew since it was checked, or cannot be read, ends
    the body early (storage of a cut body keeps nothing) and is appended to
    `problems`: aiohttp reports it as a send error, which would look
    retryable, so the caller looks there first.
    """
    yield head
    try:
        # Read whole in one thread hop (assets and inline bodies are < 3.5 MB): no
        # file stays open across a `yield`, so an abandoned body leaks nothing.
        data = await anyio.to_thread.run_sync(_read_checked, source)
    except (FileChanged, OSError) as exc:
        problems.append(exc)
        raise
    for start in range(0, len(data), _B64_CHUNK):
        yield base64.b64encode(data[start : start + _B64_CHUNK])
    yield tail


def _read_checked(source: Source) -> bytes:
    """The file's bytes, refused if its size changed since it was checked."""
    if source.item.member is not None:  # a shard's member: exactly its bytes
        return read_member(source.item.path, source.item.member, source.size)
    with source.item.path.open("rb") as fh:
        data = fh.read(source.size + 1)
    if len(data) > source.size:
        raise FileChanged(f"file grew during upload: more than {source.size} bytes")
    if len(data) < source.size:
        raise FileChanged(f"file shrank during upload: {len(data)} of {source.size} bytes")
    return data
