"""HTTP plumbing shared by the adapters: sessions, the error map, status triage.

Owns three rules:
- one `Session` per role (`ingest.transport.session`): the provider API
  session carries the credentials, the storage session never does, so an
  Authorization header can never reach a storage host. With the lean
  transport (``[run] put_transport``, its default) each session carries its
  own lean pool (`ingest.transport.Pool`, as `Session.lean`): the API pool
  sends the API session's default headers on every call, the storage pool
  only a User-Agent; `request` goes by the API pool unless a proxy is set
  for the URL (`Pool.direct`) or the method is HEAD, else by the session's
  aiohttp client (made, and aiohttp imported, only then);
- foreign errors (aiohttp's once it is imported, timeouts, OS errors) become
  `TransferError` in one place (`map_errors`), with secrets redacted from every message; a
  connection that cannot be opened (refused, unknown host, or no answer to
  the connect within `Timeouts.connect`) has its own code, `UNREACHABLE`, and
  says where ("cannot reach https://…: connection refused");
- the default triage of an HTTP status into an `Action` (`triage`: 401/402/403
  stop the run, 408/425/429/5xx are retried, any other refusal fails the
  item) and a `Scope` (`throttle_scope`: a rate limit's 429, or a 503 with
  Retry-After, is about the plane's pace; anything else about its item),
  which adapters refine with their provider's error codes.
"""

from __future__ import annotations

import functools
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson
import yarl

from ingest.errors import UNREACHABLE, Action, Scope, TransferError
from ingest.lease import Lease, lease_for
from ingest.redact import redact
from ingest.retry import parse_retry_after
from ingest.transport.call import ACCEPT, Oversized, call, read_capped
from ingest.transport.pool import ConnectFailed, Pool, UnsafeRequest
from ingest.transport.response import API_BODY_CAP, BODY_CAP
from ingest.transport.session import ClientRules, Session, no_hidden_retries
from ingest.urls import refusal

if TYPE_CHECKING:
    from ingest.config import PutTransport

USER_AGENT = "ingest/0.1 (+https://github.com/ingest)"
_AIOHTTP = "aiohttp"  # imported only by what the lean transport does not send (see Session)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `read` bounds each wait for the server (a stalled server fires it)."""

    connect: float = 10.0
    read: float = 60.0
    api_total: float = 120.0


@dataclass(frozen=True, slots=True)
class Response:
    """A provider API answer, read whole (API bodies are small)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    sent_at: float
    received_at: float

    def lease(
        self, url: str | None, *, expires_at: str | None = None, default_lifetime: float | None
    ) -> Lease | None:
        """The lease of a target this answer issued, corrected by its `Date` header."""
        return lease_for(
            url=url,
            expires_at=expires_at,
            date_header=self.headers.get("Date"),
            sent_at=self.sent_at,
            received_at=self.received_at,
            default_lifetime=default_lifetime,
        )

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def api_session(
    base_url: str,
    headers: Mapping[str, str],
    timeouts: Timeouts,
    limit: int,
    transport: PutTransport = "lean",
) -> Session:
    """The control-plane session: credentials in its default headers.

    With ``transport="lean"`` it carries the API's own lean pool, sending the
    same default headers, that `request` sends calls through.
    """
    defaults = {"User-Agent": USER_AGENT, **headers}
    lean = None
    if transport == "lean":  # aiohttp's own defaults made explicit: the same on its wire
        defaults = {"User-Agent": USER_AGENT, **ACCEPT, **headers}
        lean = _pool(timeouts, limit, api=True)
    rules = ClientRules(timeouts.connect, timeouts.read, timeouts.api_total, storage=False)
    return Session(headers=defaults, limit=limit, rules=rules, lean=lean, base_url=base_url)


def storage_session(timeouts: Timeouts, limit: int, transport: PutTransport = "lean") -> Session:
    """The data-plane session: no credentials, no cookies, no decompression.

    With ``transport="lean"`` it carries a lean PUT pool (`Session.lean`)
    that `ingest.storage` sends PUTs through, closed with the session;
    ``"aiohttp"`` sends them by aiohttp (the ``[run] put_transport`` fallback).
    """
    lean = _pool(timeouts, limit) if transport == "lean" else None
    rules = ClientRules(timeouts.connect, timeouts.read, None, storage=True)
    return Session(headers={"User-Agent": USER_AGENT}, limit=limit, rules=rules, lean=lean)


def _pool(timeouts: Timeouts, limit: int, *, api: bool = False) -> Pool:
    """A lean pool: the storage PUTs', or (`api`) the API calls', with `API_BODY_CAP`,
    keeping connections after refusals too."""
    return Pool(
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
        limit=limit,
        user_agent=USER_AGENT,
        body_cap=API_BODY_CAP if api else BODY_CAP,
        keep_refused=api,
    )


_no_hidden_retries = no_hidden_retries  # its old name (tests import it from here)


class RedactedCause(Exception):
    """Stands in for a transport error as the cause of a `TransferError`, secrets masked.

    aiohttp's errors name the request's URL ("Can not write request body for
    http://…&X-Amz-Signature=…"), so chaining them as they are would print a
    signed URL in any traceback. The chain shows this instead; the original
    error stays reachable as `original` (never printed).
    """

    def __init__(self, exc: BaseException) -> None:
        kind = type(exc)
        super().__init__(redact(f"{kind.__module__}.{kind.__qualname__}: {exc}"))
        self.original = exc


class map_errors:  # lower case: it reads as the function it replaced, `async with map_errors(…)`
    """Translate transport failures into a retryable `TransferError` (causes redacted).

    A class, not a generator-based context manager: it wraps every request,
    and `contextlib`'s machinery was a measurable share of a small-file run.
    """

    __slots__ = ("op", "origin", "provider")

    def __init__(self, provider: str, op: str, origin: str | None = None) -> None:
        self.provider, self.op = provider, op
        self.origin = origin  # scheme://host:port of the request, for "cannot reach …"

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, TransferError):
            return
        provider, op = self.provider, self.op
        if isinstance(exc, Oversized | UnsafeRequest):  # the answer's size, the request's framing
            over = isinstance(exc, Oversized)
            raise TransferError(
                redact(str(exc)),
                action=Action.RETRY if over else Action.FAIL_ITEM,
                code="bad_response" if over else "bad_request",
                provider=provider,
                op=op,
            ) from None
        why = unreachable(exc)
        if why is not None:
            where = self.origin or _aiohttp_where(exc)
            raise TransferError(
                f"cannot reach {where}: {why}",
                action=Action.RETRY,
                code=UNREACHABLE,
                provider=provider,
                op=op,
            ) from RedactedCause(exc)
        if isinstance(exc, TimeoutError):
            raise TransferError(
                "no answer in time", action=Action.RETRY, code="timeout", provider=provider, op=op
            ) from RedactedCause(exc)
        aiohttp_error = False
        if _AIOHTTP in sys.modules:  # else no aiohttp error can exist
            import aiohttp

            if isinstance(exc, aiohttp.ClientResponseError):  # e.g. bad redirects
                raise TransferError(
                    redact(str(exc.message)),
                    action=Action.RETRY if exc.status >= 500 else Action.FAIL_ITEM,
                    code="http",
                    provider=provider,
                    op=op,
                    status=exc.status,
                ) from RedactedCause(exc)
            aiohttp_error = isinstance(exc, aiohttp.ClientError)
        if aiohttp_error or isinstance(exc, ConnectionError | socket.gaierror):
            raise TransferError(
                redact(f"{type(exc).__name__}: {exc}"),
                action=Action.RETRY,
                code="network",
                provider=provider,
                op=op,
            ) from RedactedCause(exc)


def unreachable(exc: BaseException) -> str | None:
    """Why a connection could not be opened, in a few words; None if it was opened.

    A connect that got no answer in time (a host that drops SYNs, a dead
    route) is as unreachable as a refusal; aiohttp's text for it names the
    signed URL, so it is not used.
    """
    if isinstance(exc, ConnectFailed):  # the lean transport's, already in a few words
        return exc.why
    if _AIOHTTP not in sys.modules:  # not imported: no aiohttp error can exist
        return None
    import aiohttp

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connection timed out"
    if not isinstance(exc, aiohttp.ClientConnectorError) or isinstance(exc, aiohttp.ClientSSLError):
        return None
    cause = exc.os_error
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        return f"host not found ({cause.strerror or cause})"
    return (cause.strerror or str(cause) or type(cause).__name__).lower()


def _aiohttp_where(exc: BaseException) -> str:
    """host:port of an aiohttp connect error ("?" for any other)."""
    if _AIOHTTP in sys.modules:
        import aiohttp

        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"{exc.host}:{exc.port}"
    return "?"


def _resolve(session: Session, path: str) -> tuple[yarl.URL | str, str | None]:
    """The URL a request for `path` goes to (absolute when the session has a base URL) and
    its scheme://host[:port], for "cannot reach …"."""
    return _resolved(session.base_url, path)


@functools.lru_cache(maxsize=256)
def _resolved(base: yarl.URL | None, path: str) -> tuple[yarl.URL | str, str | None]:
    # Cached: every API call of a run asks about the same few paths, and aiohttp
    # joins a relative path to the base URL anew on every request (~2 % of a
    # small-file run); an absolute URL it takes as it is (`ClientSession._build_url`).
    url = yarl.URL(path)
    if not url.absolute:
        if base is None:
            return path, None
        url = base.join(url)
    return url, str(url.origin())


def triage(status: int) -> Action:
    """The default action for a non-success HTTP status."""
    if status in (401, 402, 403):
        return Action.STOP
    if status in (408, 425, 429) or status >= 500:
        return Action.RETRY
    return Action.FAIL_ITEM


def throttle_scope(status: int, action: Action, retry_after: float | None) -> Scope:
    """The default scope of an error answer: `PLANE` for a retryable refusal about pace.

    A 429 is a rate limit unless its adapter says otherwise (and passes
    `scope=Scope.ITEM`, e.g. a per-name quota); a 503 is one when it says when
    to come back. A 429 classified as failing its item or stopping the run is
    not about pace.
    """
    if action is Action.RETRY and (status == 429 or (status == 503 and retry_after is not None)):
        return Scope.PLANE
    return Scope.ITEM


def http_error(
    response: Response,
    *,
    provider: str,
    op: str,
    code: str,
    message: str,
    action: Action | None = None,
    scope: Scope | None = None,
) -> TransferError:
    """A `TransferError` for an error answer, Retry-After included.

    `action` and `scope` default to the status's triage (`triage`, `throttle_scope`).
    """
    if action is None:
        action = triage(response.status)
    retry_after = parse_retry_after(response.headers)
    if scope is None:
        scope = throttle_scope(response.status, action, retry_after)
    return TransferError(
        redact(message)[:500],
        action=action,
        code=code,
        provider=provider,
        op=op,
        status=response.status,
        retry_after=retry_after,
        scope=scope,
    )


def bad_response(response: Response, *, provider: str, op: str, what: str) -> TransferError:
    """A success status whose body lacks `what`: retried (a proxy or a truncated answer)."""
    return TransferError(
        f"answer lacks {what}",
        action=Action.RETRY,
        code="bad_response",
        provider=provider,
        op=op,
        status=response.status,
    )


async def request(
    session: Session,
    method: str,
    path: str,
    *,
    provider: str,
    op: str,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> Response:
    """One API call, read whole (more than `API_BODY_CAP` is a retryable ``bad_response``);
    transport failures become `TransferError`.

    `headers` are added to the session's (e.g. a per-provider API version).
    """
    body = orjson.dumps(json) if json is not None else None
    sent = dict(headers or {})
    if body is not None:
        sent["Content-Type"] = "application/json"
    url, origin = _resolve(session, path)
    lean = session.lean
    async with map_errors(provider, op, origin):
        sent_at = clock()
        # HEAD stays on aiohttp: llhttp would wait for the body its Content-Length names.
        if lean is not None and isinstance(url, yarl.URL) and method != "HEAD" and lean.direct(url):
            status, got, data = await call(lean, method, url, sent, body, session.total)
            return Response(status, got, data, sent_at, clock())
        async with session.request(
            method, url, data=body, headers=sent or None, allow_redirects=False
        ) as resp:
            data = await read_capped(resp.content, API_BODY_CAP)
            return Response(resp.status, resp.headers, data, sent_at, clock())


def check_upload_url(url: str, *, allow_insecure: bool, provider: str) -> yarl.URL:
    """The URL to PUT to, passed through byte for byte; plain http only to loopback.

    `encoded=True` stops yarl from re-quoting the signed query (``%2F`` → ``/``,
    ``%7E`` → ``~``: a 403 SignatureDoesNotMatch; aio-libs/aiohttp#5512).
    """
    parsed = yarl.URL(url, encoded=True)
    why = refusal(parsed.scheme, parsed.host, allow_insecure=allow_insecure)
    if why == "not_http":
        raise TransferError(
            f"upload URL is not http(s): {redact(url)[:200]}",
            action=Action.FAIL_ITEM,
            code="bad_url",
            provider=provider,
            op="transfer",
        )
    if why == "insecure":
        raise TransferError(
            f"refusing plain-http upload to {parsed.host} (set allow_insecure_http to permit)",
            action=Action.STOP,
            code="insecure_url",
            provider=provider,
            op="transfer",
        )
    return parsed
