"""Kept-alive connections per origin, and one request over them: the lean transport's front.

Owns `Pool`: idle connections per (scheme, host, port), opening new ones
(TCP, or TLS with the default context and SNI) within the connect timeout,
and `Pool.send` (`Pool.put` for a PUT): one request with an exact
Content-Length, its body bytes or an async iterator of chunks, and its
final answer. One pool serves one role: its fixed headers (the storage
pool's User-Agent; the API pool's User-Agent and credentials) go on every
request it sends, and on no other pool's.

How it works: `send` takes an idle connection of the URL's origin (dropping
any the server closed while it sat idle) or opens one, writes the head
(request line, the pool's fixed header lines built once, the request's own;
a bytes body joined to it: one `transport.write`), then the chunks of an
iterator body, then waits for the answer. A connection goes back to the
idle list only after a keep-alive answer to a body that went out whole: a
2xx one, or any final one in a pool made with ``keep_refused`` (the API's,
whose refusals are answers like any other, as aiohttp keeps them); any
other ending closes it.

Invariants: nothing is followed (a redirect is an answer like any other)
and nothing is retried here: a kept-alive connection the server closed
(a FIN, as servers close idle connections; not a reset, which may have
cut a body the server was reading) before a byte of the answer came raises
`Stale`, so the caller can send
the same bytes once more on a fresh one (``fresh=True``), which never
raises it. Connect failures raise `ConnectFailed` with a few words of why;
a TLS failure raises `TLSFailed`; both are `ConnectionError`s, as are the
connection's own (`Disconnected`, `BadAnswer`); the read timeout is a
`TimeoutError`. A header name or value with CR/LF, or a URL with spaces
or control characters, is refused (`UnsafeRequest`) before anything is sent.
At most `limit` idle connections are kept per origin, none idle for more
than `idle_s` (15 s, as aiohttp's keepalive_timeout) when the next is taken.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

import aiohappyeyeballs
import yarl
from multidict import CIMultiDict, MultiDict, getversion

from ingest.transport.connection import Connection, Disconnected
from ingest.transport.response import BODY_CAP, Answer

Origin = tuple[str, str, int]  # scheme, host as connected to (IDNA), port
AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]  # loop.getaddrinfo's entries
DNS_TTL_S = 300.0  # addresses kept this long, as the aiohttp sessions' ttl_dns_cache
HAPPY_EYEBALLS_DELAY_S = 0.25  # aiohttp's default
IDLE_S = 15.0  # an idle connection is dropped after this long: aiohttp's keepalive_timeout

# A space, a control character or anything beyond ASCII (`request_head`: isascii() first; a
# class up to U+10FFFF cost ~10 ms of every run's start to compile).
_UNSAFE_TARGET = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_HEADER = re.compile(r"[\r\n\x00]")
_ssl_context: ssl.SSLContext | None = None


class ConnectFailed(ConnectionError):
    """A connection could not be opened; `why` says so in a few words."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class TLSFailed(ConnectionError):
    """The TLS handshake failed (a certificate that does not verify, a protocol mismatch)."""


class UnsafeRequest(ValueError):
    """A URL or header that would change the request's framing (CR/LF, spaces): not sent."""


class Stale(Disconnected):
    """A kept-alive connection was closed by the server before any byte of its answer."""


def default_tls() -> ssl.SSLContext:
    """The default client context (system CAs, hostname checks), built once, on first use."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


def _version_of(headers: CIMultiDict[str]) -> int:
    """multidict's change counter (public; its stub is invariant in the value type)."""
    return getversion(cast("MultiDict[object]", headers))


def origin_of(url: yarl.URL) -> Origin:
    host = url.raw_host or ""
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return (url.scheme, host, url.port or (443 if url.scheme == "https" else 80))


def header_lines(headers: Mapping[str, str]) -> str:
    """``Name: value\r\n`` lines; `UnsafeRequest` on a name or value that would break the framing."""
    lines = []
    for name, value in headers.items():
        if _UNSAFE_HEADER.search(name) or _UNSAFE_HEADER.search(value) or ":" in name:
            raise UnsafeRequest(f"header {name[:40]!r} has a line break or colon")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


def request_head(method: str, url: yarl.URL, fixed: str, headers: Mapping[str, str]) -> bytes:
    """Request line and headers (`fixed`: ready-made lines), ready to write; `UnsafeRequest`
    on an unsafe part. Encoded as UTF-8, as aiohttp encodes a head: a value beyond latin-1
    (a key pasted with a typographic quote) reaches the server, whose refusal says why."""
    target = url.raw_path_qs
    if not target.isascii() or _UNSAFE_TARGET.search(target):
        raise UnsafeRequest("URL has spaces or control characters in its path or query")
    host = url.host_port_subcomponent
    return (
        f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{fixed}{header_lines(headers)}\r\n".encode()
    )


class Pool:
    """See the module docstring. Close it (`close`) when the run ends."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        limit: int,
        user_agent: str,
        headers: Mapping[str, str] | None = None,
        body_cap: int = BODY_CAP,
        keep_refused: bool = False,
    ) -> None:
        """`headers`: sent on every request (after User-Agent, which they may replace)."""
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.limit = max(1, limit)
        self.user_agent = user_agent
        self._live: CIMultiDict[str] | None = None  # `follow`'s headers
        self._version = 0
        self._set_fixed(headers or {})
        self.body_cap = body_cap
        self.keep_refused = keep_refused
        self._idle: dict[Origin, list[Connection]] = {}
        self._open: set[Connection] = set()
        self.opened = 0  # connections opened so far (tests and the bench read it)
        self._proxies = _proxies()  # read once, as aiohttp does
        self._direct: dict[str, bool] = {}
        self._dns: dict[tuple[str, int], tuple[float, Sequence[AddrInfo]]] = {}
        self.closed = False
        self.idle_s = IDLE_S

    def follow(self, headers: CIMultiDict[str]) -> None:
        """Send `headers` (a session's defaults, which a caller may change) on every request,
        as they are when it is sent: the lines are built again only after a change."""
        self._live = headers
        self._version = _version_of(headers)
        self._set_fixed(headers)

    def _set_fixed(self, headers: Mapping[str, str]) -> None:
        fixed = {"User-Agent": self.user_agent}
        for name, value in headers.items():
            if name.lower() == "user-agent":
                fixed.pop("User-Agent", None)
            fixed[name] = value
        self._fixed_headers = fixed
        self._fixed_names = frozenset(name.lower() for name in fixed)
        self._fixed = header_lines(fixed)  # checked and joined once

    def direct(self, url: yarl.URL) -> bool:
        """False when the environment sends `url`'s scheme through a proxy (HTTP(S)_PROXY,
        ALL_PROXY) and NO_PROXY does not exempt its host: this transport speaks no proxy."""
        if not self._proxies:
            return True
        host = url.raw_host or ""
        key = f"{url.scheme}://{host}"
        known = self._direct.get(key)
        if known is None:
            proxied = url.scheme in self._proxies or "all" in self._proxies
            # In the standard library since 3.x, documented only in its source: no stub.
            import urllib.request  # only with a proxy set: see _proxies

            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            known = not proxied or bool(bypass(host, self._proxies))
            self._direct[key] = known
        return known

    async def put(
        self,
        url: yarl.URL,
        headers: Mapping[str, str],
        body: bytes | AsyncIterator[bytes],
        *,
        fresh: bool = False,
    ) -> Answer:
        """One PUT; `headers` must carry Content-Type and the exact Content-Length."""
        return await self.send("PUT", url, headers, body, fresh=fresh)

    async def send(
        self,
        method: str,
        url: yarl.URL,
        headers: Mapping[str, str],
        body: bytes | AsyncIterator[bytes],
        *,
        fresh: bool = False,
        deadline: float | None = None,
    ) -> Answer:
        """One request; `headers` (besides the pool's) must carry the exact Content-Length
        of a body (none for a GET without one). A request's header replaces the pool's of
        the same name (as a per-request header replaces a session default in aiohttp).
        `deadline` (loop time): the request, a new connection's connect included, ends by
        then or raises `TimeoutError`."""
        if self.closed:
            raise Disconnected("the session is closed")
        live = self._live
        if live is not None and _version_of(live) != self._version:
            self._version = _version_of(live)
            self._set_fixed(live)
        fixed = self._fixed
        names = self._fixed_names
        if any(name.lower() in names for name in headers):
            mine = {name.lower() for name in headers}
            fixed = header_lines(
                {k: v for k, v in self._fixed_headers.items() if k.lower() not in mine}
            )
        head = request_head(method, url, fixed, headers)
        origin = origin_of(url)
        conn = None if fresh else self._take(origin)
        reused = conn is not None
        if conn is None:
            if deadline is None:
                conn = await self._connect(origin)
            else:  # rare (a new connection): the deadline's own timer only here
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect(origin)
        ok = False
        try:
            if isinstance(body, bytes):
                conn.send_head(head, body if len(body) <= 256 * 1024 else b"", deadline)
                if len(body) > 256 * 1024:
                    await conn.send_chunk(body)
                whole = True
            else:
                conn.send_head(head, deadline=deadline)
                whole = await _send_body(conn, body)
            try:
                answer = await conn.wait_answer()
            except Disconnected as exc:
                if reused and exc.clean and not conn.started:
                    raise Stale(str(exc)) from exc
                raise
            ok = whole and (self.keep_refused or 200 <= answer.status < 300) and conn.reusable()
            return answer
        finally:
            conn.finish()
            if ok:
                self._give_back(origin, conn)
            else:
                # Aborted, not closed: a close first flushes what is still queued of the
                # body, which a server that stopped reading never takes (a kept socket).
                self._forget(conn)
                conn.abort()

    def close(self) -> None:
        """Close every connection, idle or not (the run is over)."""
        self.closed = True
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()

    def idle_count(self) -> int:
        """Idle connections kept, every origin together."""
        return sum(len(idle) for idle in self._idle.values())

    def _take(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        if idle:
            self._expire(idle, idle[-1].now())
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            self._open.discard(conn)
        return None

    def _give_back(self, origin: Origin, conn: Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        now = conn.now()
        self._expire(idle, now)
        if len(idle) >= self.limit:
            self._forget(conn)
            conn.close()
            return
        conn.idle_since = now
        idle.append(conn)

    def _expire(self, idle: list[Connection], now: float) -> None:
        """Drop the connections idle for `idle_s` or more at loop time `now` (the oldest are
        first), before a server's (or a middlebox's) idle timeout can race a PUT sent on one."""
        while idle and (idle[0].closed or now - idle[0].idle_since >= self.idle_s):
            conn = idle.pop(0)
            self._forget(conn)
            conn.close()

    def _forget(self, conn: Connection) -> None:
        self._open.discard(conn)

    async def _connect(self, origin: Origin) -> Connection:
        scheme, host, port = origin
        tls = default_tls() if scheme == "https" else None
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that lands as the connection completes (and drop the connection it made).
            async with asyncio.timeout(self.connect_timeout):
                conn = await self._open_one(host, port, tls)
        except TimeoutError:
            raise ConnectFailed("connection timed out") from None
        except ssl.SSLError as exc:  # certificate errors included
            raise TLSFailed(f"TLS handshake with {host} failed: {exc.reason or exc}") from exc
        except ConnectionRefusedError:
            raise ConnectFailed("connection refused") from None
        except socket.gaierror as exc:
            raise ConnectFailed(f"host not found ({exc.strerror or exc})") from exc
        except OSError as exc:
            raise ConnectFailed((exc.strerror or str(exc) or type(exc).__name__).lower()) from exc
        self.opened += 1
        if self.closed:  # the session closed while this one was opening
            conn.close()
            raise Disconnected("the session is closed")
        self._open.add(conn)
        return conn

    async def _open_one(self, host: str, port: int, tls: ssl.SSLContext | None) -> Connection:
        """Resolve (cached), connect with Happy Eyeballs (as aiohttp does: a broken IPv6
        route costs 0.25 s, not the connect timeout), then TLS if asked."""
        loop = asyncio.get_running_loop()
        infos = await self._resolve(loop, host, port)
        sock = await aiohappyeyeballs.start_connection(
            infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY_S, interleave=1
        )
        try:
            _transport, conn = await loop.create_connection(
                lambda: Connection(loop, self.read_timeout, self.body_cap),
                sock=sock,
                ssl=tls,
                server_hostname=host if tls is not None else None,
            )
        except BaseException:
            sock.close()  # a handshake that failed or was cancelled leaves the socket open
            raise
        return conn

    async def _resolve(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int
    ) -> Sequence[AddrInfo]:
        now = loop.time()
        known = self._dns.get((host, port))
        if known is not None and now - known[0] < DNS_TTL_S:
            return known[1]
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, "no address")
        self._dns[(host, port)] = (now, infos)
        return infos


async def _send_body(conn: Connection, body: AsyncIterator[bytes]) -> bool:
    """Write an iterator body's chunks; True if all of it went out before the request ended.

    The time spent waiting for the next chunk (the byte budget, a remote source) is the
    body's, not the server's: the read timeout does not count it (`Connection.sourcing`).
    """
    conn.sourcing(True)
    try:
        async for chunk in body:
            conn.sourcing(False)
            if not await conn.send_chunk(chunk):
                return False
            conn.sourcing(True)
    finally:
        conn.sourcing(False)
    return True


def _proxies() -> dict[str, str]:
    """urllib.request.getproxies_environment(), which reads only variables named *_proxy
    (any case): urllib.request (and http.client, email) is imported only when one is set,
    not on every run's start (14 ms of it)."""
    if not any(name[-6:].lower() == "_proxy" for name in os.environ):
        return {}
    import urllib.request

    return urllib.request.getproxies_environment()
