"""The shared pacer of one plane (control or data): how fast calls may start.

Owns the rule that a 429 slows the whole plane, not only the call that got it
(design.md §2). Until the first throttle the pacer lets calls through at the
configured rate (unlimited by default). A throttle pauses every caller until
the server's Retry-After has passed and sets the rate to what actually got
through in the last window (the server's real allowance; a fraction of the
attempted rate when nothing got through); each success then adds a little
back (additive increase), so the rate settles just under the server's limit.

Invariant: calls start no faster than `rate` per second once a rate is set;
`wait()` holds no lock across its sleep, so cancellation is always clean.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio


@dataclass(frozen=True, slots=True)
class PacerStats:
    """A snapshot for progress displays and reports."""

    rate: float | None  # calls/s currently allowed; None = unlimited
    throttles: int  # 429s (or equivalents) seen
    paused_for: float  # seconds left in the current Retry-After pause


class Pacer:
    """AIMD pacing of call starts, shared by every task of one plane."""

    DECREASE = 0.7  # multiplicative decrease on a throttle
    WINDOW_S = 2.0  # how far back the observed rate is measured
    MIN_SAMPLE = 10  # successes in the window before a throttle may cut the rate

    def __init__(
        self,
        rate: float | None = None,
        *,
        min_rate: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._ceiling = rate  # a configured rate is never exceeded
        self._min_rate = min_rate
        self._clock = clock
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._throttles = 0
        self._last_cut = float("-inf")
        self._starts: collections.deque[float] = collections.deque()
        self._successes: collections.deque[float] = collections.deque()
        self._first_success = float("inf")

    def stats(self) -> PacerStats:
        now = self._clock()
        return PacerStats(self._rate, self._throttles, max(0.0, self._paused_until - now))

    async def wait(self) -> None:
        """Return when a call may start."""
        while True:
            now = self._clock()
            if now < self._paused_until:
                await anyio.sleep(self._paused_until - now)
                continue
            if self._rate is None:
                break
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self._rate
            if slot > now:
                await anyio.sleep(slot - now)
                if self._clock() < self._paused_until:
                    continue
            break
        self._record_start(self._clock())

    def _record_start(self, now: float) -> None:
        _push(self._starts, now, now - self.WINDOW_S)

    def observed_rate(self) -> float:
        """Calls started per second over the recent window."""
        if not self._starts:
            return 0.0
        span = min(self.WINDOW_S, max(0.05, self._clock() - self._starts[0]))
        return len(self._starts) / span

    def success_rate(self) -> tuple[float, int]:
        """Calls per second that went through since the last pause ended (and how many)."""
        now = self._clock()
        _push(self._successes, None, now - self.WINDOW_S)
        # Time spent paused is not time the server refused us: measure after it.
        since = max(now - self.WINDOW_S, min(self._paused_until, now), self._first_success)
        count = sum(1 for t in self._successes if t >= since)
        return count / max(0.05, now - since), count

    def on_throttle(self, retry_after: float | None) -> None:
        """A call was refused for pace: pause everyone, then go no faster than what got through."""
        now = self._clock()
        self._throttles += 1
        allowed, sample = self.success_rate()
        if retry_after is not None:
            self._paused_until = max(self._paused_until, now + retry_after)
        if sample < self.MIN_SAMPLE or now - self._last_cut < self.WINDOW_S / 2:
            # Too few calls to measure an allowance (only pause), or the calls
            # refused in one burst were all sent at the old rate (cut once).
            return
        self._last_cut = now
        current = self._rate if self._rate is not None else self.observed_rate()
        new = min(current, allowed)
        self._rate = max(self._min_rate, new)
        self._next_slot = max(self._next_slot, self._paused_until, now + 1.0 / self._rate)

    def on_success(self) -> None:
        """A call went through: probe upward (about +1 call/s per second, or +5 %/s)."""
        now = self._clock()
        if not self._successes and self._first_success == float("inf"):
            self._first_success = now
        _push(self._successes, now, now - self.WINDOW_S)
        if self._rate is None:
            return
        rate = self._rate + max(1.0 / self._rate, 0.05)
        if self._ceiling is not None:
            rate = min(rate, self._ceiling)
        self._rate = rate


def _push(window: collections.deque[float], value: float | None, horizon: float) -> None:
    """Append `value` (if any) and drop entries older than `horizon`."""
    if value is not None:
        window.append(value)
    while window and window[0] < horizon:
        window.popleft()
