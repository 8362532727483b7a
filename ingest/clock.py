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

How `FakeClock` orders sleepers: each sleep registers its deadline. The
sleeper with the earliest deadline leads: it waits until every other task is
blocked (`anyio.wait_all_tasks_blocked`, as trio's `MockClock`
autojumps) and no blocking work of `run_sync` is under way in a thread (a
task waiting for a thread looks blocked, but it is not), then moves time to its deadline and wakes the next leader. So a
task that is about to sleep for 1 s is never overtaken by one sleeping for an
hour, however many loop turns it needs to get there. Virtual time never goes
backwards.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


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

    async def run_sync(self, fn: Callable[[], T]) -> T:
        """`fn()` in a worker thread (blocking work timed by this clock: no time passes
        on a fake clock while it runs)."""
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

    async def run_sync(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn)


SYSTEM = SystemClock()


class FakeClock:
    """Virtual time for tests: sleeps return at once, in deadline order, and move the clock.

    `advance(s)` moves it by hand (for code that only reads the time).
    """

    def __init__(self, start: float = 1000.0, *, epoch: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = epoch - start
        # (deadline, order, woken when this sleeper becomes the earliest)
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()
        self.slept = 0.0  # virtual seconds the sleepers asked for, summed (for assertions)
        self.longest_sleep = 0.0
        self._threads = 0  # `run_sync` calls under way: time stands still meanwhile
        self._threads_done: anyio.Event | None = None

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
        entry = (self._now + seconds, next(self._seq), anyio.Event())
        heapq.heappush(self._sleepers, entry)
        try:
            while True:
                if self._sleepers[0] is not entry:
                    await entry[2].wait()  # set when the sleepers before it are gone
                    entry = self._renew(entry)
                    continue
                await self._settled()
                if self._sleepers[0] is entry:  # still the earliest: its time has come
                    heapq.heappop(self._sleepers)
                    self._now = max(self._now, entry[0])
                    return
        finally:  # returned or cancelled: forget the deadline, wake the next leader
            if entry in self._sleepers:
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)
            if self._sleepers:
                self._sleepers[0][2].set()

    async def run_sync(self, fn: Callable[[], T]) -> T:
        self._threads += 1
        try:
            return await anyio.to_thread.run_sync(fn)
        finally:
            self._threads -= 1
            if self._threads == 0 and self._threads_done is not None:
                self._threads_done.set()
                self._threads_done = None

    async def _settled(self) -> None:
        """Return once no `run_sync` is under way and every other task is blocked."""
        while True:
            while self._threads:
                if self._threads_done is None:
                    self._threads_done = anyio.Event()
                await self._threads_done.wait()
            await anyio.wait_all_tasks_blocked()
            if not self._threads:
                return

    def _renew(self, entry: tuple[float, int, anyio.Event]) -> tuple[float, int, anyio.Event]:
        """The same deadline with a fresh event (an `anyio.Event` is set once)."""
        renewed = (entry[0], entry[1], anyio.Event())
        self._sleepers[self._sleepers.index(entry)] = renewed
        return renewed
