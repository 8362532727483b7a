"""The data plane: one streamed PUT of a file to a pre-signed URL.

Owns the rules of providers.md §5: the URL goes out byte for byte, the body is
streamed from disk with an exact Content-Length (never chunked), Content-Type
is always set to what was declared when the URL was signed, redirects are not
followed, and S3-style XML errors are triaged: an expired URL means re-sign,
never retry the dead URL.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiofiles
import aiohttp

from ingest.errors import Action, TransferError
from ingest.http import check_upload_url, map_errors, triage
from ingest.redact import redact
from ingest.retry import parse_retry_after

CHUNK = 256 * 1024
SMALL_FILE = 256 * 1024  # read in one go below this: one thread hop instead of a stream

_EXPIRED_CODES = frozenset({"ExpiredRequest", "ExpiredToken", "RequestExpired"})
_RESIGN_CODES = frozenset({"SignatureDoesNotMatch"})


class FileChanged(Exception):
    """The file on disk no longer has the size it was validated with."""


async def _stream(path: Path, size: int) -> AsyncIterator[bytes]:
    sent = 0
    async with aiofiles.open(path, "rb") as fh:
        while sent < size:
            chunk = await fh.read(min(CHUNK, size - sent))
            if not chunk:
                break
            sent += len(chunk)
            yield chunk
    if sent != size:
        raise FileChanged(f"file shrank during upload: {sent} of {size} bytes")


async def _read_small(path: Path, size: int) -> bytes:
    async with aiofiles.open(path, "rb") as fh:
        data = await fh.read(size + 1)
    if len(data) != size:
        raise FileChanged(f"file changed size since it was checked: {len(data)} != {size} bytes")
    return data


def _xml_field(body: str, name: str) -> str | None:
    match = re.search(rf"<{name}>(.*?)</{name}>", body, re.S)
    return match.group(1).strip() if match else None


def classify_storage_error(
    status: int, body: bytes, headers: Mapping[str, str], *, provider: str
) -> TransferError:
    """Triage a storage error answer (S3/R2 XML) into an action."""
    text = body[:4096].decode("utf-8", "replace")
    code = _xml_field(text, "Code") or f"http_{status}"
    message = _xml_field(text, "Message") or text.strip()[:200] or f"HTTP {status}"
    if code in _EXPIRED_CODES or (
        code == "AccessDenied" and _xml_field(text, "Expires") is not None
    ):
        action, code = Action.RESIGN, "expired"
    elif code in _RESIGN_CODES:
        action = Action.RESIGN
    elif status == 403:
        # Storage 403 is about this URL, not the user's API key.
        action = Action.RESIGN
    elif status in (501, 411):
        action = Action.FAIL_ITEM
    else:
        action = triage(status)
        if action is Action.STOP:
            action = Action.FAIL_ITEM
    retry_after = parse_retry_after(headers)
    return TransferError(
        redact(message)[:300],
        action=action,
        code=code,
        provider=provider,
        op="transfer",
        status=status,
        retry_after=retry_after,
    )


async def put_file(
    session: aiohttp.ClientSession,
    url: str,
    path: Path,
    size: int,
    content_type: str,
    *,
    provider: str,
    allow_insecure_http: bool = False,
) -> None:
    """PUT `path` to the pre-signed `url`; raises `TransferError` when it did not land."""
    target = check_upload_url(url, allow_insecure=allow_insecure_http, provider=provider)
    headers = {"Content-Type": content_type, "Content-Length": str(size)}
    try:
        async with map_errors(provider, "transfer"):
            data: bytes | AsyncIterator[bytes]
            data = await _read_small(path, size) if size <= SMALL_FILE else _stream(path, size)
            async with session.put(
                target, data=data, headers=headers, allow_redirects=False
            ) as resp:
                if resp.status in (200, 201, 204):
                    await resp.read()
                    return
                body = await resp.content.read(64 * 1024)
                if 300 <= resp.status < 400:
                    raise TransferError(
                        f"storage answered a {resp.status} redirect; redirects are not followed",
                        action=Action.FAIL_ITEM,
                        code="redirect",
                        provider=provider,
                        op="transfer",
                        status=resp.status,
                    )
                raise classify_storage_error(resp.status, body, resp.headers, provider=provider)
    except FileChanged as exc:
        raise TransferError(
            str(exc), action=Action.FAIL_ITEM, code="file_changed", provider=provider, op="transfer"
        ) from exc
    except OSError as exc:
        if isinstance(exc, ConnectionError):
            raise
        raise TransferError(
            f"cannot read {path}: {exc.strerror or exc}",
            action=Action.FAIL_ITEM,
            code="unreadable",
            provider=provider,
            op="transfer",
        ) from exc
