"""One provider account's budget, shared by every worker: a GCRA and a pause, on Redis.

Owns how fast API calls may start across all workers of every run on one
API key. `Budget.take` asks one Lua script, just before a call: the script
reads the server's clock (`TIME`, so client clocks never enter the budget),
refuses while the shared pause lasts, and otherwise applies a GCRA (generic
cell rate algorithm): a call conforms if the theoretical arrival time (TAT)
less the burst tolerance is not in the future, and then pushes the TAT one
emission interval on. So at most `burst` calls start at once and at most
rate x W + burst in any window of W seconds. `Budget.pause` sets the shared
`pause_until` a 429's Retry-After asks for, and never shortens it. Both keys
carry a TTL just past what they say, so a step of the server's wall clock
cannot stall the budget for long.

`SharedPacer` is the engine's API pacer (`ingest.pacing.Pacing`) in a
coordinated run: the worker's local `Pacer` first (this worker's adaptive
rate and Retry-After pause), then the shared budget; a throttle the engine
reports is also sent to the shared pause by the pacer's own task (`run`), so
a 429 at one worker pauses all of them within one round trip.

Invariants: one script call per granted API call (a refused one sleeps the
wait the script names, then asks again), or, with no shared rate, one per
`PAUSE_POLL_S` at most, so another worker's pause is obeyed within that; times in Lua are formatted with
`%d` (its numbers are doubles); the account's key never reaches Redis (the
keys are named by `names.account_digest`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from ingest.coord.names import BudgetKeys
from ingest.pacing import Pacer, PacerStats

if TYPE_CHECKING:
    from ingest.clock import Clock
    from ingest.coord.connection import Connection

# KEYS: tat, pause. ARGV: interval us (0: no rate, pause only), tolerance us.
# Returns {granted 0/1, wait us, server now us}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if now < pause then
  return {0, string.format('%d', pause - now), string.format('%d', now)}
end
local interval = tonumber(ARGV[1])
if interval <= 0 then
  return {1, '0', string.format('%d', now)}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - tonumber(ARGV[2])
if allow_at > now then
  return {0, string.format('%d', allow_at - now), string.format('%d', now)}
end
local new_tat = tat + interval
local ttl_ms = math.floor((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {1, '0', string.format('%d', now)}
"""

# KEYS: pause. ARGV: seconds in us. Extends the pause, never shortens it; returns its end.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wanted = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if wanted > current then
  local ttl_ms = math.floor((wanted - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%d', wanted), 'PX', ttl_ms)
  return string.format('%d', wanted)
end
return string.format('%d', current)
"""


PAUSE_POLL_S = 0.05  # with no shared rate, the pause is looked at this often, not every call


@dataclass(frozen=True, slots=True)
class Grant:
    """The script's answer: granted, or how long to wait; with the server's time."""

    granted: bool
    wait_s: float
    server_us: int


class Budget:
    """The shared budget of one provider account: `rate` calls/s (None: pause only), `burst`."""

    def __init__(
        self, conn: Connection, keys: BudgetKeys, rate: float | None, burst: int = 1
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("a budget's rate is above 0 (None: no rate, the pause only)")
        self._conn = conn
        self._keys = keys
        self.rate = rate
        self.burst = max(1, burst)
        self._interval_us = 0 if rate is None else max(1, round(1_000_000 / rate))
        self._tolerance_us = self._interval_us * (self.burst - 1)
        self._take = conn.client.register_script(_TAKE)
        self._pause = conn.client.register_script(_PAUSE)

    async def take(self) -> Grant:
        """Ask for one call start now."""
        keys = [self._keys.tat, self._keys.pause]
        args = [self._interval_us, self._tolerance_us]
        granted, wait_us, now_us = await self._conn.call(lambda: self._take(keys=keys, args=args))
        return Grant(int(granted) == 1, int(wait_us) / 1e6, int(now_us))

    async def pause(self, seconds: float) -> int:
        """Pause every worker for `seconds` from now (server time) unless paused longer."""
        us = math.ceil(seconds * 1_000_000)
        value = await self._conn.call(lambda: self._pause(keys=[self._keys.pause], args=[us]))
        return int(value)


class SharedPacer:
    """The API pacer of a coordinated worker: the local pacer, then the shared budget."""

    def __init__(
        self,
        budget: Budget,
        local: Pacer,
        clock: Clock,
        *,
        max_pause_s: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.budget = budget
        self.local = local
        self._clock = clock
        self._max_pause_s = max_pause_s
        self._rng = rng or random.Random()
        self._pending = 0.0  # the longest pause not yet sent
        self._checked = float("-inf")  # when the pause was last looked at (no shared rate)
        self._wake = anyio.Event()
        self.shared_waits = 0  # times the shared budget made a call wait

    def stats(self) -> PacerStats:
        return self.local.stats()

    async def wait(self) -> float:
        await self.local.wait()
        while True:
            now = self._clock.now()
            if self.budget.rate is None:
                if now < self._checked + PAUSE_POLL_S:
                    return now  # no shared rate: the pause was looked at a moment ago
                self._checked = now  # callers meanwhile go on this look's word
            grant = await self.budget.take()
            if grant.granted:
                return self._clock.now()
            self._checked = float("-inf")  # paused: the next caller looks again
            self.shared_waits += 1
            # A little jitter, so workers refused together do not all ask again at once.
            await self._clock.sleep(grant.wait_s * (1.0 + 0.1 * self._rng.random()))

    def on_success(self, started: float | None = None) -> None:
        self.local.on_success(started)

    def on_throttle(self, retry_after: float | None, started: float | None = None) -> None:
        self.local.on_throttle(retry_after, started)
        if retry_after:
            if self._max_pause_s is not None:
                retry_after = min(retry_after, self._max_pause_s)
            self._pending = max(self._pending, retry_after)
            self._wake.set()

    async def run(self) -> None:
        """Send each throttle's pause to the shared budget as it comes; until cancelled."""
        while True:
            await self._wake.wait()
            await self.push()

    async def push(self) -> None:
        """Send the longest pause asked since the last push (if any) to the shared budget."""
        self._wake = anyio.Event()
        seconds, self._pending = self._pending, 0.0
        if seconds > 0:
            await self.budget.pause(seconds)
