"""The one clock of the engine and its pacers: what time it is, and how to wait.

Owns time for everything that decides by it: the engine (elapsed time, lease
checks before a PUT, backoff sleeps) and the pacers (call slots, Retry-After
pauses). Production code uses `SYSTEM`; tests pass a `FakeClock`, on which
sleeps take no real time, so a test of a one-hour Retry-After or of a
re-sign before expiry runs in milliseconds (trio's `MockClock` with its
autojump).

Two readings, one source: `now()` is monotonic seconds (durations, pacing);
`time()` is POSIX seconds (leases are expiries on the wall clock, journal
timestamps). A fake clock moves both together.

How `FakeClock` orders sleepers: each sleep registers its deadline; time
jumps to the earliest deadline only after every runnable task has had a few
turns of the event loop, so a task that is about to sleep for 1 s is not
overtaken by one sleeping for an hour. Virtual time never goes backwards.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol

import anyio
import anyio.lowlevel


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds: for durations and pacing."""
        ...

    def time(self) -> float:
        """POSIX seconds: for leases (expiries on the wall clock) and journal timestamps."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` on this clock (a cancellation point)."""
        ...


class SystemClock:
    """The real clock: `time.monotonic`, `time.time`, `anyio.sleep`."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


SYSTEM = SystemClock()


class FakeClock:
    """Virtual time for tests: sleeps return at once, in deadline order, and move the clock.

    `advance(s)` moves it by hand (for code that only reads the time).
    """

    SETTLE_TURNS = 16  # event-loop turns every runnable task gets before time jumps

    def __init__(self, start: float = 1000.0, *, epoch: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = epoch - start
        self._sleepers: list[tuple[float, int]] = []
        self._seq = itertools.count()
        self.slept = 0.0  # virtual seconds the sleepers asked for, summed (for assertions)
        self.longest_sleep = 0.0

    def now(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time never goes backwards")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.slept += seconds
        self.longest_sleep = max(self.longest_sleep, seconds)
        entry = (self._now + seconds, next(self._seq))
        heapq.heappush(self._sleepers, entry)
        try:
            while True:
                for _ in range(self.SETTLE_TURNS):
                    await anyio.lowlevel.checkpoint()
                if self._sleepers[0] == entry:
                    heapq.heappop(self._sleepers)
                    self._now = max(self._now, entry[0])
                    return
        finally:  # cancelled: forget the deadline
            if entry in self._sleepers:
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)
