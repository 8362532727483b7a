"""Finalize batches fill across finalizers (engine/batching.py), on a FakeClock.

Found at a stop: Scenario made 2.00 API calls per file on 2,000 files (a
bare loop 1.1): every landed asset woke an idle finalizer at once, so attach
calls of up to 10 went out with one asset. The last test runs the engine
against the in-process emulator and fails on the old code.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from ingest.clock import FakeClock
from ingest.config import RunSettings
from ingest.engine import Engine, EngineSettings
from ingest.engine.batching import LINGER_S, Gatherer, linger_for
from ingest.journal import Header, Journal
from ingest.sim.scenario_world import world_of
from tests.unit.test_scenario_adapter import MODEL, adapter, emulator, make_source

pytestmark = pytest.mark.anyio


class Uploads:
    """Stands for the engine's `in_flight` count."""

    def __init__(self, count: int) -> None:
        self.count = count

    def more(self) -> bool:
        return self.count > 0


async def gathered(
    arrivals: list[tuple[float, list[int]]],
    *,
    in_flight: Uploads,
    finalizers: int = 2,
    size: int = 10,
) -> list[tuple[float, list[int]]]:
    """(virtual time, batch) for items sent in bursts: (delay after the previous, items).

    Few bursts: each FakeClock step waits for every task to block (anyio polls that).
    """
    clock = FakeClock(start=0.0)
    gatherer = Gatherer[int](size, clock, LINGER_S, in_flight.more)
    send, receive = anyio.create_memory_object_stream[int](20)
    batches: list[tuple[float, list[int]]] = []

    async def finalizer(stream: MemoryObjectReceiveStream[int]) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(gatherer.collect, stream)
            while batch := await gatherer.batch():
                batches.append((clock.now(), batch))
                await clock.sleep(0.01)  # the attach call

    async with anyio.create_task_group() as tg:
        for _ in range(finalizers):
            tg.start_soon(finalizer, receive.clone())
        receive.close()
        async with send:
            for delay, items in arrivals:
                await clock.sleep(delay)
                for item in items:
                    await send.send(item)
            in_flight.count = 0
    return batches


async def test_items_landing_while_uploads_are_in_flight_fill_batches_of_ten() -> None:
    bursts = [(0.02, list(range(at, at + 5))) for at in range(0, 30, 5)]  # 5 every 20 ms
    batches = await gathered(bursts, in_flight=Uploads(8))
    assert [b for _, b in batches] == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]


async def test_a_short_batch_waits_at_most_the_linger() -> None:
    # Three land, then the next only after a second: the three go at LINGER_S, not later.
    batches = await gathered([(0.0, [0, 1, 2]), (1.0, [3])], in_flight=Uploads(1))
    assert [b for _, b in batches] == [[0, 1, 2], [3]]
    assert batches[0][0] == pytest.approx(LINGER_S)


async def test_nothing_in_flight_or_the_end_of_the_stream_sends_at_once() -> None:
    batches = await gathered([(0.0, [0]), (1.0, [1])], in_flight=Uploads(0))
    assert batches == [(0.0, [0]), (1.0, [1])]  # no upload could add to them: no wait
    ended = await gathered([(0.0, [0])], in_flight=Uploads(5))  # then the stream ends
    assert ended == [(0.0, [0])]


async def test_no_item_is_lost_or_repeated_across_many_finalizers() -> None:
    sizes = [3, 17, 1, 9, 25, 4, 11, 30]  # bursts larger than the stream's bound of 20 too
    starts = [sum(sizes[:n]) for n in range(len(sizes))]
    arrivals = [
        ((n % 3) * 0.1, list(range(at, at + k)))
        for n, (at, k) in enumerate(zip(starts, sizes, strict=True))
    ]
    batches = await gathered(arrivals, in_flight=Uploads(3), finalizers=4)
    items = [i for _, b in batches for i in b]
    assert sorted(items) == list(range(sum(sizes))) and all(len(b) <= 10 for _, b in batches)


def test_the_linger_is_bounded_by_a_short_url_lifetime() -> None:
    assert (linger_for(None), linger_for(900.0), linger_for(2.0)) == (LINGER_S, LINGER_S, 0.1)


async def test_scenario_attaches_in_batches_against_the_emulator(tmp_path: Path) -> None:
    sources = [make_source(tmp_path, i) for i in range(20)]
    header = Header(provider="scenario", manifest=str(tmp_path / "m"))
    journal, state = Journal.open(tmp_path / "j", header)
    run = RunSettings(put_concurrency=4, api_concurrency=4)  # two finalizers
    async with emulator() as sim, adapter(sim, mode="assets") as provider:
        with journal:
            engine = Engine(provider, journal, state, EngineSettings(run))
            await engine.run(iter([s.item for s in sources]))
        assert len(world_of(sim).models[MODEL].images) == 20
    assert engine.counters.done == 20
    # One create a file and attach calls of up to 10 (it was 20 calls of one: 2.0 per file).
    assert engine.counters.api_calls / 20 <= 1.25, engine.counters.api_calls
