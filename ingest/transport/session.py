"""One role's HTTP session: its lean pool, its default headers, and aiohttp only when needed.

Owns `Session`, what `ingest.http.api_session` and `storage_session` return
and every adapter's `Context` holds: the role's lean pool (`lean`, None with
``[run] put_transport = "aiohttp"``), its default headers (`headers`, live:
a change goes out on the next request by either path), its base URL, the
API's whole-call bound (`total`) and its connection limit. What the lean
transport does not speak (a proxy in the environment, HEAD, Scenario's
streamed JSON bodies, ``put_transport = "aiohttp"``) goes by an
`aiohttp.ClientSession` made on the first such request (`client`), with
the role's timeouts, cookie and decompression rules, and closed with this
session.

How it works: `request` (and `post`, `put`) merge the default headers as
they are now with the request's own (a request's header replaces a default
of the same name, as in aiohttp) and hand the call to `client()`. aiohttp
is imported there, never at this module's import: a run whose every
request goes by the lean pool never imports it (its import, TLS contexts
included, was 16 % of the CPU of a 2,000-file run).

Invariants: the aiohttp session never re-sends a request by itself
(`no_hidden_retries`); the storage session's carries no cookies and
decodes nothing; closing the session closes the pool and any client made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yarl
from multidict import CIMultiDict

from ingest.transport.pool import Pool

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.client import _RequestContextManager


@dataclass(frozen=True, slots=True)
class ClientRules:
    """How the aiohttp client of a role is made (seconds; `total` None: unbounded)."""

    connect: float
    read: float
    total: float | None
    storage: bool  # no cookies, no decompression


class Session:
    """See the module docstring; use as ``async with`` or `close` it."""

    __slots__ = ("_client", "base_url", "headers", "lean", "limit", "rules", "total")

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        limit: int,
        rules: ClientRules,
        lean: Pool | None,
        base_url: str | None = None,
        client: aiohttp.ClientSession | None = None,
    ) -> None:
        """`client`: an aiohttp session of the caller's to send by (e.g. one with middlewares
        that watch the requests) instead of one made on first need."""
        self.headers: CIMultiDict[str] = CIMultiDict(headers)
        self.limit = limit
        self.rules = rules
        self.lean = lean
        self.total = rules.total
        self.base_url = yarl.URL(base_url) if base_url else None
        self._client = client
        if lean is not None:
            lean.follow(self.headers)  # as they are at each request, changed or not

    def client(self) -> aiohttp.ClientSession:
        """aiohttp's session for what the lean pool does not send, made on first use."""
        if self._client is None:
            import aiohttp

            rules = self.rules
            self._client = no_hidden_retries(
                aiohttp.ClientSession(
                    base_url=self.base_url,
                    connector=aiohttp.TCPConnector(limit=self.limit, ttl_dns_cache=300),
                    timeout=aiohttp.ClientTimeout(
                        total=rules.total,
                        connect=rules.connect,
                        sock_connect=rules.connect,
                        sock_read=rules.read,
                    ),
                    cookie_jar=aiohttp.DummyCookieJar() if rules.storage else None,
                    auto_decompress=not rules.storage,
                    raise_for_status=False,
                )
            )
        return self._client

    def request(
        self,
        method: str,
        url: yarl.URL | str,
        *,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> _RequestContextManager:
        """One request by aiohttp with the default headers as they are now, then `headers`."""
        sent = CIMultiDict(self.headers)
        if headers:
            sent.update(headers)
        return self.client().request(method, url, headers=sent, **kwargs)

    def post(self, url: yarl.URL | str, **kwargs: Any) -> _RequestContextManager:
        return self.request("POST", url, **kwargs)

    def put(self, url: yarl.URL | str, **kwargs: Any) -> _RequestContextManager:
        return self.request("PUT", url, **kwargs)

    async def close(self) -> None:
        if self.lean is not None:
            self.lean.close()
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def no_hidden_retries(session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """Turn off aiohttp's silent second try of an idempotent request (PUT, GET).

    aiohttp (3.10+) re-sends a PUT once, by itself, when the connection drops
    before the answer. The engine owns retries: each attempt re-checks the
    URL's lease (a dead URL is re-signed, never retried), backs off, goes
    through the pacer and is counted. The hidden re-send skipped all of that;
    the fault suite saw twice as many PUTs at the emulator as the run counted.
    There is no public switch: this is the attribute aiohttp's own test client
    sets (`aiohttp.test_utils.TestClient`).
    """
    if hasattr(session, "_retry_connection"):
        session._retry_connection = False
    return session
