"""Pushed pauses against a real redis-server: no budget script per call, yet a 429 pauses all.

Two workers with no rate, each with its `PauseWatch`: while both watches are
live they start calls without asking the budget (the poll they replaced made
one script every 50 ms); one worker's 429 reaches the other by pub/sub, which
starts nothing until the server's pause has ended; a pause set before a
watch subscribed is obeyed once it does, and so is one set while its
subscription was cut (CLIENT KILL: no call starts until the watch is
confirmed again, the pacer polls meanwhile); a watch that is not live leaves the
pacer polling. Real time: well under a second each.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import pytest

from ingest.clock import SYSTEM
from ingest.coord.budget import Budget, SharedPacer
from ingest.coord.connection import Connection, connect
from ingest.coord.names import BudgetKeys, account_digest
from ingest.coord.pushed import PauseWatch
from ingest.pacing import Pacer
from tests.coord.observe import until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def conn(redis_url: str) -> AsyncIterator[Connection]:
    async with connect(redis_url) as c:
        yield c


class CountingBudget(Budget):
    """The budget, counting its takes (each one script at the server)."""

    takes = 0

    async def take(self, successes: int = 0):  # type: ignore[no-untyped-def]
        self.takes += 1
        return await super().take(successes)


def pacer(conn: Connection, keys: BudgetKeys) -> SharedPacer:
    budget = CountingBudget(conn, keys, None)
    return SharedPacer(budget, Pacer(None, clock=SYSTEM, learns=False), SYSTEM, max_pause_s=60)


async def server_us(conn: Connection) -> int:
    seconds, micros = await conn.client.time()
    return int(seconds) * 1_000_000 + int(micros)


def takes(p: SharedPacer) -> int:
    assert isinstance(p.budget, CountingBudget)
    return p.budget.takes


async def test_a_429_reaches_the_other_worker_by_push_and_no_call_asks_the_budget(
    conn: Connection,
) -> None:
    keys = BudgetKeys(account_digest("novita", "e", {"k": "pushed"}))
    one, two = pacer(conn, keys), pacer(conn, keys)
    watches = [PauseWatch(conn, p, SYSTEM) for p in (one, two)]
    async with anyio.create_task_group() as tg:
        for w in watches:
            tg.start_soon(w.run)
        await until(lambda: all(w.live(SYSTEM.now()) for w in watches))
        before = takes(two)
        started = time.monotonic()
        for _ in range(120):  # 0.18 s of calls: the 50 ms poll asked the budget 4 times
            await two.wait()
            await anyio.sleep(0.0015)
        assert time.monotonic() - started >= 0.18
        assert takes(two) == before  # not one script for 120 calls
        one.on_throttle(0.25)  # a 429 with Retry-After: 0.25 at the first worker
        await one.push()
        pause_end = int(str(await conn.client.get(keys.pause)))
        await until(lambda: watches[1].heard == 1)
        await two.wait()  # the second worker never saw the 429
        assert await server_us(conn) >= pause_end
        assert takes(two) == before  # the push alone held it
        tg.cancel_scope.cancel()


async def test_a_pause_set_before_the_watch_subscribed_is_obeyed(conn: Connection) -> None:
    keys = BudgetKeys(account_digest("novita", "e", {"k": "pushed-late"}))
    end = await pacer(conn, keys).budget.pause(0.3)  # another worker's, before this one came
    late = pacer(conn, keys)
    watch = PauseWatch(conn, late, SYSTEM)
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.run)
        await until(lambda: watch.live(SYSTEM.now()))
        assert watch.subscribed == 1
        asked = takes(late)
        await late.wait()
        assert await server_us(conn) >= end
        assert takes(late) == asked  # the watch's look at subscribing told it
        tg.cancel_scope.cancel()


async def test_without_a_live_watch_the_pacer_polls(conn: Connection) -> None:
    keys = BudgetKeys(account_digest("novita", "e", {"k": "pushed-off"}))
    p = pacer(conn, keys)
    PauseWatch(conn, p, SYSTEM)  # never run: never live
    started = time.monotonic()
    while time.monotonic() - started < 0.12:
        await p.wait()
        await anyio.sleep(0.002)
    assert takes(p) >= 2  # one look per 50 ms


async def test_no_call_starts_during_a_pause_set_just_after_the_subscription_was_killed(
    conn: Connection,
) -> None:
    keys = BudgetKeys(account_digest("novita", "e", {"k": "pushed-killed"}))
    p = pacer(conn, keys)
    watch = PauseWatch(conn, p, SYSTEM)
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch.run)
        await until(lambda: watch.live(SYSTEM.now()))
        await conn.client.client_kill_filter(_type="pubsub")  # redis-py resubscribes by itself
        end = await pacer(conn, keys).budget.pause(0.3)  # unheard: not subscribed at the time
        assert watch.subscribed == 1  # not yet confirmed again (it used to count as live)
        await p.wait()  # at once, as the next API call would
        assert await server_us(conn) >= end
        assert takes(p) >= 1  # the pacer asked the budget: the watch was not live
        await until(lambda: watch.subscribed == 2 and watch.live(SYSTEM.now()))  # and is again
        tg.cancel_scope.cancel()
