"""The data plane: one streamed PUT of a file to a pre-signed URL.

Owns the rules a pre-signed S3-style PUT needs: the URL goes out byte for
byte, the body is streamed from disk (a whole file, or one byte range of it
for a multipart part; or, `put_stream`, from a remote source as it is read) with an exact Content-Length (S3 answers a chunked PUT
with 501 NotImplemented), Content-Type is always set to what was declared
when the URL was signed (it may be a signed header), redirects are not
followed, and S3-style XML errors are triaged: an expired URL means re-sign,
never retry the dead URL.

A PUT goes out on the storage session's lean transport (`ingest.transport`:
kept-alive HTTP/1.1 connections on asyncio Protocols, about half aiohttp's
CPU a small file) unless ``[run] put_transport = "aiohttp"`` or a proxy in
the environment covers the URL's host; then by aiohttp. Both answer in the
same shape (`ingest.transport.send`) and are triaged here alike.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import yarl

from ingest import bandwidth, offloop
from ingest.errors import EXPIRED, Action, Scope, TransferError
from ingest.http import check_upload_url, map_errors, throttle_scope, triage
from ingest.item import Member, Streamed
from ingest.redact import redact
from ingest.retry import parse_retry_after
from ingest.transport.send import closing_body as closing_body  # imported from here by others
from ingest.transport.send import send_aiohttp, send_lean

if TYPE_CHECKING:
    from ingest.transport.session import Session

CHUNK = 256 * 1024
SMALL_FILE = 256 * 1024  # read in one go below this: one thread hop instead of a stream

_EXPIRED_CODES = frozenset({"ExpiredRequest", "ExpiredToken", "RequestExpired"})
_RESIGN_CODES = frozenset({"SignatureDoesNotMatch"})


class FileChanged(Exception):
    """The file on disk no longer has the size it was validated with."""


async def _stream(
    path: Path, size: int, offset: int = 0, *, whole: bool = False
) -> AsyncGenerator[bytes, None]:
    """`size` bytes of `path` from `offset`, in chunks.

    With `whole` (the body is the entire file) the last read asks for one byte
    more: a file that grew since it was checked is refused before its last
    chunk goes out, so storage sees a cut body and keeps nothing, instead of
    keeping the file's first `size` bytes as if they were all of it.

    Each chunk is one `os.pread` on a reader thread (`offloop`): a 16 MiB
    file is 64 thread hops, at about half the CPU of the loop's executor.
    """
    # Shielded: a cancellation that lands while the reader thread opens the file
    # would drop the open descriptor on the floor (a leaked file).
    with anyio.CancelScope(shield=True):
        fd = await offloop.run(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
    sent = 0
    try:
        while sent < size:
            want = min(CHUNK, size - sent)
            last = whole and sent + want == size
            chunk = await offloop.run(os.pread, fd, want + 1 if last else want, offset + sent)
            if len(chunk) > want:
                raise FileChanged(f"file grew during upload: more than {size} bytes")
            if not chunk:
                break
            sent += len(chunk)
            yield chunk
    finally:
        # Closed at once, not awaited: aiohttp cancels the body's writer as soon as
        # the answer is in, and a cancelled awaited close may never run (a leaked file).
        os.close(fd)
    if sent != size:
        raise FileChanged(f"file shrank during upload: {sent} of {size} bytes")


def _read_slice(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(length)


async def _read(path: Path, offset: int, length: int) -> bytes:
    """At most `length` bytes from `offset`, in one thread hop that opens, reads and closes.

    Cheaper than three aiofiles hops, and a cancelled caller cannot leave the
    file open (the thread finishes).
    """
    return await offloop.run(_read_slice, path, offset, length)


async def _read_small(path: Path, size: int) -> bytes:
    data = await _read(path, 0, size + 1)  # one byte more tells a file that grew
    if len(data) != size:
        raise FileChanged(f"file changed size since it was checked: {len(data)} != {size} bytes")
    return data


async def _read_range(path: Path, offset: int, length: int) -> bytes:
    data = await _read(path, offset, length)
    if len(data) != length:
        raise FileChanged(f"file shrank: {len(data)} of {length} bytes at offset {offset}")
    return data


def _local_cause(err: BaseException) -> FileChanged | OSError | None:
    """The file problem (changed, gone, unreadable) behind a failed send, if any."""
    seen: set[int] = set()
    exc: BaseException | None = err.__cause__
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, FileChanged):
            return exc
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError) and not (
            _is_aiohttp_error(exc)
        ):
            return exc
        exc = getattr(exc, "original", None) or exc.__cause__ or exc.__context__
    return None


def _is_aiohttp_error(exc: BaseException) -> bool:
    if "aiohttp" not in sys.modules:  # imported only when something went by aiohttp
        return False
    import aiohttp

    return isinstance(exc, aiohttp.ClientError)


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
        action, code = Action.RESIGN, EXPIRED
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
    scope = throttle_scope(status, action, retry_after)
    if code == "SlowDown" and action is Action.RETRY:
        scope = Scope.PLANE  # S3's "reduce your request rate", with or without Retry-After
    return TransferError(
        redact(message)[:300],
        action=action,
        code=code,
        provider=provider,
        op="transfer",
        status=status,
        retry_after=retry_after,
        scope=scope,
    )


async def put_file(
    session: Session,
    url: str,
    path: Path,
    size: int,
    content_type: str,
    *,
    provider: str,
    allow_insecure_http: bool = False,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """PUT `path` to the pre-signed `url`; raises `TransferError` when it did not land.

    `body`, when given, is the file's bytes already read (see `prefetch`).
    `headers` are sent besides Content-Type and Content-Length (only an adapter
    that knows the URL is its API's own adds one, e.g. Autoenhance's key).
    """
    target = check_upload_url(url, allow_insecure=allow_insecure_http, provider=provider)

    async def make_body() -> bytes | AsyncGenerator[bytes, None]:
        if body is not None:
            return body
        if size <= SMALL_FILE:
            return await _read_small(path, size)
        # Checked before the request starts: a file gone or resized since it was
        # validated fails the item with its reason instead of a retried send error.
        now = await offloop.run(os.stat, path)
        if now.st_size != size:
            raise FileChanged(
                f"file changed size since it was checked: {now.st_size} != {size} bytes"
            )
        return _stream(path, size, whole=True)

    await _send(
        session, target, path, size, content_type, make_body, provider=provider, extra=headers
    )


async def put_range(
    session: Session,
    url: str,
    path: Path,
    offset: int,
    length: int,
    content_type: str,
    *,
    provider: str,
    allow_insecure_http: bool = False,
    headers: Mapping[str, str] | None = None,
) -> None:
    """PUT bytes ``[offset, offset + length)`` of `path` to `url` (one part of a multipart upload).

    The same rules as `put_file`: the URL byte for byte, an exact
    Content-Length, the declared Content-Type, no redirects, the same error triage.
    """
    target = check_upload_url(url, allow_insecure=allow_insecure_http, provider=provider)

    async def make_body() -> bytes | AsyncGenerator[bytes, None]:
        if length <= SMALL_FILE:
            return await _read_range(path, offset, length)
        return _stream(path, length, offset)

    await _send(
        session, target, path, length, content_type, make_body, provider=provider, extra=headers
    )


async def put_member(
    session: Session,
    url: str,
    path: Path,
    member: Member,
    content_type: str,
    *,
    provider: str,
    allow_insecure_http: bool = False,
    start: int = 0,
    length: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """PUT bytes ``[start, start + length)`` of a shard's member (all of it by default).

    A stored member is a range of the shard (`put_range`); a compressed zip
    member is decompressed as it is sent (`packed.access`), chunk by chunk in
    the loop's executor, never held whole.
    """
    length = member.length - start if length is None else length
    if member.stored:
        await put_range(
            session,
            url,
            path,
            member.offset + start,
            length,
            content_type,
            provider=provider,
            allow_insecure_http=allow_insecure_http,
            headers=headers,
        )
        return
    target = check_upload_url(url, allow_insecure=allow_insecure_http, provider=provider)
    if member.row is not None:  # a Parquet row: its bytes (the reader's cached object) as they are

        async def row() -> bytes:
            from ingest.manifest.packed.parquet import row_bytes

            data = await offloop.run(row_bytes, path, member)
            # Sent as one body, not copied into chunks by a reader thread (`benchmarks/README.md`,
            # the streamed Parquet reader: those copies filled the threads' malloc arenas).
            return data if start == 0 and length == len(data) else data[start : start + length]

        await _send(
            session, target, path, length, content_type, row, provider=provider, extra=headers
        )
        return

    async def make_body() -> AsyncGenerator[bytes, None]:
        return _decompressed(path, member, start, length)

    await _send(
        session, target, path, length, content_type, make_body, provider=provider, extra=headers
    )


async def put_stream(
    session: Session,
    url: str,
    body: Streamed,
    size: int,
    content_type: str,
    *,
    provider: str,
    where: str,
    allow_insecure_http: bool = False,
    headers: Mapping[str, str] | None = None,
) -> None:
    """PUT `size` bytes that `body` reads as they go (a remote source: `ingest.remote`).

    The same rules as `put_file`. A problem the body meets (its source failed,
    sent too little, or is a cut image) ends the body early, so storage keeps
    nothing, and is raised instead of the send error aiohttp reports for it.
    """
    target = check_upload_url(url, allow_insecure=allow_insecure_http, provider=provider)
    problems: list[BaseException] = []

    async def make_body() -> AsyncGenerator[bytes, None]:
        return body.chunks(problems)

    try:
        await _send(
            session,
            target,
            Path(where),
            size,
            content_type,
            make_body,
            provider=provider,
            extra=headers,
        )
    except TransferError:
        if problems and isinstance(problems[0], TransferError):
            raise problems[0] from None
        raise


async def _decompressed(
    path: Path, member: Member, start: int, length: int
) -> AsyncGenerator[bytes, None]:
    from ingest.manifest.packed.access import open_member

    with anyio.CancelScope(shield=True):
        fh = await offloop.run(open_member, path, member, start)
    sent = 0
    try:
        while sent < length:
            chunk = await offloop.run(fh.read, min(CHUNK, length - sent))
            if not chunk:
                break
            sent += len(chunk)
            yield chunk
    finally:
        fh.close()
    if sent != length:
        raise FileChanged(f"member ended early: {sent} of {length} bytes")


async def _send(
    session: Session,
    target: yarl.URL,
    path: Path,
    size: int,
    content_type: str,
    body: Callable[[], Awaitable[bytes | AsyncGenerator[bytes, None]]],
    *,
    provider: str,
    extra: Mapping[str, str] | None = None,
) -> None:
    """One PUT of `size` bytes made by `body`, with its answer triaged.

    Sent by the session's lean transport (`ingest.transport`) when it has one
    and the URL's origin is not behind a proxy set in the environment, else
    by aiohttp; the same rules and the same errors either way.
    """
    headers = {**(extra or {}), "Content-Type": content_type, "Content-Length": str(size)}
    body = bandwidth.paced(body)  # --max-mbps: taken chunk by chunk as it is sent
    lean = session.lean
    origin = str(target.origin())
    try:
        async with map_errors(provider, "transfer", origin):
            if lean is not None and lean.direct(target):
                status, answer, answer_headers = await send_lean(
                    lean, target, headers, body, provider=provider, origin=origin
                )
            else:
                status, answer, answer_headers = await send_aiohttp(session, target, headers, body)
            if status in (200, 201, 204):
                return
            if 300 <= status < 400:
                raise _item_failure(
                    f"storage answered a {status} redirect; redirects are not followed",
                    "redirect",
                    provider,
                    status=status,
                )
            raise classify_storage_error(status, answer, answer_headers, provider=provider)
    except TransferError as err:
        # The body's file failed while aiohttp was sending it: aiohttp reports a
        # send error, but the cause is local and retrying cannot help.
        local = _local_cause(err)
        if local is None:
            raise
        if isinstance(local, FileChanged):
            raise _item_failure(str(local), "file_changed", provider) from err
        raise _item_failure(
            f"cannot read {path}: {local.strerror or local}", "unreadable", provider
        ) from err
    except FileChanged as exc:
        raise _item_failure(str(exc), "file_changed", provider) from exc
    except OSError as exc:
        if isinstance(exc, ConnectionError):
            raise
        raise _item_failure(
            f"cannot read {path}: {exc.strerror or exc}", "unreadable", provider
        ) from exc


def _item_failure(
    message: str, code: str, provider: str, *, status: int | None = None
) -> TransferError:
    """A transfer failure of this item alone (retrying cannot help)."""
    return TransferError(
        message, action=Action.FAIL_ITEM, code=code, provider=provider, op="transfer", status=status
    )
