"""Landed, not finalized: a worker dies after its PUTs, the chunk's next taker only finalizes.

Against the in-process emulator and a real redis-server: the first worker's
completes (ModelHunter) or attaches (Scenario) are held unanswered (a stall
on that route), so its items stay journaled `up`; once the run's record
holds every one of them as landed, the worker is cancelled hard (its lease
left to lapse, as a killed process leaves it). The worker that reclaims the
chunk makes no PUT for those items and one finalize each, per the emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from ingest.cli.shared_run import _read
from ingest.coord.connection import connect
from ingest.coord.names import RunKeys
from ingest.coord.worker import run_worker
from ingest.sim import SimSettings
from ingest.sim.faults import FaultPlan
from ingest.sim.modelhunter import files_of
from ingest.sim.scenario_world import world_of
from ingest.sim.server import SimServer, serve
from ingest.sim.settings import ScenarioSimSettings
from tests.images import make_dataset, write_jsonl_manifest

pytestmark = pytest.mark.anyio
ITEMS, LEASE = 6, 0.6
KEY = "k-landed"


def _completes(sim: SimServer) -> tuple[int, list[int]]:
    """ModelHunter: files uploaded, and each file's successful completes."""
    files = files_of(sim).values()
    return len(sim.state.objects), sorted(f.completes for f in files)


def _attaches(sim: SimServer) -> tuple[int, list[int]]:
    """Scenario: assets made, and how often each one's bytes are a training image."""
    world = world_of(sim)
    return len(world.assets), sorted(world.attached_sha256().values())


@dataclass(frozen=True, slots=True)
class Case:
    route: str  # the finalize step's API route (stalled for the first worker)
    env: dict[str, str]
    finalized: Callable[[SimServer], tuple[int, list[int]]]
    base_path: str = ""
    settings: dict[str, str] = field(default_factory=dict)


CASES = {
    "modelhunter": Case("/complete", {"MODELHUNTER_API_KEY": KEY}, _completes),
    "scenario": Case(  # assets mode (the default): each asset uploaded, then attached
        "/training-images",
        {"SCENARIO_API_KEY": KEY, "SCENARIO_API_SECRET": "s-landed"},
        _attaches,
        base_path="/v1",
        settings={"model_id": "model_landed"},
    ),
}


@pytest.mark.parametrize("provider", sorted(CASES))
async def test_the_taker_finalizes_what_a_dead_worker_landed(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    case = CASES[provider]
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    paths = make_dataset(tmp_path / "img", ITEMS, max_size=2048)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    keys = RunKeys("landed")
    sim_settings = SimSettings(
        faults=FaultPlan.parse(f"api.stall=1,api.route={case.route}"),  # finalize: no answer
        scenario=ScenarioSimSettings(models=frozenset({"model_landed"})),
    )
    async with serve(sim_settings) as sim:
        where: dict[str, Any] = {"base_url": sim.base_url + case.base_path,
                                 "coordinator": redis_url, "run_name": keys.name,
                                 "lease_s": LEASE, "chunk_lines": ITEMS, **case.settings}  # fmt: skip
        async with connect(redis_url) as conn, anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_worker(manifest, provider=provider, **where))
            for _ in range(1500):  # until the run's record holds every item as landed (30 s)
                if await conn.client.hlen(keys.landed) == ITEMS:
                    break
                await anyio.sleep(0.02)
            else:
                pytest.fail("the first worker's items never all landed")
            tg.cancel_scope.cancel()  # cancelled hard: no hand-back, the lease lapses
        assert (await _read(redis_url, keys.name, False))["landed"] == ITEMS  # status shows it
        uploads, before = case.finalized(sim)
        assert uploads == ITEMS and sum(before) == 0  # every item landed, none finalized
        sim.set_faults(FaultPlan())
        taker = await run_worker(manifest, provider=provider, **where)
        assert taker.complete and taker.counts.done == ITEMS
        assert taker.resumed == ITEMS and taker.this_worker.puts == 0  # nothing uploaded again...
        assert case.finalized(sim) == (ITEMS, [1] * ITEMS)  # ...and one finalize each
        async with connect(redis_url) as conn:
            assert await conn.client.hlen(keys.landed) == 0  # done lines leave the hash
