"""The two ways a storage PUT goes out: the lean transport's pool, or aiohttp.

Owns `send_lean` and `send_aiohttp` (each makes the body, sends it and
returns the status, at most `BODY_CAP` bytes of an error body and the
headers, for `ingest.storage` to triage the same way) and `closing_body`.

Invariants: a lean PUT's first byte leaves on a later event-loop turn than
the one that asked for it: the records journaled in that turn (the item's
``acq``, written by a `call_soon` at the end of the turn:
`ingest.journal.writer`) reach the OS before any byte of its upload, so a
SIGKILL can never leave an upload landed that the journal does not show in
flight (aiohttp's request path always yielded first; a warm lean connection
with a read-ahead body would not). A body stream the request left unfinished
is closed (`closing_body`); the lean send tries a second time only after `Stale` (a
kept-alive connection closed by the server before any byte of its answer),
at once, on a fresh connection, with the body made anew; a connection
that cannot be opened is `UNREACHABLE` ("cannot reach ORIGIN: why"), named
by its origin only; every other transport error is left to
`ingest.http.map_errors`, which maps both paths' errors alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import anyio
import yarl

from ingest.errors import UNREACHABLE, Action, TransferError
from ingest.http import RedactedCause
from ingest.redact import redact
from ingest.transport.pool import ConnectFailed, Pool, Stale, UnsafeRequest
from ingest.transport.response import BODY_CAP

if TYPE_CHECKING:
    from ingest.transport.session import Session

Body = Callable[[], Awaitable[bytes | AsyncGenerator[bytes, None]]]


class closing_body:  # lower case: it reads as the function it replaced, `async with closing_body(…)`
    """Close a body stream the request left unfinished (an early refusal leaves its file open).

    A class, not a generator-based context manager: it wraps every PUT, and a
    bytes body (every small file) needs nothing closed.
    """

    __slots__ = ("_data",)

    def __init__(self, data: bytes | AsyncGenerator[bytes, None]) -> None:
        self._data = data

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        data = self._data
        if not isinstance(data, bytes):
            with anyio.CancelScope(shield=True), contextlib.suppress(RuntimeError):
                # RuntimeError: the request's writer is still inside the stream; its
                # cancellation closes the file through the stream's `finally`.
                await data.aclose()


Answered = tuple[int, bytes, Mapping[str, str]]  # status, body (at most 64 KiB), headers


async def send_aiohttp(
    session: Session,
    target: yarl.URL,
    headers: Mapping[str, str],
    body: Body,
) -> Answered:
    """The PUT by aiohttp (``put_transport = "aiohttp"``, or a proxy in the environment)."""
    data = await body()
    async with (
        closing_body(data),
        session.put(target, data=data, headers=headers, allow_redirects=False) as resp,
    ):
        if resp.status in (200, 201, 204):
            await resp.read()
            return resp.status, b"", resp.headers
        return resp.status, await resp.content.read(BODY_CAP), resp.headers


async def send_lean(
    pool: Pool,
    target: yarl.URL,
    headers: Mapping[str, str],
    body: Body,
    *,
    provider: str,
    origin: str,
) -> Answered:
    """The PUT on the lean transport; a kept-alive connection the server closed
    before any byte of its answer is tried once more at once, with the body made
    anew, on a fresh connection (a PUT of the same bytes is idempotent)."""
    fresh = False
    # One turn of the loop (FIFO: callbacks scheduled before this run first): see the
    # module's invariants. Not a delay; a read-ahead body is otherwise sent in this turn.
    await asyncio.sleep(0)
    while True:
        data = await body()
        try:
            async with closing_body(data):
                answer = await pool.put(target, headers, data, fresh=fresh)
            if answer.status in (200, 201, 204):  # nothing of a success is read: no headers made
                return answer.status, b"", {}
            return answer.status, answer.body, answer.headers
        except Stale:
            if fresh:
                raise
            fresh = True
        except ConnectFailed as exc:
            raise TransferError(
                f"cannot reach {origin}: {exc.why}",
                action=Action.RETRY,
                code=UNREACHABLE,
                provider=provider,
                op="transfer",
            ) from RedactedCause(exc)
        except UnsafeRequest as exc:  # a URL or header that would break the framing
            raise TransferError(
                redact(str(exc)),
                action=Action.FAIL_ITEM,
                code="bad_request",
                provider=provider,
                op="transfer",
            ) from None
