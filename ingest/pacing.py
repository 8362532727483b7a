"""The shared pacer of one plane (control or data): how fast calls may start.

Owns the rule that a 429 slows the whole plane, not only the call that got it
(the server's allowance is per client, not per call). Until the first throttle the pacer lets calls through at the
configured rate (unlimited by default). A throttle pauses every caller until
the server's Retry-After has passed, and cuts the rate to the server's real
allowance, measured as what got through per second since the last cut; each
success then adds a little back (additive increase), so the rate settles just
under the server's limit.

How the allowance is measured (the part that makes it converge):

- Over a whole *cycle*, from one cut to the next, never over a short window
  after a pause: a server's limiter (a token bucket, a window counter) refills
  while we are paused and lets a burst through afterwards, and a short window
  counts that burst as sustainable rate (the pacer then never converges and
  settles into a burst-429-pause loop). Between two cuts the bucket goes from
  empty to empty, so successes per second of the cycle is its refill rate.
  A cycle with one refusal counts the pause it began with (the limiter refilled
  then: leaving it out measured 10/s at a 5/s bucket); in a cycle with more,
  the pauses are left out of its time (time the server told us to wait, as a
  penalty, is not time it refused us).
- The first refusal of a run is a probe. If most of the calls that were in
  flight with it are refused too, a limiter ran dry: it was full when we
  began, so its allowance is what got through over the time until the pause
  ends (burst / (elapsed + pause)), and the rate is cut to that. If most of
  them went through, the refusal was not about pace (a storm of random 429s)
  and the rate is left alone.
- Successes are scaled up by the share of calls refused in the cycle, so that
  refusals that are not about pace do not ratchet the rate down to nothing:
  the new rate is the attempt rate that yields what got through.
- A 429 for a call that started before the last cut was sent at the old rate:
  it pauses (Retry-After) but does not cut again. A cycle needs `PROBE_SAMPLE`
  successes and `MIN_CYCLE_S` seconds before it can cut (the first cut: `MIN_SAMPLE`
  successes, or `PROBE_SAMPLE` calls refused together); until then a throttle only pauses.

A pause never outlasts `max_pause_s`: a Retry-After longer than that (an
hour, say) pauses for the cap (the engine counts each cut wait in
`Counters.waits_capped`, so the run can report it). The pacer obeys; whether a refusal is about pace at all is
the adapter's call (`TransferError.scope`), never the pacer's or the engine's.

Invariant: calls start no faster than `rate` per second once a rate is set;
`wait()` holds no lock across its sleep, so cancellation is always clean. All
time comes from the injected `Clock`.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Protocol

from ingest.clock import SYSTEM, Clock


@dataclass(frozen=True, slots=True)
class PacerStats:
    """A snapshot for progress displays and reports."""

    rate: float | None  # calls/s currently allowed; None = unlimited
    throttles: int  # 429s (or equivalents) seen
    paused_for: float  # seconds left in the current Retry-After pause


class Pacing(Protocol):
    """What the engine asks of a plane's pacer: `Pacer` here, a shared one in `ingest.coord`."""

    def stats(self) -> PacerStats: ...

    async def wait(self) -> float: ...

    def on_success(self, started: float | None = None) -> None: ...

    def on_throttle(self, retry_after: float | None, started: float | None = None) -> None: ...


@dataclass(slots=True)
class _Probe:
    """The first refusal of a run, and how the calls in flight with it fared."""

    at: float  # when it came; calls started before were in flight with it
    refused: int = 1
    passed: int = 0


class Pacer:
    """AIMD pacing of call starts, shared by every task of one plane."""

    WINDOW_S = 10.0  # longest cycle measured; older successes are forgotten
    MIN_SAMPLE = 10  # successes before the first cut (fewer: PROBE_SAMPLE refused together)
    MIN_CYCLE_S = 1.5  # and seconds
    PROBE_SAMPLE = 3  # refusals in flight together that may cut at once; a cycle's successes
    RAISE = (0.05, 0.1)  # a success adds 1/rate, within these: +1 call/s per second, 5-10 %/s
    MAX_EVENTS = 4096  # call starts and successes remembered (the window's newest)

    def __init__(
        self,
        rate: float | None = None,
        *,
        min_rate: float = 0.5,
        clock: Clock = SYSTEM,
        max_pause_s: float | None = None,
        learns: bool = True,
    ) -> None:
        self._rate = rate
        self._learns = learns  # False: throttles pause, nothing is learnt (a shared budget does)
        self._ceiling = rate  # a configured rate is never exceeded
        self._min_rate = min_rate
        self._clock = clock.now
        self._sleep = clock.sleep
        self._max_pause_s = max_pause_s
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._throttles = 0
        # Bounded by count as well as by time, so memory stays flat at thousands
        # of calls a second; at such rates the newest MAX_EVENTS measure well enough.
        self._starts: collections.deque[float] = collections.deque(maxlen=self.MAX_EVENTS)
        self._successes: collections.deque[float] = collections.deque(maxlen=self.MAX_EVENTS)
        self._pauses: collections.deque[tuple[float, float]] = collections.deque()
        self._epoch: float | None = None  # start of the current cycle
        self._cycle_refused = 0  # counted throttles in the current cycle
        self._last_cut = float("-inf")  # calls started before were paced by an older rate
        self._probe: _Probe | None = None
        self._probed = False
        self._refill_until = float("-inf")

    def stats(self) -> PacerStats:
        now = self._clock()
        return PacerStats(self._rate, self._throttles, max(0.0, self._paused_until - now))

    async def wait(self) -> float:
        """Return when a call may start; the value is its start time (for the `on_*` calls)."""
        while True:
            now = self._clock()
            if now < self._paused_until:
                await self._sleep(self._paused_until - now)
                continue
            if self._probe is not None:
                self._settle_probe()  # the pause is over: decide before anyone goes
            if self._rate is None:
                break
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / self._rate
            if slot > now:
                await self._sleep(slot - now)
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
            if self._max_pause_s is not None:
                retry_after = min(retry_after, self._max_pause_s)
            self._pause(now, now + retry_after)
        if not self._learns:
            return
        probe = self._probe
        if probe is not None:
            if started is not None and started < probe.at:
                probe.refused += 1
                return
            self._settle_probe()
        if not self._probed:
            self._probed = True
            if retry_after:
                self._probe = _Probe(now)  # settled when the pause ends
                return
            self._cut(now, first=True)  # no pause to wait for: what got through, so far
            return
        if started is not None and started < self._last_cut:
            return
        self._cycle_refused += 1
        if self._epoch is None:
            self._epoch = now
        since = max(self._epoch, now - self.WINDOW_S)
        if now - since >= self.MIN_CYCLE_S:
            self._cut(now, first=False)

    def on_success(self, started: float | None = None) -> None:
        """A call went through: probe upward (about +1 call/s per second, or +5 %/s)."""
        if not self._learns:
            return
        now = self._clock()
        probe = self._probe
        if probe is not None and started is not None and started < probe.at:
            probe.passed += 1
        if self._epoch is None:
            self._epoch = now
        _push(self._successes, now, now - self.WINDOW_S)
        if self._rate is None:
            return
        rate = self._rate + raise_step(self._rate)
        if self._ceiling is not None:
            rate = min(rate, self._ceiling)
        self._rate = rate

    # -- measuring ------------------------------------------------------------

    def _settle_probe(self) -> None:
        probe, self._probe = self._probe, None
        assert probe is not None
        if probe.refused >= probe.passed:  # a limiter ran dry: cut, its pause counted in
            self._cut(probe.at, first=True, in_flight_refused=probe.refused)
        else:  # refusals not about pace: keep going, measure from here
            self._last_cut = self._epoch = probe.at
            self._cycle_refused = 0

    def _cut(self, now: float, *, first: bool, in_flight_refused: int = 0) -> None:
        """Cut the rate to what got through since the cycle began (if enough did).

        The first cut may go on fewer than `MIN_SAMPLE` successes when `PROBE_SAMPLE`
        calls in flight were refused together (many callers queued at a slow limiter:
        5/s with 16 callers passed 5, and the 1 s pauses alone paced the run, 29 % of
        its calls refused); a cycle's cut needs `PROBE_SAMPLE` successes and `MIN_CYCLE_S`.
        """
        start = self._epoch if self._epoch is not None else now
        since = max(start, now - self.WINDOW_S)
        if len(self._successes) == self.MAX_EVENTS:
            since = max(since, self._successes[0])  # older ones were dropped: measure the rest
        got_through = sum(1 for t in self._successes if since <= t <= now)
        if first:
            enough = got_through >= self.MIN_SAMPLE or (
                got_through >= 1 and in_flight_refused >= self.PROBE_SAMPLE
            )
        else:
            enough = got_through >= self.PROBE_SAMPLE
        if not enough:
            return  # too few calls to measure an allowance: the pause alone will do
        elapsed = now - since
        refused = max(1, self._cycle_refused)
        share = refused / (got_through + refused)
        if first:
            # The limiter was full when we began: its burst is paid back by the pause.
            elapsed += max(0.0, self._paused_until - now)
        else:
            # One refusal in the cycle: the limiter ran dry once, and it refilled during
            # the pause the cycle began with. More: those pauses were the server's penalty.
            skip = self._refill_until if self._cycle_refused <= 1 else since
            elapsed -= self._paused_within(max(since, skip), now)
        allowed = got_through / max(0.05, elapsed)
        # The attempt rate that yields `allowed` when this share is refused anyway.
        allowed /= 1.0 - min(0.5, share)
        new = max(self._min_rate, allowed if self._rate is None else min(self._rate, allowed))
        if self._ceiling is not None:
            new = min(new, self._ceiling)
        self._rate = new
        self._last_cut = self._epoch = now
        self._refill_until = self._paused_until
        self._cycle_refused = 0
        self._next_slot = max(self._next_slot, self._paused_until, now + 1.0 / new)

    def _pause(self, start: float, end: float) -> None:
        """Pause every caller until `end`; the pause is remembered for measuring."""
        if end <= self._paused_until:
            return
        self._pauses.append((max(start, self._paused_until), end))
        self._paused_until = end
        while self._pauses and self._pauses[0][1] < start - self.WINDOW_S:
            self._pauses.popleft()

    def _paused_within(self, since: float, now: float) -> float:
        return sum(max(0.0, min(end, now) - max(start, since)) for start, end in self._pauses)


def raise_step(rate: float) -> float:
    """What one success adds to `rate`: about +1 call/s per second, but 5-10 %/s at the ends
    (at 2 calls/s, +1/s per second doubled the rate in 2 s and overshot a slow limiter)."""
    low, high = Pacer.RAISE
    return min(high, max(1.0 / rate, low))


def _push(window: collections.deque[float], value: float | None, horizon: float) -> None:
    """Append `value` (if any) and drop entries older than `horizon`."""
    if value is not None:
        window.append(value)
    while window and window[0] < horizon:
        window.popleft()
