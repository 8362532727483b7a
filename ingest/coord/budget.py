"""One provider account's budget, shared by every worker: a GCRA, a pause and a learnt rate.

Owns how fast API calls may start across all workers of every run on one
API key. `Budget.take` asks one Lua script, just before a call: the script
reads the server's clock (`TIME`, so client clocks never enter the budget),
refuses while the shared pause lasts, and otherwise applies a GCRA (generic
cell rate algorithm): a call conforms if the theoretical arrival time (TAT)
less the burst tolerance is not in the future, and then pushes the TAT one
emission interval on. So at most `burst` calls start at once and at most
rate x W + burst in any window of W seconds, also as the provider sees them
(the tolerance leaves `JITTER_S` for the delays between grant and arrival). `Budget.throttle` sets the shared
`pause_until` a 429's Retry-After asks for, and never shortens it.

How the shared rate is learnt (the local `Pacer`'s rule, on the account's counts):

- The GCRA's rate is the configured one (`api_rate`), or lower once the
  account has been throttled: the learnt rate lives in one hash beside the
  TAT. Every worker's successes are folded into its next `take` (one count,
  no extra round trip), and each adds `pacing.raise_step` to the learnt rate,
  so the recovery is the whole account's. `throttle` counts each refusal of
  a call started after the last cut (server time) and cuts as `Pacer._cut`
  does: the first cut to what got through over the time until the pause
  ends, once `MIN_SAMPLE` calls passed or `PROBE_SAMPLE` were refused; later
  ones, after `MIN_CYCLE_S`, to the cycle's successes per second, scaled by
  the share refused, with the pauses left out of the time when the cycle saw
  more than one refusal. So a 429 at one worker lowers the rate every worker
  is granted at, within one round trip.
- Keys carry a TTL just past what they say (the learnt rate: `LEARNT_TTL_S`
  after its last use), so a step of the server's wall clock cannot stall the
  budget for long.

`SharedPacer` is the engine's API pacer (`ingest.pacing.Pacing`) in a
coordinated run: the worker's local `Pacer` first (the Retry-After pause,
obeyed here at once; it learns nothing, the budget does), then the shared
budget; the throttles the engine reports are sent by the pacer's own task
(`run`), so a 429 at one worker pauses all of them within one round trip.

`SharedBytes` is `--max-mbps` for every worker on the account (the engine
takes body chunks from it through `ingest.bandwidth`): a GCRA on bytes on the
server clock, granted `GRANT_BYTES` at a time, so one round trip per MiB.

Invariants: one script call per granted API call (a refused one sleeps the
wait the script names, then asks again), or, with no rate configured or
learnt, none while the worker's `pushed.PauseWatch` is live (every throttle
publishes its pause, which the pacer holds from its arrival) and one per
`PAUSE_POLL_S` at most while it is not; one more per batch of throttles; times in Lua are formatted with
`%d` (its numbers are doubles); the account's key never reaches Redis (the
keys are named by `names.account_digest`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ingest import bandwidth
from ingest.coord.names import BudgetKeys
from ingest.pacing import Pacer, PacerStats

if TYPE_CHECKING:
    from ingest.clock import Clock
    from ingest.coord.connection import Connection
    from ingest.coord.pushed import PauseWatch

# KEYS: tat, pause, learnt. ARGV: interval us (0: none configured), burst, successes since
# this worker's last take, raise low, raise high, ceiling calls/s (0: none), learnt TTL ms,
# the Pacer's window us, the delay variation allowed for (us: `JITTER_S`).
# Returns {granted 0/1, wait us, server now us, learnt rate ('' : none)}.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[3], 'rate', 'ok', 'epoch', 'paused')
local rate = tonumber(h[1])
local ok = tonumber(ARGV[3])
if ok > 0 or not h[3] then
  if rate and ok > 0 then
    rate = rate + ok * math.min(tonumber(ARGV[5]), math.max(1 / rate, tonumber(ARGV[4])))
    local ceiling = tonumber(ARGV[6])
    if ceiling > 0 and rate > ceiling then rate = ceiling end
    redis.call('HSET', KEYS[3], 'rate', string.format('%.6f', rate))
  end
  local epoch = tonumber(h[3]) or now
  local total = (tonumber(h[2]) or 0)
  local window = tonumber(ARGV[8])
  if now - epoch > window then  -- the cycle's newest window only, as the Pacer measures
    local kept = window / (now - epoch)
    total = total * kept
    redis.call('HSET', KEYS[3], 'paused', string.format('%d', (tonumber(h[4]) or 0) * kept))
    epoch = now - window
  end
  redis.call('HSET', KEYS[3], 'ok', string.format('%.3f', total + ok),
    'epoch', string.format('%d', epoch))
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
local shown = rate and string.format('%.6f', rate) or ''
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if now < pause then
  return {0, string.format('%d', pause - now), string.format('%d', now), shown}
end
local interval = tonumber(ARGV[1])
if rate then interval = math.max(interval, math.floor(1000000 / rate)) end
if interval <= 0 then
  return {1, '0', string.format('%d', now), shown}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - math.max(0, interval * (tonumber(ARGV[2]) - 1) - tonumber(ARGV[9]))
if allow_at > now then
  return {0, string.format('%d', allow_at - now), string.format('%d', now), shown}
end
local new_tat = tat + interval
local ttl_ms = math.floor((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {1, '0', string.format('%d', now), shown}
"""

# KEYS: pause, learnt, the pushes' channel. ARGV: pause us (0: none), min rate, ceiling (0:
# none), min cycle us, MIN_SAMPLE, PROBE_SAMPLE, learnt TTL ms, then the server start (us) of
# each refused call (none: a pause alone). Extends the pause, never shortens it; counts the
# refusals of calls started since the last cut and cuts as `Pacer._cut` does; publishes
# "pause end, now, learnt rate" to every worker's `PauseWatch`. Returns {pause end, learnt rate}.
_THROTTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function told(pause_end, shown)
  local ends = string.format('%d', pause_end)
  redis.call('PUBLISH', KEYS[3], ends .. ' ' .. string.format('%d', now) .. ' ' .. shown)
  return {ends, shown}
end
local pause_end = tonumber(redis.call('GET', KEYS[1]) or '0')
local added = 0
local wanted = now + tonumber(ARGV[1])
if wanted > pause_end then
  added = wanted - math.max(now, pause_end)
  pause_end = wanted
  local ttl_ms = math.floor((wanted - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%d', wanted), 'PX', ttl_ms)
end
local h = redis.call('HMGET', KEYS[2], 'rate', 'epoch', 'ok', 'refused', 'cut', 'paused', 'probed')
local rate = tonumber(h[1])
local shown = rate and string.format('%.6f', rate) or ''
if #ARGV < 8 then return told(pause_end, shown) end
local epoch = tonumber(h[2]) or now
local ok = tonumber(h[3]) or 0
local last_cut = tonumber(h[5]) or 0
local paused = (tonumber(h[6]) or 0) + added
local counted = 0
for i = 8, #ARGV do
  if tonumber(ARGV[i]) >= last_cut then counted = counted + 1 end
end
local refused = (tonumber(h[4]) or 0) + counted
local left = math.max(0, pause_end - now)
local elapsed = nil
if counted > 0 and not h[7] then
  if ok >= tonumber(ARGV[5]) or (ok >= 1 and refused >= tonumber(ARGV[6])) then
    elapsed = now - epoch + left  -- the limiter was full: its burst is paid back by the pause
  end
elseif counted > 0 and now - epoch >= tonumber(ARGV[4]) and ok >= tonumber(ARGV[6]) then
  elapsed = now - epoch
  if refused > 1 then elapsed = elapsed - (paused - left) end  -- penalties, not refills
end
if elapsed == nil then
  redis.call('HSET', KEYS[2], 'refused', refused, 'paused', string.format('%d', paused),
    'epoch', string.format('%d', epoch))
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
  return told(pause_end, shown)
end
local share = refused / (ok + refused)
local allowed = ok * 1000000 / math.max(50000, elapsed) / (1 - math.min(0.5, share))
if rate and rate < allowed then allowed = rate end
allowed = math.max(tonumber(ARGV[2]), allowed)
local ceiling = tonumber(ARGV[3])
if ceiling > 0 and allowed > ceiling then allowed = ceiling end
shown = string.format('%.6f', allowed)
redis.call('HSET', KEYS[2], 'rate', shown, 'epoch', string.format('%d', now), 'ok', 0,
  'refused', 0, 'cut', string.format('%d', now), 'paused', string.format('%d', left), 'probed', 1)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return told(pause_end, shown)
"""


# KEYS: bytes TAT. ARGV: interval us (one grant's bytes at the rate), tolerance us.
# Returns {granted 0/1, wait us}: a GCRA on grants of `GRANT_BYTES`, on the server clock.
_TAKE_BYTES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - tonumber(ARGV[2])
if allow_at > now then return {0, string.format('%d', allow_at - now)} end
local new_tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
return {1, '0'}
"""


# The spread of grant-to-arrival delays the burst leaves room for. A call granted on the
# server's clock reaches the provider a few ms later, by an amount that varies with each
# worker's scheduling; arrivals in a 1-second window can then come from grants spread over
# 1 s + that spread, so the provider would see up to rate x spread calls more than rate +
# burst. As a GCRA shaper upstream of a policer does (ITU-T I.371's cell delay variation
# tolerance), the burst tolerance is lowered by it (never below one call at a time).
# 30 ms: at 200 calls/s and burst 8, four workers at the signer had windows of up to 214
# where the bound is 208 (benchmarks/scaleout.py, quiet machine).
JITTER_S = 0.03

PAUSE_POLL_S = 0.05  # no rate and no live PauseWatch: the pause is looked at this often
LEARNT_TTL_S = 600.0  # a learnt rate unused this long is forgotten (a new run probes again)
GRANT_BYTES = 1 << 20  # bytes one round trip of the shared byte budget grants
MAX_REPORTED = 64  # refusals sent in one throttle call (more in one batch tell nothing new)


@dataclass(frozen=True, slots=True)
class Grant:
    """The script's answer: granted, or how long to wait; with the server's time and rate."""

    granted: bool
    wait_s: float
    server_us: int
    learnt: float | None = None  # the account's learnt rate (None: not throttled yet)


class Budget:
    """The shared budget of one provider account: `rate` calls/s (None: none configured), `burst`.

    The cycle's constants default to the local `Pacer`'s (a test may shorten them).
    """

    def __init__(
        self,
        conn: Connection,
        keys: BudgetKeys,
        rate: float | None,
        burst: int = 1,
        *,
        min_rate: float = 0.5,
        min_cycle_s: float = Pacer.MIN_CYCLE_S,
        jitter_s: float = JITTER_S,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("a budget's rate is above 0 (None: no rate, the pause only)")
        self._conn = conn
        self._keys = keys
        self.rate = rate
        self.burst = max(1, burst)
        self._interval_us = 0 if rate is None else max(1, round(1_000_000 / rate))
        low, high = Pacer.RAISE
        ttl_ms = round(LEARNT_TTL_S * 1000)
        window_us, jitter_us = round(Pacer.WINDOW_S * 1e6), round(jitter_s * 1e6)
        self._take_args = [low, high, rate or 0, ttl_ms, window_us, jitter_us]
        self._cut_args = [min_rate, rate or 0, round(min_cycle_s * 1e6)]
        self._cut_args += [Pacer.MIN_SAMPLE, Pacer.PROBE_SAMPLE, ttl_ms]
        db = conn.client.connection_pool.connection_kwargs.get("db") or 0
        self.channel = keys.pushes(int(db))  # where `throttle` tells every `PauseWatch`
        self._take = conn.client.register_script(_TAKE)
        self._throttle = conn.client.register_script(_THROTTLE)

    async def take(self, successes: int = 0) -> Grant:
        """Ask for one call start now, reporting this worker's successes since its last take."""
        keys = [self._keys.tat, self._keys.pause, self._keys.learnt]
        args = [self._interval_us, self.burst, successes, *self._take_args]
        granted, wait_us, now_us, learnt = await self._conn.call(
            lambda: self._take(keys=keys, args=args)
        )
        return Grant(int(granted) == 1, int(wait_us) / 1e6, int(now_us), _rate(learnt))

    async def throttle(self, seconds: float, refused: list[int]) -> tuple[int, float | None]:
        """Pause every worker for `seconds` (unless paused longer) and count `refused` calls
        (their server start times, us; empty: a pause alone). Returns the pause's end and
        the learnt rate."""
        us = math.ceil(seconds * 1_000_000)
        keys = [self._keys.pause, self._keys.learnt, self.channel]
        args = [us, *self._cut_args, *refused[:MAX_REPORTED]]
        end, learnt = await self._conn.call(lambda: self._throttle(keys=keys, args=args))
        return int(end), _rate(learnt)

    async def pause(self, seconds: float) -> int:
        """Pause every worker for `seconds` from now (server time) unless paused longer."""
        return (await self.throttle(seconds, []))[0]


def _rate(text: str) -> float | None:
    return float(text) if text else None


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
        self._refused: list[int] = []  # server starts (us) of refused calls not yet sent
        self._successes = 0  # not yet reported
        self._offset_us = 0  # server clock less this clock, as of the last take
        self._checked = float("-inf")  # when the pause was last looked at (no rate)
        self._held_until = float("-inf")  # a pushed pause's end (this clock)
        self.watch: PauseWatch | None = None  # pushes the pauses: no look per call (no rate)
        self._wake = anyio.Event()
        self.learnt: float | None = None  # the account's learnt rate, as last heard
        self.shared_waits = 0  # times the shared budget made a call wait
        self.granted_us = 0  # server time of the last grant (us)

    def stats(self) -> PacerStats:
        local = self.local.stats()
        rates = [r for r in (self.budget.rate, self.learnt) if r is not None]
        return PacerStats(min(rates) if rates else None, local.throttles, local.paused_for)

    async def wait(self) -> float:
        await self.local.wait()
        while True:
            now = self._clock.now()
            if now < self._held_until:  # a pause another worker's 429 set, pushed to this one
                await self._clock.sleep(self._held_until - now)
                continue
            if self.budget.rate is None and self.learnt is None:
                if self.watch is not None and self.watch.live(now):
                    return now  # no rate, and every pause is pushed: nothing to ask
                if now < self._checked + PAUSE_POLL_S:
                    return now  # no rate: the pause was looked at a moment ago
                self._checked = now  # callers meanwhile go on this look's word
            successes, self._successes = self._successes, 0
            grant = await self.budget.take(successes)
            self._heard(grant)
            if grant.granted:
                self.granted_us = grant.server_us
                return self._clock.now()
            self._checked = float("-inf")  # paused: the next caller looks again
            self.shared_waits += 1
            # A little jitter, so workers refused together do not all ask again at once.
            await self._clock.sleep(grant.wait_s * (1.0 + 0.1 * self._rng.random()))

    def _heard(self, grant: Grant) -> None:
        self.learnt = grant.learnt
        self._offset_us = grant.server_us - round(self._clock.now() * 1e6)

    def hold(self, seconds: float) -> None:
        """No call starts for `seconds` from now (a pushed pause; never shortens one)."""
        self._held_until = max(self._held_until, self._clock.now() + seconds)

    def told(self, message: str) -> None:
        """A `PauseWatch` heard a throttle's "pause end, server now, learnt rate" (us, us, '')."""
        parts = message.split(" ")
        if len(parts) != 3:
            return  # not a throttle's (another version's): the watch's next look tells
        end_us, now_us, rate = parts
        if int(end_us) > int(now_us):  # the delivery's delay only lengthens it
            self.hold((int(end_us) - int(now_us)) / 1e6)
        if rate:
            self.learnt = float(rate)

    async def look(self, *, always: bool = True) -> None:
        """Ask the budget once, off any call (a watch's resync, or its report of successes).

        Folds this worker's successes into the account's counts and hears the pause and
        the learnt rate. With `always` false, only when there are successes to report and
        no rate (with one, every call's own take reports them)."""
        quiet = self.budget.rate is not None or self.learnt is not None or not self._successes
        if quiet and not always:
            return
        successes, self._successes = self._successes, 0
        grant = await self.budget.take(successes)
        self._heard(grant)
        if not grant.granted:
            self.hold(grant.wait_s)

    def on_success(self, started: float | None = None) -> None:
        self.local.on_success(started)
        self._successes += 1

    def on_throttle(self, retry_after: float | None, started: float | None = None) -> None:
        self.local.on_throttle(retry_after, started)
        if retry_after and self._max_pause_s is not None:
            retry_after = min(retry_after, self._max_pause_s)
        self._pending = max(self._pending, retry_after or 0.0)
        at = self._clock.now() if started is None else started
        self._refused.append(round(at * 1e6) + self._offset_us)
        self._wake.set()

    async def run(self) -> None:
        """Send each throttle's pause and refusals to the shared budget as they come; until cancelled."""
        while True:
            await self._wake.wait()
            await self.push()

    async def push(self) -> None:
        """Send the longest pause and the refusals since the last push (if any) to the budget."""
        self._wake = anyio.Event()
        if self.watch is not None:  # successes not yet reported count in this throttle's cut
            await self.look(always=False)
        seconds, self._pending = self._pending, 0.0
        refused, self._refused = self._refused, []
        if seconds > 0 or refused:
            _, learnt = await self.budget.throttle(seconds, refused)
            self.learnt = learnt if learnt is not None else self.learnt


class SharedBytes:
    """`--max-mbps` of a coordinated run: one byte budget for every worker on the account.

    A GCRA on the server clock grants `GRANT_BYTES` at a time (one round trip
    per MiB); this worker spends a grant on its own PUTs' chunks before it asks
    again. Takers queue on one lock, so a grant is asked for once, not by each.
    """

    def __init__(self, conn: Connection, keys: BudgetKeys, rate: float) -> None:
        self._conn = conn
        self._key = keys.bytes
        self.rate = rate
        # Burst: a tenth of a second of the rate, never less than one grant.
        extra = max(0, bandwidth.default_burst(rate) - GRANT_BYTES)
        self._args = [round(GRANT_BYTES / rate * 1e6), round(extra / rate * 1e6)]
        self._script = conn.client.register_script(_TAKE_BYTES)
        self._credit = 0
        self._lock = anyio.Lock()
        self.grants = 0

    def _ask(self) -> Awaitable[Any]:
        return self._script(keys=[self._key], args=self._args)

    async def take(self, n: int) -> None:
        async with self._lock:
            while self._credit < n:
                granted, wait_us = await self._conn.call(self._ask)
                if int(granted) == 1:
                    self._credit += GRANT_BYTES
                    self.grants += 1
                else:
                    await anyio.sleep(int(wait_us) / 1e6)
            self._credit -= n
