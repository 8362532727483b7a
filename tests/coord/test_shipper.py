"""The shipper's batches against a real redis-server: by size at once, else FLUSH_S after the
first pending outcome, and nothing at all while nothing is pending (it used to flush every
0.2 s however few the outcomes). About half a second."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from ingest.coord import record
from ingest.coord.connection import connect
from ingest.coord.names import RunKeys
from ingest.coord.record import BATCH, Record, Shipper
from ingest.engine.outcomes import ItemDone
from ingest.providers.base import Landed
from tests.coord.observe import until

pytestmark = pytest.mark.anyio


def done(shipper: Shipper, line: int) -> None:
    shipper.item_done(ItemDone(f"k{line}", line, 10, Landed(remote_id=f"r{line}"), True))


async def test_full_batches_go_at_once_a_lone_outcome_after_flush_s_and_idle_costs_nothing(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connect(redis_url) as conn, anyio.create_task_group() as tg:
        shipper = Shipper(Record(conn, RunKeys("ship")))
        monkeypatch.setattr(record, "FLUSH_S", 0.05)
        tg.start_soon(shipper.run)
        await anyio.sleep(0.2)  # idle: four of the old flushes' periods
        assert shipper.flushes == 0
        monkeypatch.setattr(record, "FLUSH_S", 5.0)
        started = time.monotonic()
        for line in range(1, BATCH + 45):  # a full batch wakes the shipper: no 5 s wait
            done(shipper, line)
        await until(lambda: shipper.shipped == BATCH + 44)
        assert time.monotonic() - started < 4 and shipper.flushes == 1
        monkeypatch.setattr(record, "FLUSH_S", 0.1)
        started = time.monotonic()
        done(shipper, 1000)  # alone: it waits FLUSH_S for company, then goes
        await until(lambda: shipper.shipped == BATCH + 45)
        assert time.monotonic() - started >= 0.09 and shipper.flushes == 2
        assert (await shipper.record.counts()).done == BATCH + 45
        tg.cancel_scope.cancel()


class Busy(Record):
    """A record whose every ship sees 3 more outcomes arrive meanwhile (an engine at work)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shipper: Shipper | None = None
        self.ships: list[int] = []
        self._next = 10_000

    async def ship(self, kind: record.Kind, outcomes: Sequence[tuple[int, str]]) -> int:
        self.ships.append(len(outcomes))
        assert self.shipper is not None
        for _ in range(3 if self._next < 10_030 else 0):  # 30 at most
            self._next += 1
            done(self.shipper, self._next)
        return await super().ship(kind, outcomes)


async def test_a_flush_ships_what_was_pending_and_leaves_what_came_meanwhile(
    redis_url: str,
) -> None:
    async with connect(redis_url) as conn:
        busy = Busy(conn, RunKeys("busy"))
        shipper = busy.shipper = Shipper(busy)
        for line in range(1, BATCH + 11):
            done(shipper, line)
        await shipper.flush()  # it used to chase the arrivals: a script per 3 outcomes
        assert busy.ships == [BATCH, 10]
        assert shipper.shipped == BATCH + 10
        await shipper.flush()
        assert busy.ships == [BATCH, 10, 6]
        assert (await busy.counts()).done == BATCH + 16
