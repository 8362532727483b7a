"""The account's shared budget against a real redis-server: the learnt rate, and --max-mbps.

Two workers' `SharedPacer`s on one budget. Only the first is refused (three
calls in flight together, as when a limiter runs dry), yet the rate the
budget grants the second falls with the cut, both wait out the pause, and the
second's successes alone raise the rate again for both. Then two workers'
byte budgets on one account share `--max-mbps`. Real time (the budget runs
on the server's clock): about a second each.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
import pytest

from ingest import bandwidth
from ingest.bandwidth import PIECE
from ingest.clock import SYSTEM
from ingest.coord.budget import GRANT_BYTES, Budget, SharedBytes, SharedPacer
from ingest.coord.connection import Connection, connect
from ingest.coord.names import BudgetKeys, account_digest
from ingest.pacing import Pacer

pytestmark = pytest.mark.anyio
CEILING, BURST, PAUSE_S = 80.0, 5, 0.3  # calls/s configured; the refusals' Retry-After
LATE_S = 0.5  # how long the learnt-rate test calls on after the pause


@pytest.fixture
async def conn(redis_url: str) -> AsyncIterator[Connection]:
    async with connect(redis_url) as c:
        yield c


@dataclass(slots=True)
class Worker:
    pacer: SharedPacer
    grants: list[tuple[float, float]] = field(default_factory=list)  # (time, rate in force)
    on_server: list[tuple[int, float]] = field(default_factory=list)  # (server us, rate)
    pushed_at: float = 0.0  # when the refusals went to the budget
    paused_at: float | None = None  # when the shared pause was surely set

    def rate_between(self, start: float, end: float) -> float:
        """Calls granted per second in [start, end)."""
        return sum(1 for t, _ in self.grants if start <= t < end) / (end - start)


def worker(conn: Connection, keys: BudgetKeys) -> Worker:
    budget = Budget(conn, keys, CEILING, BURST)
    return Worker(SharedPacer(budget, Pacer(None, clock=SYSTEM, learns=False), SYSTEM))


async def drive(w: Worker, until: Callable[[], float], refuse_at: float | None = None) -> None:
    """Call as fast as the pacer lets, all successes, until `until()`; at `refuse_at`, three
    refused at once."""
    while time.monotonic() < until():
        started = await w.pacer.wait()
        rate = w.pacer.stats().rate
        assert rate is not None
        w.grants.append((started, rate))
        w.on_server.append((w.pacer.granted_us, rate))
        if refuse_at is not None and started >= refuse_at:
            refuse_at = None
            for _ in range(3):  # this call and two in flight with it
                w.pacer.on_throttle(PAUSE_S, started)
            w.pushed_at = time.monotonic()
            await w.pacer.push()
            w.paused_at = time.monotonic()
        else:
            w.pacer.on_success(started)


async def test_a_429_at_one_worker_lowers_the_rate_the_other_is_granted(
    conn: Connection,
) -> None:
    keys = BudgetKeys(account_digest("novita", "e", {"k": "shared-rate"}))
    a, b = worker(conn, keys), worker(conn, keys)
    start = time.monotonic()
    refuse_at = start + 0.3

    def until() -> float:  # half a second past the pause, however late the refusals came
        return start + 1.0 if not a.pushed_at else a.pushed_at + PAUSE_S + LATE_S

    async with anyio.create_task_group() as tg:
        tg.start_soon(drive, a, until, refuse_at)
        tg.start_soon(drive, b, until)
    end = until()
    learnt = [rate for _, rate in b.grants if rate < CEILING]
    assert learnt, "b never heard of a's refusals"
    cut = learnt[0]  # ~29 calls (burst 5 + 0.3 s x 80) in the 0.6 s until the pause ends: ~53
    assert cut < 0.75 * CEILING, cut
    assert a.paused_at is not None
    resumed = a.pushed_at + PAUSE_S  # the pause ends no earlier (the server set it later)
    for w in (a, b):  # the pause held both, a's local pause and b's shared one
        # (b may see a grant the server gave just before the pause a few ms late)
        assert not [t for t, _ in w.grants if a.paused_at + 0.05 < t < resumed - 0.01]
    # b is granted at the learnt rate, though never refused, and the account's calls fall
    # with it (its whole rate: GCRA shares one rate unevenly between workers).
    assert all(rate < CEILING for t, rate in b.grants if t >= resumed)
    both = Worker(b.pacer, sorted(a.grants + b.grants))
    early, late = both.rate_between(start, refuse_at), both.rate_between(resumed, end)
    # The burst the pause left unspent goes at once when it ends: the rate is what follows.
    paced = late - BURST / (end - resumed)
    assert paced < 0.85 * early, (early, late, learnt[:3])
    assert late * (end - resumed) <= max(learnt) * (end - resumed) + BURST
    # Successes raise it again, every worker's counted: a's next take sees b's too.
    assert learnt[-1] > cut
    after = await a.pacer.budget.take()
    assert after.learnt is not None and after.learnt >= learnt[-1]
    # Every window of grants (server time) holds at most the highest rate in force + burst:
    # a quarter second is tight while both call at the ceiling (5 + 20 calls).
    grants = sorted(a.on_server + b.on_server)
    for window_us in (250_000, 1_000_000):
        j = 0
        for i, (t, _) in enumerate(grants):
            while j < len(grants) and grants[j][0] < t + window_us:
                j += 1
            rate = max(r for _, r in grants[i:j])
            assert j - i <= rate * window_us / 1e6 + BURST, (t, j - i, rate)


async def test_max_mbps_is_one_byte_budget_for_every_worker_on_the_account(
    conn: Connection,
) -> None:
    """Two workers, two PUTs each, taking 256 KiB pieces: the account's bytes stay within
    rate x W + burst (plus the grant each worker may hold), at one round trip per MiB."""
    keys = BudgetKeys(account_digest("novita", "e", {"k": "bytes"}))
    rate = 8e6  # --max-mbps 8
    workers = [SharedBytes(conn, keys, rate), SharedBytes(conn, keys, rate)]
    released: list[tuple[float, int]] = []
    start = time.monotonic()
    until = start + 0.6

    async def put(budget: SharedBytes) -> None:
        while time.monotonic() < until:
            await budget.take(PIECE)
            released.append((time.monotonic(), PIECE))

    async with anyio.create_task_group() as tg:
        for budget in workers:
            for _ in range(2):
                tg.start_soon(put, budget)
    burst = max(GRANT_BYTES, bandwidth.default_burst(rate)) + len(workers) * GRANT_BYTES
    released.sort()
    for i, (at, _) in enumerate(released):
        taken = sum(n for t, n in released[i:] if t < at + 1.0)
        assert taken <= rate * min(1.0, released[-1][0] - at) + burst, (at - start, taken)
    total = sum(n for _, n in released)
    grants = sum(b.grants for b in workers)
    span = released[-1][0] - released[0][0]
    # Used, not only held (loose: a loaded machine delays a grant's round trip).
    assert total >= 0.6 * rate * span, (total, span)
    assert grants * GRANT_BYTES >= total and grants <= total / GRANT_BYTES + len(workers)
