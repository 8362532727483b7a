"""Remote sources: an ``https://``, ``http://`` or ``s3://`` URL in a manifest's path, fetched first.

Owns the fetch of one remote item (`Fetcher.fetch`): a GET with aiohttp,
its answer classified like any other (2xx fetched; 408/425/429/5xx, a
connection or a timeout retried with the run's backoff for `max_attempts`
tries and at least `retry_window_s`; any other status, a body that is not an
image or one over the provider's size limit fails its item, code
``source_failed``), an ``s3://bucket/key`` the same way through boto3's GetObject (in a
thread, its own retries off); and what a remote item's URL becomes in a key and a
message (`url_key`, `shown_url` in `ingest.redact`).

How it works: the body is streamed to a file in a private temporary folder
(one per item in flight, deleted when the engine journals the item: the same
spool life as a converted image), refused as soon as it passes the limit
(from Content-Length before any byte when the server says it). Its first
bytes are sniffed, and the `Source` handed on names that file: every reader
of the data path (the PUT with its exact Content-Length, a multipart part,
Scenario's JSON body) and `--convert` then treat it as a local file. Fetches
run on the data plane's budget: at most `put_concurrency` at once.

Invariants: a URL's userinfo and query never reach a message, a journal key
or a log (the key keeps a digest of the query so that two URLs differing
only there stay two items); redirects are followed (at most 5) only to
http(s); a fetched source's fingerprint is its size and mtime 0 (a done
remote item is never fetched again: there is no local file to compare).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import anyio

from ingest.errors import Action, ConfigError, TransferError
from ingest.http import USER_AGENT, Timeouts, triage
from ingest.item import Item, Source
from ingest.redact import redact
from ingest.retry import RetryPolicy, parse_retry_after
from ingest.sniff import SNIFF_BYTES, ImageType, sniff

CHUNK = 256 * 1024


def _without_urls(text: str) -> str:
    """An aiohttp error's text without the URL it may quote (it may hold a signature)."""
    return redact(re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", "the source", text))[:200]


def url_name(url: str) -> str:
    """The file name a provider sees for a URL: its path's last segment."""
    return unquote(PurePosixPath(urlsplit(url).path).name) or "image"


class Fetcher:
    """Fetches remote items for one run; owns its session and spool folder."""

    def __init__(
        self,
        *,
        provider: str,
        formats: frozenset[ImageType],
        policy: RetryPolicy,
        timeouts: Timeouts,
        concurrency: int,
        max_size: int | None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.formats = formats
        self.policy = policy
        self.timeouts = timeouts
        self.max_size = max_size
        self._sleep, self._now = sleep, now
        self._slots = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._s3: Any = None  # a boto3 S3 client, made at the first s3:// source
        self._spool: tempfile.TemporaryDirectory[str] | None = None
        self._files: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.fetches = 0  # GETs sent (retries included)

    def _fail(self, item: Item, why: str, action: Action = Action.FAIL_ITEM) -> TransferError:
        return TransferError(
            f"{why}: {item.where}",
            action=action,
            code="source_failed",
            provider=self.provider,
            op="fetch",
        )

    async def fetch(self, source: Source) -> Source:
        """`source`'s URL fetched into the spool, as a `Source` of that file; else `TransferError`."""
        item = source.item
        assert item.url is not None
        first_failure: float | None = None
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._slots:
                    return await self._once(item)
            except TransferError as err:
                if err.action is not Action.RETRY:
                    raise
                first_failure = self._now() if first_failure is None else first_failure
                if self.policy.gives_up(attempt, self._now() - first_failure):
                    raise self._fail(item, f"{err.message} (after {attempt} tries)") from None
                await self._sleep(self.policy.delay(attempt, self._rng, err.retry_after))

    async def _once(self, item: Item) -> Source:
        assert item.url is not None
        if item.url.lower().startswith("s3://"):
            return await self._once_s3(item)
        session = self._open()
        path = self._spool_path(item)
        self.fetches += 1
        try:
            async with session.get(item.url, allow_redirects=True, max_redirects=5) as response:
                if response.url.scheme not in ("http", "https"):
                    raise self._fail(item, "redirected away from http(s)")
                if response.status >= 300:
                    action = triage(response.status)
                    if action is Action.STOP:  # a source's 401/403 is about that source only
                        action = Action.FAIL_ITEM
                    err = self._fail(item, f"source answered HTTP {response.status}", action)
                    err.retry_after = parse_retry_after(response.headers)
                    raise err
                length = response.content_length
                if self.max_size is not None and length is not None and length > self.max_size:
                    raise self._fail(item, f"source too large: {length:,} bytes, over the limit")
                size, head = await self._spool_body(item, response.content, path)
        except TransferError:
            path.unlink(missing_ok=True)
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            path.unlink(missing_ok=True)
            why = f"cannot fetch the source ({type(exc).__name__}: {_without_urls(str(exc))})"
            if isinstance(exc, aiohttp.TooManyRedirects):
                raise self._fail(item, "too many redirects") from None
            raise self._fail(item, why, Action.RETRY) from None
        if length is not None and size != length:
            path.unlink(missing_ok=True)
            raise self._fail(item, f"source body cut short: {size} of {length} bytes", Action.RETRY)
        return self._fetched(item, path, size, head)

    def _fetched(self, item: Item, path: Path, size: int, head: bytes) -> Source:
        """The spooled body as a `Source`, once sniffed; a non-image fails its item."""
        assert item.url is not None
        with self._lock:
            self._files[item.key] = path
        kind = sniff(head)
        if kind is None or kind not in self.formats:
            self.forget(item.key)
            from ingest.validate import describe_content

            what = f"not an image ({describe_content(head)})" if kind is None else None
            accepted = ", ".join(sorted(t.ext for t in self.formats))
            unsupported = f"unsupported image type {kind.ext if kind else ''} ({self.provider} "
            raise self._fail(
                item, what or f"{unsupported}accepts {accepted}; --convert converts it)"
            )
        name = item.name or url_name(item.url)
        fetched = dataclasses.replace(item, path=path, name=name)
        return Source(item=fetched, size=size, mtime_ns=0, image_type=kind)

    async def _spool_body(
        self, item: Item, body: aiohttp.StreamReader, path: Path
    ) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        fd = await loop.run_in_executor(None, os.open, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        size, head = 0, b""
        try:
            async for chunk in body.iter_chunked(CHUNK):
                size += len(chunk)
                if self.max_size is not None and size > self.max_size:
                    raise self._fail(item, f"source too large: over {self.max_size:,} bytes")
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                await loop.run_in_executor(None, os.write, fd, chunk)
        finally:
            os.close(fd)
        if size == 0:
            raise self._fail(item, "source is empty (0 bytes)")
        return size, head

    async def _once_s3(self, item: Item) -> Source:
        """An ``s3://bucket/key`` source: GetObject with boto3 (the s3 extra), in a thread.

        Credentials and endpoint as boto3 finds them (``AWS_*`` variables, the shared
        config; ``AWS_ENDPOINT_URL`` for another S3 such as MinIO or moto). boto3's own
        retries are off: the run's policy retries what the classification says.
        """
        assert item.url is not None
        if self._s3 is None:
            self._s3 = _s3_client()
        path = self._spool_path(item)
        bucket, _, key = item.url[5:].partition("/")
        try:
            size, head = await anyio.to_thread.run_sync(
                _get_object, self._s3, bucket, key, path, self.max_size
            )
        except _TooLarge as exc:
            path.unlink(missing_ok=True)
            raise self._fail(item, f"source too large: {exc}") from None
        except Exception as exc:  # botocore's tree: ClientError by code, the rest transport
            path.unlink(missing_ok=True)
            raise self._s3_error(item, exc) from None
        if size == 0:
            path.unlink(missing_ok=True)
            raise self._fail(item, "source is empty (0 bytes)")
        return self._fetched(item, path, size, head)

    def _s3_error(self, item: Item, exc: Exception) -> TransferError:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):  # botocore.exceptions.ClientError
            code = str(response.get("Error", {}).get("Code", "error"))
            status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            action = triage(status) if status else Action.FAIL_ITEM
            if code in ("SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"):
                action = Action.RETRY
            if action is Action.STOP:  # a source's 403 is about that source only
                action = Action.FAIL_ITEM
            return self._fail(item, f"source answered {code} (HTTP {status})", action)
        why = _without_urls(str(exc)) or type(exc).__name__
        return self._fail(
            item, f"cannot fetch the source ({type(exc).__name__}: {why})", Action.RETRY
        )

    def _spool_path(self, item: Item) -> Path:
        if self._spool is None:
            self._spool = tempfile.TemporaryDirectory(prefix="ingest-fetch-")
        return Path(self._spool.name) / hashlib.sha256(item.key.encode()).hexdigest()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # identity: the body's length is then its Content-Length (no decoding)
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeouts.connect, sock_read=self.timeouts.read
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                raise_for_status=False,
            )
        return self._session

    def forget(self, key: str) -> None:
        """The item is journaled done or failed: its spooled body goes."""
        with self._lock:
            path = self._files.pop(key, None)
        if path is not None:
            path.unlink(missing_ok=True)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._spool is not None:
            self._spool.cleanup()


class _TooLarge(Exception):
    pass


def _s3_client() -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigError(
            "s3:// sources need boto3: pip install 'ingest[s3]'", key="path"
        ) from None
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.client("s3", config=config)


def _get_object(
    client: Any, bucket: str, key: str, path: Path, max_size: int | None
) -> tuple[int, bytes]:
    """GetObject streamed to `path` (in a worker thread): (size, first bytes)."""
    answer = client.get_object(Bucket=bucket, Key=key)
    length = answer.get("ContentLength")
    if max_size is not None and length is not None and length > max_size:
        answer["Body"].close()
        raise _TooLarge(f"{length:,} bytes, over the limit")
    size, head = 0, b""
    with path.open("wb") as fh:
        for chunk in answer["Body"].iter_chunks(CHUNK):
            size += len(chunk)
            if max_size is not None and size > max_size:
                raise _TooLarge(f"over {max_size:,} bytes")
            head = head if len(head) >= SNIFF_BYTES else (head + chunk)[:SNIFF_BYTES]
            fh.write(chunk)
    if length is not None and size != length:
        raise OSError(f"body cut short: {size} of {length} bytes")
    return size, head
