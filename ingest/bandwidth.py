"""The byte budget of upload bodies (`--max-mbps`): how fast body bytes may go out.

Owns the rate of the data plane in bytes. `LocalBytes` is a GCRA on bytes in
this process (one per run; every PUT of the run shares it); a coordinated run
uses `ingest.coord.budget.SharedBytes` instead, one budget for every worker of
the account. Either is a `ByteBudget`: `take(n)` returns when `n` more bytes
may be sent.

How it works: `storage` asks `paced(body)` for every PUT body; with a budget
in force (`CURRENT`, set around each transfer by the engine's `Calls`) the
body is taken chunk by chunk as the transport reads it, a piece of at most
`PIECE` bytes at a time, so a 16 MiB file goes out smoothly at the rate, not
in one 16 MiB burst; a body of at most `PIECE` bytes is taken whole before it
goes (and stays one write). Bytes of a PUT that is retried count again: they
went out again.

Invariants: in any window of W seconds at most rate x W + burst bytes are
taken (`LocalBytes`: a reservation per take, no lock held across a sleep, so a
cancelled taker leaves only its reservation spent); megabytes are 10^6 bytes;
all time comes from the injected `Clock`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Protocol

from ingest.clock import SYSTEM, Clock

PIECE = 256 * 1024  # the most bytes taken at once (storage's read chunk)
BURST_S = 0.1  # the default burst: this many seconds of the rate, at least one PIECE

Body = bytes | AsyncGenerator[bytes, None]


class ByteBudget(Protocol):
    """What a PUT body asks of the byte budget."""

    async def take(self, n: int) -> None: ...


CURRENT: ContextVar[ByteBudget | None] = ContextVar("ingest_byte_budget", default=None)


def bytes_per_s(max_mbps: float) -> float | None:
    """`max_mbps` (10^6 bytes a second; 0: unlimited) as bytes a second, or None."""
    return max_mbps * 1e6 if max_mbps > 0 else None


def default_burst(rate: float) -> int:
    return max(PIECE, math.ceil(rate * BURST_S))


class LocalBytes:
    """A GCRA on bytes: `rate` bytes/s, at most `burst` bytes at once."""

    def __init__(self, rate: float, burst: int | None = None, *, clock: Clock = SYSTEM) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError("a byte budget's rate is a finite number above 0")
        self.rate = rate
        self.burst = max(PIECE, burst or default_burst(rate))
        self._clock = clock
        self._tat = float("-inf")  # theoretical arrival time of the next byte
        self.taken = 0  # bytes taken so far (for reports and tests)

    async def take(self, n: int) -> None:
        now = self._clock.now()
        # A take of n bytes conforms once tat - (burst - n)/rate has come: then the
        # bytes of any window stay within rate x W + burst.
        start = max(now, self._tat - max(0, self.burst - n) / self.rate)
        self._tat = max(self._tat, start) + n / self.rate
        self.taken += n
        if start > now:
            await self._clock.sleep(start - now)


def local(max_mbps: float, clock: Clock = SYSTEM) -> LocalBytes | None:
    """The run's own byte budget for `--max-mbps` (None: unlimited)."""
    rate = bytes_per_s(max_mbps)
    return None if rate is None else LocalBytes(rate, clock=clock)


@contextlib.contextmanager
def using(budget: ByteBudget | None) -> Iterator[None]:
    """Bodies sent within take from `budget` (None: leave what is in force)."""
    if budget is None:
        yield
        return
    token = CURRENT.set(budget)
    try:
        yield
    finally:
        CURRENT.reset(token)


def paced(body: Callable[[], Awaitable[Body]]) -> Callable[[], Awaitable[Body]]:
    """`body` taken from the budget in force as it is read (unchanged without one)."""
    budget = CURRENT.get()
    if budget is None:
        return body

    async def make() -> Body:
        data = await body()
        if isinstance(data, bytes) and len(data) <= PIECE:
            await budget.take(len(data))
            return data
        return _pieces(data, budget)

    return make


async def _pieces(data: Body, budget: ByteBudget) -> AsyncGenerator[bytes, None]:
    if isinstance(data, bytes):
        for start in range(0, len(data), PIECE):
            piece = data[start : start + PIECE]
            await budget.take(len(piece))
            yield piece
        return
    try:
        async for chunk in data:
            for start in range(0, len(chunk), PIECE):
                piece = chunk[start : start + PIECE] if len(chunk) > PIECE else chunk
                await budget.take(len(piece))
                yield piece
    finally:
        # Closes the reader's file at once (its `finally` awaits nothing), even when
        # this body is abandoned mid-send.
        await data.aclose()
