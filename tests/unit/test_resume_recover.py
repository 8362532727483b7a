"""Resume of the items a killed run left in flight (journaled `acq` only).

Found by a newcomer's run (finding W8 of issue 11): after three
`kill -9`s, ModelHunter uploaded again, under new file ids, 2 items whose PUT
had landed, and the Autoenhance order ended with 1,102 images for 1,010 files
(91 never uploaded, 1 uploaded twice); repeated kills re-acquired the same
first items each time. Here: the engine asks a provider that can tell
(`Recovers`) about the acquired id before uploading anew, routes such items
ahead of the new ones, and lets the provider remove the empty records killed
runs left; the ModelHunter and Autoenhance adapters answer against the
in-process emulator.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import pytest

from ingest.clock import Clock, FakeClock
from ingest.config import RunSettings
from ingest.errors import Action
from ingest.item import Source
from ingest.journal import Journal, records
from ingest.journal.header import Header
from ingest.providers.base import Landed, Recovers, Target, Tidies
from ingest.sim import SimServer
from ingest.sim.modelhunter import files_of
from tests.contract.harness import HARNESSES, KEY, adapter, available, emulator, make_source
from tests.fakeprovider import FakeProvider, refusal, run_engine, write_manifest
from tests.images import make_image

pytestmark = pytest.mark.anyio


class RecoveringFake(FakeProvider):
    """A fake provider that can tell which acquired ids hold their bytes."""

    def __init__(self, clock: Clock, there: set[str], *, finalize: bool = False) -> None:
        super().__init__(clock, finalize=finalize)
        self.there = there
        self.asked: list[str] = []
        self.tidied = 0

    async def recover(self, source: Source, acquired: Target) -> Landed | None:
        await self._step("recover", source.item.key)
        self.asked.append(acquired.remote_id)
        return Landed(remote_id=acquired.remote_id) if acquired.remote_id in self.there else None

    async def tidy(self) -> int:
        self.tidied += 1
        return 0


def _manifest(tmp_path: Path, keys: list[str]) -> Path:
    for index, key in enumerate(keys):
        make_image(tmp_path / f"{key}.png", "png", 2_000, seed=index)
    return write_manifest(tmp_path / "m.jsonl", [{"path": f"{k}.png", "id": k} for k in keys])


def _killed_run(tmp_path: Path, manifest: Path, acquired: dict[str, str]) -> None:
    """The journal a run leaves when killed after signing these items' URLs (key -> id)."""
    journal, _state = Journal.open(
        tmp_path / "journal", Header(provider="fake", manifest=str(manifest))
    )
    with journal:
        journal.record(records.run_started(1.0, 4242))
        for key, remote_id in acquired.items():
            journal.record(records.acquired(key, remote_id))
        journal.sync()


def test_the_fake_is_what_the_engine_looks_for() -> None:
    assert isinstance(RecoveringFake(FakeClock(), set()), Recovers)
    assert not isinstance(FakeProvider(FakeClock()), Recovers)


@pytest.mark.parametrize("finalize", [False, True])
async def test_an_acquired_id_whose_bytes_landed_is_done_under_it(
    tmp_path: Path, finalize: bool
) -> None:
    manifest = _manifest(tmp_path, ["landed", "empty"])
    _killed_run(tmp_path, manifest, {"landed": "old-landed", "empty": "old-empty"})
    clock = FakeClock()
    provider = RecoveringFake(clock, {"old-landed"}, finalize=finalize)
    ran = await run_engine(tmp_path, provider, manifest, clock)
    assert ran.outcome.stop_reason is None
    assert sorted(provider.asked) == ["old-empty", "old-landed"]
    # Landed: done under the id the killed run acquired; no new id, no second upload.
    assert provider.calls("acquire", "landed") == provider.calls("transfer", "landed") == []
    assert provider.calls("finalize", "landed") == []  # recover answers the finished item
    # Not there: uploaded anew, once.
    assert len(provider.calls("acquire", "empty")) == len(provider.calls("transfer", "empty")) == 1
    assert ran.journal.counts()["done"] == 2
    assert provider.tidied == 1  # once, before any item, on a resumed run


async def test_a_fresh_run_tidies_nothing(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, ["a"])
    clock = FakeClock()
    provider = RecoveringFake(clock, set())
    await run_engine(tmp_path, provider, manifest, clock)
    assert provider.tidied == 0 and provider.asked == []


async def test_an_item_class_answer_about_the_old_id_means_upload_anew(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, ["it"])
    _killed_run(tmp_path, manifest, {"it": "old"})
    clock = FakeClock()
    provider = RecoveringFake(clock, {"old"})
    provider.fail("recover", "it", refusal(Action.FAIL_ITEM, "gone", op="recover"))
    ran = await run_engine(tmp_path, provider, manifest, clock)
    assert len(provider.calls("acquire", "it")) == 1
    assert ran.journal.is_done("it") and ran.outcome.counters.failed == 0


async def test_items_left_in_flight_are_redone_before_new_ones(tmp_path: Path) -> None:
    """The killed run's items come first, whatever their place in the manifest."""
    keys = [f"n{i}" for i in range(6)] + ["late-a", "late-b"]
    manifest = _manifest(tmp_path, keys)
    _killed_run(tmp_path, manifest, {"late-a": "x-a", "late-b": "x-b"})
    clock = FakeClock()
    provider = FakeProvider(clock)  # cannot tell: the two are uploaded anew, first
    one_at_a_time = RunSettings(put_concurrency=1, lookahead=0, api_concurrency=1)
    ran = await run_engine(tmp_path, provider, manifest, clock, run=one_at_a_time)
    assert [c.key for c in provider.calls("acquire")][:2] == ["late-a", "late-b"]
    assert ran.journal.counts()["done"] == len(keys)


# --- the adapters against the in-process emulator --------------------------------------

RECOVERING = [name for name in ("modelhunter", "autoenhance") if name in available()]


def _as_journaled(target: Target) -> Target:
    """What a resume knows of a target: its id and extras; the URL was never journaled."""
    return Target(target.remote_id, None, target.content_type, None, dict(target.extra))


async def _order(sim: SimServer, order_id: str) -> set[str]:
    """The image ids of an Autoenhance order, as the emulator's API lists them."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{sim.base_url}/v3/orders/{order_id}", headers={"x-api-key": KEY}) as resp,
    ):
        if resp.status == 404:
            return set()
        return {image["image_id"] for image in (await resp.json())["images"]}


@pytest.mark.parametrize("name", RECOVERING)
async def test_the_adapter_tells_a_landed_id_from_an_empty_one(tmp_path: Path, name: str) -> None:
    harness = HARNESSES[name]
    async with emulator(harness) as sim, adapter(harness, sim) as provider:
        assert isinstance(provider, Recovers)
        put, never = make_source(tmp_path, 1), make_source(tmp_path, 2)
        put_target = await provider.acquire(put)
        await provider.transfer(put, put_target)
        never_target = await provider.acquire(never)
        answers = []
        for _again in range(2):  # a kill during the resume: asked again, the same answers
            got = await provider.recover(put, _as_journaled(put_target))
            assert got is not None and got.remote_id == put_target.remote_id
            answers.append(got)
            assert await provider.recover(never, _as_journaled(never_target)) is None
        if name == "modelhunter":
            files = files_of(sim)
            assert files[put_target.remote_id].completed is not None
            assert files[never_target.remote_id].completed is None  # no delete call exists
        else:
            assert [a.extra for a in answers] == [put_target.extra] * 2
            order = put_target.extra["order_id"]
            assert await _order(sim, order) == {put_target.remote_id}  # the empty one is deleted


async def test_autoenhance_tidy_deletes_the_waiting_images_of_its_own_order(
    tmp_path: Path,
) -> None:
    harness = HARNESSES["autoenhance"]
    async with emulator(harness) as sim, adapter(harness, sim) as provider:
        assert isinstance(provider, Tidies)
        put = make_source(tmp_path, 1)
        put_target = await provider.acquire(put)
        await provider.transfer(put, put_target)
        for index in (2, 3):  # created as a kill came: never journaled, never uploaded
            await provider.acquire(make_source(tmp_path, index))
        assert await provider.tidy() == 2
        assert await _order(sim, put_target.extra["order_id"]) == {put_target.remote_id}
        assert await provider.tidy() == 0


async def test_autoenhance_leaves_a_named_order_alone(tmp_path: Path) -> None:
    """An order given with order_id may be shared: another client's waiting image is its upload."""
    harness = HARNESSES["autoenhance"]
    named = dataclasses.replace(harness, settings={"order_id": "shared-order"})
    async with emulator(named) as sim, adapter(named, sim) as provider:
        assert isinstance(provider, Tidies)
        await provider.acquire(make_source(tmp_path, 1))
        assert await provider.tidy() == 0
        assert len(await _order(sim, "shared-order")) == 1
