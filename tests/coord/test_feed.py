"""One engine across a worker's chunks (`coord.feed`), against the in-process emulator and a
real redis-server: the engine is made once for every chunk, each chunk is acknowledged while
the engine goes on with the next, and a chunk whose lease is lost stops at once (nothing more
of it starts) and goes back, to be finished by whoever takes it, every item uploaded once.
Well under a second each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from ingest.coord import landing
from ingest.coord.lease import Leases
from ingest.coord.worker import Coordinator, Worker
from ingest.engine.outcomes import ItemDone, Observer
from ingest.sim import SimSettings
from ingest.sim.faults import FaultPlan
from ingest.sim.server import SimServer, serve
from tests.images import make_dataset, write_jsonl_manifest

pytestmark = pytest.mark.anyio

ITEMS, CHUNK = 24, 4
KEY = "k-feed"


def _worker(
    manifest: Path,
    sim: SimServer,
    coordinator: Coordinator,
    observer: Observer | None = None,
    **flags: Any,
) -> Worker:
    from ingest.api import wiring

    plan = wiring.prepare(
        manifest, provider="novita", config=None, format=None,
        settings={"base_url": sim.base_url, **flags},
    )  # fmt: skip
    return Worker(plan, coordinator, observer=observer)


def _puts(sim: SimServer) -> int:
    return sum(obj.puts for obj in sim.state.objects.values())


async def test_one_engine_serves_every_chunk_and_each_is_acked_while_it_reads_on(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", KEY)
    made: list[landing.ShippingEngine] = []
    init = landing.ShippingEngine.__init__

    def counted(self: landing.ShippingEngine, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(landing.ShippingEngine, "__init__", counted)
    reading: list[bool] = []  # at each ack: was the engine still reading the manifest?
    ack = Leases.ack

    async def ack_seen(self: Leases, lease: Any) -> bool:
        engine = worker.last_engine
        reading.append(engine is not None and not engine.snapshot().reading_done)
        return await ack(self, lease)

    monkeypatch.setattr(Leases, "ack", ack_seen)
    # Chunks longer than the reader's lead (half a chunk's read batch, the stream, 2 workers),
    # else the engine ends rather than hold more than two unfinished chunks (`feed.HELD`).
    items, chunk = 3 * 12, 12
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", items), tmp_path / "m.jsonl")
    async with serve(SimSettings(api_keys=frozenset({KEY}))) as sim:
        coordinator = Coordinator(redis_url, "feed", chunk_lines=chunk)
        worker = _worker(manifest, sim, coordinator, put_concurrency=1, lookahead=1)
        result = await worker.run()
        assert result.complete and result.chunks == 3
        assert len(made) == 1  # it was one engine per chunk: three
        assert reading[:2] == [True, True]  # acked on the way, not once the engine ended
        assert len(sim.state.objects) == items == _puts(sim)


async def test_a_lost_lease_stops_its_chunk_at_once_and_the_chunk_goes_back(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", KEY)
    items, chunk = 8, 6  # two chunks: lines 1-6, 7-8
    by_engine: list[tuple[int, int]] = []  # (engine, line) of each item done

    class Loser(Observer):
        def item_done(self, done: ItemDone) -> None:
            by_engine.append((id(worker.last_engine), done.line))
            feed = worker._feed
            if done.line == 2 and feed is not None:  # another worker took the first chunk
                feed.fed[0].lease.lost = True  # (as `Leases.renew` marks it)

    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", items), tmp_path / "m.jsonl")
    # PUTs of 40-120 ms, one at a time (one more signed, waiting); the fence looks every 50 ms.
    faults = FaultPlan.parse("put.latency=0.08")
    async with serve(SimSettings(api_keys=frozenset({KEY}), faults=faults)) as sim:
        coordinator = Coordinator(redis_url, "feed-lost", lease_s=0.3, chunk_lines=chunk)
        worker = _worker(manifest, sim, coordinator, Loser(), put_concurrency=1, lookahead=0)
        with anyio.fail_after(10):
            result = await worker.run()
    first = by_engine[0][0]
    mine = [line for engine, line in by_engine if engine == first]
    # After line 2, what was in flight (lines 3 and 4: put_concurrency + lookahead), not
    # the whole chunk (the fence's 50 ms against 40-120 ms a PUT: [1, 2, 3, 4] when quiet).
    assert sorted(mine) == list(range(1, len(mine) + 1)) and len(mine) < chunk, mine
    assert result.complete and result.counts.done == items
    assert sorted(line for _, line in by_engine) == list(range(1, items + 1))
    assert len(sim.state.objects) == items == _puts(sim)  # its taker did only lines 5 and 6
