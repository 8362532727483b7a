"""One provider API call on the lean transport: framing, the one re-send, the answer decoded.

Owns `call` (what `ingest.http.request` sends when the API session carries
a lean pool), `IDEMPOTENT`, the methods it may send twice, and `read_capped`
(the same cap on an answer that goes by aiohttp).

How it works: the body (JSON bytes, or none) goes out with an exact
Content-Length (``0`` for a body-less POST, PUT, PATCH or DELETE, none for
a GET, as aiohttp frames them); the pool adds its fixed headers (User-Agent,
credentials, ``Accept``, ``Accept-Encoding``). The answer is read whole up
to the pool's cap (`API_BODY_CAP`) and a gzip or deflate body decoded under
the same cap (aiohttp's session decoded them too, and the request asks for
them as aiohttp's did). The whole call runs under `total` seconds
(`Timeouts.api_total`); each wait for the server under the pool's read
timeout, and the answer, once begun, must be whole within it (`SlowAnswer`,
named here with the call's method and URL, its query values masked).

Invariants: a call's first byte leaves on a later event-loop turn than the
one that asked for it, as a lean PUT's does (`ingest.transport.send`): the
records journaled in that turn (an ``up`` before its finalize call) reach
the OS first, as they did when aiohttp's request path yielded before
sending. A kept-alive connection the server closed before any byte of
the answer (`Stale`) is re-sent at once on a fresh connection only for an
idempotent method (RFC 9110 9.2.2: GET, HEAD, PUT, DELETE, OPTIONS): a
POST or PATCH is never sent twice here, its `Stale` goes to the caller (a
retryable network error the engine re-paces and counts). An answer whose
body (or decoded body) runs past the cap raises `Oversized`, never holds
more than the cap in memory; a compressed body whose stream does not end
raises `CutShort` (a network error, retried), never a partial decode;
nothing is followed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import yarl
from multidict import CIMultiDictProxy

from ingest.redact import shown_url
from ingest.transport.connection import BadAnswer, SlowAnswer
from ingest.transport.pool import Pool, Stale

if TYPE_CHECKING:
    import aiohttp

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # aiohttp's GET_METHODS
ACCEPT = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate"}  # aiohttp's DEFAULT_HEADERS, no br


class Oversized(BadAnswer):
    """The answer's body runs past the cap (or would, decoded)."""


class CutShort(BadAnswer):
    """A gzip or deflate answer whose compressed stream stops before its end: the bytes
    that came are framed whole (Content-Length, chunked), but not what was compressed."""


async def call(
    pool: Pool,
    method: str,
    url: yarl.URL,
    headers: dict[str, str],
    body: bytes | None,
    total: float | None,
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    """Status, case-insensitive headers and the whole body of one call (`headers` is
    the call's own, extended here with the Content-Length)."""
    if body is not None:
        headers["Content-Length"] = str(len(body))
    elif method not in _NO_BODY:
        headers["Content-Length"] = "0"
    data = body or b""
    await asyncio.sleep(0)  # one turn, not a delay: see the module's invariants
    # The total on the connection's own timer (Pool.send), not an asyncio.timeout a call.
    deadline = None if total is None else asyncio.get_running_loop().time() + total
    fresh = False
    while True:
        try:
            answer = await pool.send(method, url, headers, data, fresh=fresh, deadline=deadline)
            break
        except Stale:
            if fresh or method not in IDEMPOTENT:
                raise
            fresh = True
        except SlowAnswer as exc:  # the call and its host, for the run's problem line
            raise SlowAnswer(f"{method} {shown_url(str(url))}: {exc}") from None
    cap = pool.body_cap
    if answer.cut:
        raise Oversized(f"answer's body runs past {cap // 1024 // 1024} MiB")
    answered = answer.headers
    coding = answered.get("Content-Encoding", "").strip().lower()
    if coding in ("gzip", "x-gzip", "deflate") and answer.body:
        return answer.status, answered, _decoded(answer.body, coding, cap)
    return answer.status, answered, answer.body


def _decoded(data: bytes, coding: str, cap: int) -> bytes:
    """A gzip or deflate (zlib-wrapped, or raw as some servers send it) body, at most `cap`."""
    import zlib  # here: only a compressed answer needs it (~0.3 ms of a run's start-up)

    if coding == "deflate":
        wbits = zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        wbits = 16 + zlib.MAX_WBITS
    inflate = zlib.decompressobj(wbits)
    try:
        out = inflate.decompress(data, cap + 1)
    except zlib.error as exc:
        raise BadAnswer(f"answer's {coding} body does not decode: {exc}") from None
    if len(out) > cap:
        raise Oversized(f"answer's decoded body runs past {cap // 1024 // 1024} MiB")
    if not inflate.eof:  # a partial decode would go on as a JSON answer that does not parse
        raise CutShort(
            f"answer's {coding} body is cut short: its {len(data):,} bytes end before "
            "the compressed stream does"
        )
    return out


async def read_capped(stream: aiohttp.StreamReader, cap: int) -> bytes:
    """An aiohttp answer's whole body; `Oversized` as soon as it runs past `cap`."""
    parts, size = [], 0
    async for chunk in stream.iter_any():
        size += len(chunk)
        if size > cap:
            raise Oversized(f"answer's body runs past {cap // 1024 // 1024} MiB")
        parts.append(chunk)
    return b"".join(parts)
