"""The shared pacer of one plane (control or data): how fast calls may start.

Owns the rule that a 429 slows the whole plane, not only the call that got it
(design.md §2). Until the first throttle the pacer lets calls through at the
configured rate (unlimited by default). A throttle pauses every caller until
the server's Retry-After has passed, and cuts the rate to the server's real
allowance, measured as what got through per second since the last cut; each
success then adds a little back (additive increase), so the rate settles just
under the server's limit.

How the allowance is measured (the part that makes it converge):

- Over a whole *cycle*, from one cut to the next, pauses included. A server's
  limiter (a token bucket, a window counter) refills while we are paused and
  lets a burst through afterwards; measuring only after the pause counts that
  burst as sustainable rate and never converges (it settles into a
  burst-429-pause loop). Between two cuts the bucket goes from empty to empty,
  so successes / elapsed is its refill rate.
- The first cut has no previous cut: the bucket was full when we started, so
  the Retry-After about to be waited is counted in (burst / (elapsed + pause)).
- Successes are scaled up by the share of calls refused in the cycle, so that
  refusals that are not about pace (a storm of random 429s) do not ratchet
  the rate down to nothing: the new rate is the attempt rate that yields what
  got through.
- A 429 for a call that started before the last cut was sent at the old rate:
  it pauses (Retry-After) but does not cut again. A cycle needs `MIN_SAMPLE`
  successes before it can cut; until then a throttle only pauses.

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

    WINDOW_S = 10.0  # longest cycle measured; older successes are forgotten
    MIN_SAMPLE = 10  # successes in a cycle before a throttle may cut the rate

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
        self._starts: collections.deque[float] = collections.deque()
        self._successes: collections.deque[float] = collections.deque()
        self._epoch: float | None = None  # start of the current cycle
        self._cycle_refused = 0  # counted throttles in the current cycle
        self._last_cut = float("-inf")  # when the current cycle began with a cut
        self._fresh = True  # the cycle began with the first call, not after a throttle

    def stats(self) -> PacerStats:
        now = self._clock()
        return PacerStats(self._rate, self._throttles, max(0.0, self._paused_until - now))

    async def wait(self) -> float:
        """Return when a call may start; the value is its start time (for `on_throttle`)."""
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
        started = self._clock()
        if self._epoch is None:
            self._epoch = started
        _push(self._starts, started, started - self.WINDOW_S)
        return started

    def observed_rate(self) -> float:
        """Calls started per second over the recent window."""
        if not self._starts:
            return 0.0
        span = min(self.WINDOW_S, max(0.05, self._clock() - self._starts[0]))
        return len(self._starts) / span

    def on_throttle(self, retry_after: float | None, started: float | None = None) -> None:
        """A call was refused for pace: pause everyone, then go no faster than what got through.

        `started` is the call's start time as `wait()` returned it; a call sent
        before the last cut pauses the plane but does not cut the rate again.
        """
        now = self._clock()
        self._throttles += 1
        if retry_after is not None:
            self._paused_until = max(self._paused_until, now + retry_after)
        if started is not None and started < self._last_cut:
            return
        self._cycle_refused += 1
        if self._epoch is None:
            self._epoch, self._fresh = now, False
        _push(self._successes, None, now - self.WINDOW_S)
        since = max(self._epoch, now - self.WINDOW_S)
        got_through = sum(1 for t in self._successes if t >= since)
        if got_through < self.MIN_SAMPLE:
            return  # too few calls to measure an allowance: only pause
        elapsed = now - since
        if self._fresh:
            # The limiter was full when we began: its burst is paid back by this pause.
            elapsed += max(0.0, self._paused_until - now)
        allowed = got_through / max(0.05, elapsed)
        # The attempt rate that yields `allowed` when this share is refused anyway.
        refused_share = min(0.5, self._cycle_refused / (got_through + self._cycle_refused))
        allowed /= 1.0 - refused_share
        current = self._rate if self._rate is not None else self.observed_rate()
        new = max(self._min_rate, min(current, allowed))
        if self._ceiling is not None:
            new = min(new, self._ceiling)
        self._rate = new
        self._fresh = False
        self._last_cut = now
        self._epoch = now
        self._cycle_refused = 0
        self._next_slot = max(self._next_slot, self._paused_until, now + 1.0 / new)

    def on_success(self) -> None:
        """A call went through: probe upward (about +1 call/s per second, or +5 %/s)."""
        now = self._clock()
        if self._epoch is None:
            self._epoch = now
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
