"""Remote sources: an ``https://``, ``http://`` or ``s3://`` URL in a manifest's path, fetched first.

Owns the fetch of one remote item (`Fetcher.fetch`): a GET with aiohttp,
its answer classified like any other (2xx fetched; 408/425/429/5xx, a
dropped connection or a timeout retried with the run's backoff for
`max_attempts` tries and at least `retry_window_s`, each retry counted with
the run's others (`on_retry`); a host that refuses the connection or is not
found only `REFUSED_TRIES` times, briefly (a temporary name-lookup failure,
``EAI_AGAIN`` or aiodns's timeout, is an outage: the run's budget); any other status
fails its item, code ``source_failed``; a body that arrived whole but is empty, a cut PNG or JPEG, not an image
(an HTML page served with 200 too: the URL is wrong), of a type the provider does not take
or over its size limit is rejected, worded as a local file is: `SourceRejected`), an
``s3://bucket/key`` the same way through
boto3's GetObject (in a thread, its own retries off); and what a remote
item's URL becomes in a key and a message (`url_key`, `shown_url` in
`ingest.redact`).

How it works: the answer is opened and its first chunk read (the type is
sniffed from it, refused as soon as the length passes the limit: from
Content-Length before any byte when the server says it). Then one of two:

- *streamed*: a source whose length is known (Content-Length, the object's
  size), of a type the provider takes, for a provider whose transfer is one
  PUT of the whole body (`Capabilities.one_put`), is handed on as a `Source`
  whose `stream` is a `remote_body.RemoteBody`: the PUT sends the first chunk
  and the rest straight from the source with the exact Content-Length,
  checked as it goes (a cut image cuts the PUT body short: storage keeps
  nothing). Nothing is spooled. A retry or a re-sign of the PUT fetches the
  source again.
- *spooled*: a source of unknown length, one `--convert` must convert, or
  one for a provider that reads a file (Scenario's base64 body, multipart
  parts) is written to a file without a name (`ingest.spool`: one per item in
  flight, let go when the engine journals the item, and by a SIGKILL too:
  the same spool life as a converted image), and the `Source` names that file: every reader of the
  data path and `--convert` then treat it as a local file.

Fetches run on the data plane's budget: at most `put_concurrency` opening or
spooling at once; a streamed body is then read within its PUT slot, so the
memory of remote bodies is a few chunks per worker.

Invariants: a URL's userinfo and query never reach a message, a journal key
or a log (the key keeps a digest of the query so that two URLs differing
only there stay two items); redirects are followed (at most 4: aiohttp's
`max_redirects=5` refuses the fifth) only to http(s), https to http included; a fetched source's fingerprint is its size and mtime 0 (a done
remote item is never fetched again: there is no local file to compare).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import random
import re
import socket
import sys
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import anyio

from ingest import offloop
from ingest.errors import Action, ConfigError, TransferError, install_hint
from ingest.http import USER_AGENT, Timeouts, triage, unreachable
from ingest.item import Item, Source
from ingest.preparing import SourceRejected, too_large_source
from ingest.redact import redact
from ingest.remote_body import Opened, RemoteBody, check_tail, checked, cut_short, ended_short
from ingest.retry import RetryPolicy, parse_retry_after
from ingest.sniff import SNIFF_BYTES, TAIL_BYTES, ImageType, sniff
from ingest.spool import Spool, write_all

CHUNK = 256 * 1024
# A source host that refuses the connection or whose name is not found is tried this many
# times in all, each retry after at most REFUSED_WAIT_S, whatever `max_attempts` and
# `retry_window_s` say (those stay for the provider's own hosts and for a source's 5xx,
# 429, timeouts and dropped connections): a refusal is an answer, the way curl (`--retry`
# skips it without `--retry-connrefused`) and wget (no retry of "Connection refused" without
# `--retry-connrefused`, none of a name not found) take it. It fails the item in about a
# second instead of the ~1 min 48 s (12 tries) the run's policy gave it; the other items go on.
REFUSED_TRIES = 3
REFUSED_WAIT_S = 0.5
# c-ares's codes (`aiodns.error`, from `pycares.errno`) of a lookup that may work next time:
# ARES_ESERVFAIL "Server failure", ARES_ECONNREFUSED "Could not contact DNS servers",
# ARES_ETIMEOUT "Timeout while contacting DNS servers" (getaddrinfo's EAI_AGAIN, so to speak).
_ARES_TEMPORARY = frozenset({3, 11, 12})


def _payload_short(exc: Exception) -> str | None:
    """aiohttp's error for a body that ended before its Content-Length (or its last chunk) in
    `remote_body`'s words, `source body cut short: 60 of 5000 bytes`; None for another."""
    from aiohttp.http_exceptions import ContentLengthError, TransferEncodingError

    cause = exc.__cause__
    if not isinstance(exc, aiohttp.ClientPayloadError):
        return None
    if isinstance(cause, ContentLengthError):  # its counts are only in its message
        said = re.search(r"received (\d+) of (\d+) bytes", str(cause))
        if said is not None:
            return cut_short(int(said[1]), int(said[2]))
        return "source body cut short: the connection closed before its Content-Length"
    if isinstance(cause, TransferEncodingError):
        return "source body cut short: the connection closed before its last chunk"
    return None


def _without_urls(text: str) -> str:
    """An aiohttp error's text without the URL it may quote (it may hold a signature).

    Cut where it starts quoting bytes: a source that sent more than its
    Content-Length leaves the rest on the connection, and the next answer's
    "Bad status line" quotes that image data.
    """
    text = redact(re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", "the source", text))
    text = " ".join(text.split())  # one line
    binary = re.search(r"\\x[0-9a-fA-F]{2}|[^\x20-\x7e]", text)
    if binary is not None:
        text = text[: binary.start()].rstrip(" b'\"") + " ... (binary data)"
    return text[:200]


def url_name(url: str) -> str:
    """The file name a provider sees for a URL: its path's last segment."""
    return unquote(PurePosixPath(urlsplit(url).path).name) or "image"


SOURCE_FAILED = "source_failed"  # the code of every failure of a remote source


class Refused(TransferError):
    """A source host refused the connection, or its name is not found: a few short tries."""


class Fetcher:
    """Fetches remote items for one run; owns its session, its spool and the bodies it opened."""

    def __init__(
        self,
        *,
        provider: str,
        formats: frozenset[ImageType],
        policy: RetryPolicy,
        timeouts: Timeouts,
        concurrency: int,
        max_size: int | None,
        streamable: frozenset[ImageType] = frozenset(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], float] = time.monotonic,
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self.provider = provider
        self.formats = formats  # what a fetched body may be (with --convert: every type)
        self.streamable = streamable  # what may be streamed into its PUT (see the module)
        self.policy = policy
        self.timeouts = timeouts
        self.max_size = max_size
        self._sleep, self._now = sleep, now
        self._on_retry = on_retry  # counted with the run's other retries (`Counters.retries`)
        self._slots = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._s3: Any = None  # a boto3 S3 client, made at the first s3:// source
        self._spool = Spool("ingest-fetch-")  # files without names (`ingest.spool`)
        self._bodies: dict[str, RemoteBody] = {}
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.fetches = 0  # GETs sent (retries included)

    def _fail(self, item: Item, why: str, action: Action = Action.FAIL_ITEM) -> TransferError:
        return TransferError(
            f"{why}: {item.where}",
            action=action,
            code=SOURCE_FAILED,
            provider=self.provider,
            op="fetch",
        )

    async def fetch(self, source: Source) -> Source:
        """`source`'s URL fetched: a `Source` streamed from it or of its spool file; else
        `TransferError`."""
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
                refused = isinstance(err, Refused)
                if (
                    attempt >= REFUSED_TRIES
                    if refused
                    else self.policy.gives_up(attempt, self._now() - first_failure)
                ):
                    why = err.message.removesuffix(f": {item.where}")  # named once, at the end
                    raise self._fail(item, f"{why} (after {attempt} tries)") from None
                self._on_retry()
                wait = self.policy.delay(attempt, self._rng, err.retry_after)
                await self._sleep(min(wait, REFUSED_WAIT_S) if refused else wait)

    async def _once(self, item: Item) -> Source:
        opened = await self._opened(item)
        try:
            if not opened.head:  # an empty file, or a connection dropped before its body
                raise ended_short(item, 0, opened.length, self._fail, self._reject)
            kind = self._kind(item, opened.head)
            length = opened.length
            if length is not None and len(opened.head) >= length:  # all of it is here
                check_tail(item, kind, opened.head[-TAIL_BYTES:], length, self._reject)
            if length is not None and kind in self.streamable:
                body = RemoteBody(
                    item,
                    opened,
                    kind,
                    max_size=self.max_size,
                    reopen=self._opened,
                    fail=self._fail,
                    too_large=self._read_past_limit,
                    reject=self._reject,
                    failure=self._failure,
                )
                with self._lock:
                    self._bodies[item.key] = body
                streamed = dataclasses.replace(item, name=self._name(item))
                return Source(item=streamed, size=length, mtime_ns=0, image_type=kind, stream=body)
            size, path = await self._spool_body(item, opened, kind)
        except TransferError:
            opened.close()
            raise
        except Exception as exc:
            opened.close()
            raise self._failure(item, exc) from None
        except BaseException:  # cancelled: the answer is let go at once, not at the run's end
            opened.close()
            raise
        opened.close()
        fetched = dataclasses.replace(item, path=path, name=self._name(item))
        return Source(item=fetched, size=size, mtime_ns=0, image_type=kind)

    def _name(self, item: Item) -> str:
        assert item.url is not None
        return item.name or url_name(item.url)

    def _kind(self, item: Item, head: bytes) -> ImageType:
        """The body's type from its first bytes; a non-image or one the provider does not
        take is rejected, worded as `validate` words a local file's."""
        kind = sniff(head)
        if kind is not None and kind in self.formats:
            return kind
        from ingest.validate import not_an_image, unsupported_type

        if kind is None:
            raise self._reject(item, not_an_image(head), "not_image")
        why = unsupported_type(kind, self.formats, self.provider)
        raise self._reject(item, why, "unsupported_type")

    def _reject(self, item: Item, why: str, code: str) -> SourceRejected:
        """A body that a local file's check rejects, in its words (`why`), naming the URL."""
        return SourceRejected(f"{why}: {item.where}", item, provider=self.provider, code=code)

    async def _opened(self, item: Item) -> Opened:
        """The source's answer with its first chunk read; classified `TransferError` if not."""
        assert item.url is not None
        if is_s3(item.url):
            return await self._opened_s3(item)
        session = self._open()
        self.fetches += 1
        try:
            response = await session.get(item.url, allow_redirects=True, max_redirects=5)
        except Exception as exc:
            raise self._failure(item, exc) from None
        try:
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
            self._check_length(item, length)
            if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                # Sent encoded though asked for identity: aiohttp decodes it, so the length
                # is the encoded one, not the image's; the body is spooled and measured.
                length = None
            head = await _first_chunk(response.content, length)
        except BaseException as exc:
            response.close()
            if isinstance(exc, Exception) and not isinstance(exc, TransferError):
                raise self._failure(item, exc) from None
            raise
        # Released, not closed: a body read to its end leaves its connection for the next GET.
        return Opened(length, head, response.content.iter_chunked(CHUNK), response.release)

    def _check_length(self, item: Item, length: int | None) -> None:
        """A source whose said length is over the limit is rejected before any byte is read."""
        if self.max_size is not None and length is not None and length > self.max_size:
            raise too_large_source(item, length, self.max_size, self.provider)

    def _read_past_limit(self, item: Item, read: int) -> TransferError:
        """A body of unknown length read past the limit (`read` bytes so far): rejected."""
        assert self.max_size is not None
        return too_large_source(item, read, self.max_size, self.provider, said=False)

    def _failure(self, item: Item, exc: Exception) -> TransferError:
        """What reading a source raised (aiohttp's, botocore's, the OS's) as its item's error."""
        assert item.url is not None
        if isinstance(exc, TransferError):
            return exc
        if is_s3(item.url):
            return self._s3_error(item, exc)
        if isinstance(exc, aiohttp.TooManyRedirects):
            return self._fail(item, "too many redirects")
        if (refused := unreachable(exc)) is not None:  # as an API or storage host's is said
            why = f"cannot reach the source: {refused}: {item.where}"
            if refused == "connection refused" or (
                refused.startswith("host not found") and not _temporary(exc)
            ):
                return Refused(
                    why, action=Action.RETRY, code=SOURCE_FAILED, provider=self.provider, op="fetch"
                )
            return self._fail(item, f"cannot reach the source: {refused}", Action.RETRY)
        if (short := _payload_short(exc)) is not None:  # as `checked` says a short body
            return self._fail(item, short, Action.RETRY)
        why = f"cannot fetch the source ({type(exc).__name__}: {_without_urls(str(exc))})"
        return self._fail(item, why, Action.RETRY)

    async def _spool_body(self, item: Item, opened: Opened, kind: ImageType) -> tuple[int, Path]:
        """`opened`'s body, checked, written to the item's spool file: its size and path."""
        fd, path = self._spool.create(item.key)
        size = 0
        try:
            async for chunk in checked(
                item,
                opened,
                kind,
                max_size=self.max_size,
                fail=self._fail,
                too_large=self._read_past_limit,
                reject=self._reject,
            ):
                await offloop.run(write_all, fd, chunk)
                size += len(chunk)
        except BaseException:
            self._spool.forget(item.key)
            raise
        return size, path

    async def _opened_s3(self, item: Item) -> Opened:
        """An ``s3://bucket/key`` source: GetObject with boto3 (the s3 extra), in a thread.

        Credentials and endpoint as boto3 finds them (``AWS_*`` variables, the shared
        config; ``AWS_ENDPOINT_URL`` for another S3 such as MinIO or moto). boto3's own
        retries are off: the run's policy retries what the classification says.
        """
        assert item.url is not None
        if self._s3 is None:
            self._s3 = _s3_client()
        bucket, _, key = item.url[5:].partition("/")
        self.fetches += 1
        try:
            answer = await anyio.to_thread.run_sync(
                lambda: self._s3.get_object(Bucket=bucket, Key=key)
            )
        except Exception as exc:  # botocore's tree: ClientError by code, the rest transport
            raise self._s3_error(item, exc) from None
        body = answer["Body"]
        try:
            length = answer.get("ContentLength")
            self._check_length(item, length)
            head = await anyio.to_thread.run_sync(body.read, CHUNK)
        except BaseException as exc:
            body.close()
            if isinstance(exc, Exception) and not isinstance(exc, TransferError):
                raise self._s3_error(item, exc) from None
            raise
        return Opened(length, head, _s3_rest(body), body.close)

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
        settled = _settled(exc)  # found before anything is sent: no retry changes it
        if settled is not None:
            why = f"{why}; {settled}" if settled else why
            return self._fail(item, f"cannot fetch the source ({type(exc).__name__}: {why})")
        return self._fail(
            item, f"cannot fetch the source ({type(exc).__name__}: {why})", Action.RETRY
        )

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
        """The item is journaled done or failed: its spooled body goes, an open one is let go."""
        self._spool.forget(key)
        with self._lock:
            body = self._bodies.pop(key, None)
        if body is not None:
            body.close()

    async def aclose(self) -> None:
        with self._lock:
            bodies, self._bodies = list(self._bodies.values()), {}
        for body in bodies:
            body.close()
        if self._session is not None:
            await self._session.close()
        self._spool.close()


def _temporary(exc: Exception) -> bool:
    """Whether a name lookup failed for now (``EAI_AGAIN``: the resolver timed out or could
    not be asked), not for good: the run's retry budget, not a refusal's few tries.

    With aiodns installed, aiohttp's `AsyncResolver` raises ``OSError(None, text)`` from
    ``aiodns.error.DNSError(code, text)``: no errno, c-ares's code on the cause."""
    cause = getattr(exc, "os_error", None)
    if isinstance(cause, socket.gaierror):
        return cause.errno == socket.EAI_AGAIN
    errors = sys.modules.get("aiodns.error")  # imported by aiohttp if one was raised
    dns = getattr(cause, "__cause__", None)
    return (
        errors is not None
        and isinstance(dns, errors.DNSError)
        and bool(dns.args)
        and dns.args[0] in _ARES_TEMPORARY
    )


def _settled(exc: Exception) -> str | None:
    """What to do about a botocore error that no retry changes (no credentials found, no
    region, a bucket name S3 cannot take), "" if nothing more to say; None for the others,
    retried as transport errors. Missing credentials were retried for `retry_window_s`
    (~2 minutes) per item before failing (newcomer8)."""
    from botocore import exceptions as be  # boto3 made the client that raised it

    if isinstance(exc, (be.NoCredentialsError, be.PartialCredentialsError)):
        return "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
    if isinstance(exc, be.NoRegionError):
        return "set AWS_DEFAULT_REGION"
    if isinstance(exc, (be.ParamValidationError, be.ProfileNotFound)):
        return ""
    return None


async def _first_chunk(content: aiohttp.StreamReader, length: int | None) -> bytes:
    """The first chunk that arrived (up to `CHUNK`), at least what `sniff` needs if the body
    has it."""
    head = await content.read(CHUNK)
    want = SNIFF_BYTES if length is None else min(SNIFF_BYTES, length)
    while head and len(head) < want:
        more = await content.read(CHUNK - len(head))
        if not more:
            break
        head += more
    return head


async def _s3_rest(body: Any) -> AsyncGenerator[bytes, None]:
    """A GetObject body after its first chunk, one thread hop a chunk (botocore checks that
    the body is as long as its ContentLength: a short one raises IncompleteReadError)."""
    while chunk := await anyio.to_thread.run_sync(body.read, CHUNK):
        yield chunk


def need_boto3() -> ConfigError:
    """The refusal of an s3:// source without boto3 (`validate` and a run's start say it too)."""
    return ConfigError(f"s3:// sources need boto3: {install_hint('s3')}")


def is_s3(url: str | None) -> bool:
    """Whether `url` is an s3:// source (its scheme in any case, as the manifest takes it)."""
    return (url or "")[:5].lower() == "s3://"


def require_boto3(url: str | None) -> None:
    """Raise `need_boto3()` if `url` is an s3:// source and boto3 cannot be imported."""
    if not is_s3(url):
        return
    if importlib.util.find_spec("boto3") is None or importlib.util.find_spec("botocore") is None:
        raise need_boto3()


_s3_loader: Any = None  # botocore's service models, read once a process (~0.8 s), shared


def _s3_client() -> Any:
    """An S3 client with a session of this run's own: `boto3.client` uses the process's
    default session, which keeps the credentials its first client found, so a later run
    in the process (a notebook, a test) signed with an earlier run's ``AWS_*`` keys. The
    sessions share botocore's loader (its models), so a new one costs ~0.13 s, not ~1 s."""
    global _s3_loader
    try:
        import boto3
        import botocore.session
        from botocore.config import Config
    except ImportError:
        raise need_boto3() from None
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    core = botocore.session.get_session()
    if _s3_loader is None:
        _s3_loader = core.get_component("data_loader")
    else:
        core.register_component("data_loader", _s3_loader)
    return boto3.session.Session(botocore_session=core).client("s3", config=config)
