"""Scenario as its SDK and own client show it, and each gap played both ways.

F1, F6, F8, F10 and F12 are the differences of docs/fidelity/scenario.md.

Every test runs the adapter against the in-process emulator; each gap's
emulator setting is named in docs/fidelity/scenario.md beside the test that
plays it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ingest.errors import Action, TransferError
from ingest.item import Source
from ingest.providers.base import Landed, Target
from ingest.providers.scenario import BASE64_LIMIT, ScenarioProvider, multipart
from ingest.providers.scenario.multipart import PART_SIZE
from ingest.providers.scenario.wire import classify
from ingest.sim import SimServer
from ingest.sim.scenario_world import ScenarioWorld, attached_by_sha, model_json, world_of
from tests.unit.test_scenario_adapter import (
    MODEL,
    adapter,
    emulator,
    make_source,
    response,
    sha,
    upload,
)

pytestmark = pytest.mark.anyio
ATTACH = "POST /v1/models/{modelId}/training-images"


@pytest.fixture(autouse=True)
def no_poll_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_wait(_seconds: float) -> None:
        return None

    monkeypatch.setattr(multipart, "_poll_sleep", no_wait)


def captioned(tmp: Path, index: int, size: int, caption: str) -> Source:
    source = make_source(tmp, index, size=size)
    return dataclasses.replace(source, item=dataclasses.replace(source.item, caption=caption))


async def land(provider: ScenarioProvider, source: Source) -> str:
    """Upload one image the way the engine does: acquire, transfer, finalize (assets mode)."""
    remote_id = await upload(provider, source)
    if provider.caps.finalize:
        target = Target(remote_id=remote_id, url=None, content_type="image/png", lease=None)
        [outcome] = await provider.finalize([(source, target)])
        assert isinstance(outcome, Landed), outcome
    return remote_id


def api_stats(sim: SimServer) -> dict[str, dict[str, int]]:
    return sim.state.stats().api_requests


# -- F1: base64 only below 3.5 MB, never a JSON body over 6 MB ------------------


@pytest.mark.parametrize("mode", ["assets", "inline"])
async def test_a_5_mb_image_lands_and_no_json_body_reaches_6_mb(tmp_path: Path, mode: str) -> None:
    large = make_source(tmp_path, 1, size=5_000_000)
    under = make_source(tmp_path, 2, size=BASE64_LIMIT - 1)  # the largest sent as JSON
    async with emulator() as sim, adapter(sim, mode=mode) as provider:
        ids = [await land(provider, large), await land(provider, under)]
        world = world_of(sim)
        assert attached_by_sha(sim) == {sha(large): 1, sha(under): 1}
        assert world.assets[ids[0]].source == "multipart"
        assert world.assets[ids[1]].source == "uploaded"
        assert world.json_too_long == 0
        assert 4_600_000 < world.largest_json < 6_000_000  # 3.5 MB of image, as base64
        stats = api_stats(sim)
    assert stats["POST /v1/uploads"] == {"200": 1}


@pytest.mark.parametrize("mode", ["assets", "inline"])
async def test_a_413_on_json_falls_back_to_multipart_once(tmp_path: Path, mode: str) -> None:
    # A cap below Scenario's client's: the "documented 4 MB" read as 4 MB of body.
    first, second = (make_source(tmp_path, i, size=3_200_000 + i) for i in (1, 2))
    async with emulator(json_body_limit=4_000_000) as sim, adapter(sim, mode=mode) as provider:
        await land(provider, first)
        assert provider.json_cap == first.size
        await land(provider, second)  # as large: in parts from its acquire on, no second 413
        assert attached_by_sha(sim) == {sha(first): 1, sha(second): 1}
        assert world_of(sim).json_too_long == 1
        stats = api_stats(sim)
    json_route = "POST /v1/assets" if mode == "assets" else ATTACH
    assert stats[json_route]["413"] == 1
    assert stats["POST /v1/uploads"] == {"200": 2}


async def test_a_413_fallback_that_is_retried_continues_the_same_upload(tmp_path: Path) -> None:
    source = make_source(tmp_path, 3, size=PART_SIZE + 1000)  # two parts
    async with emulator(json_body_limit=4_000_000) as sim, adapter(sim) as provider:
        provider.json_cap = BASE64_LIMIT * 10  # as if the size were under the cap: JSON first
        target = await provider.acquire(source)
        sim.set_faults("api.route=/action,api.503=1")
        with pytest.raises(TransferError) as info:
            await provider.transfer(source, target)  # 413, parts PUT, complete refused
        assert info.value.action is Action.RETRY
        sim.set_faults("")
        landed = await provider.transfer(source, target)  # the engine's retry, same target
        assert world_of(sim).assets[landed.remote_id].sha256 == sha(source)
        stats = api_stats(sim)
        puts = sim.state.stats().storage_puts
    assert stats["POST /v1/uploads"] == {"200": 1}  # one upload, not a second one
    assert stats["POST /v1/assets"] == {"413": 1}
    assert puts == {"200": 2}


# -- gap: bare base64 or a data URL in POST /assets -----------------------------------------


@pytest.mark.parametrize(
    ("accept", "assets_calls"),
    [("either", {"200": 2}), ("data_url", {"200": 2}), ("base64", {"400": 1, "200": 2})],
)
async def test_assets_work_whichever_image_encoding_the_api_takes(
    tmp_path: Path, accept: str, assets_calls: dict[str, int]
) -> None:
    sources = [make_source(tmp_path, i, size=4000) for i in range(2)]
    async with emulator(asset_image=accept, record_requests=True) as sim, adapter(sim) as provider:
        for source in sources:
            await land(provider, source)
        assert attached_by_sha(sim) == {sha(s): 1 for s in sources}
        first = next(r for r in world_of(sim).requests if r["path"] == "/assets")
    assert api_stats(sim)["POST /v1/assets"] == assets_calls
    assert first["json"]["image"]["head"].startswith("data:image/png;base64,")  # tried first
    assert provider._json.bare_base64 is (accept == "base64")


# -- F6 and its gaps: where and when the asset id of an upload shows -----------------


@pytest.mark.parametrize(
    ("source_of_id", "when", "polls"),
    [
        ("both", "imported", {"GET /v1/jobs/{jobId}": {"200": 3}}),
        ("job", "imported", {"GET /v1/jobs/{jobId}": {"200": 3}}),
        (
            "upload",
            "imported",
            {"GET /v1/jobs/{jobId}": {"200": 3}, "GET /v1/uploads/{uploadId}": {"200": 1}},
        ),
        ("both", "early", {"GET /v1/jobs/{jobId}": {"200": 3}}),
        (
            "upload",
            "early",
            {"GET /v1/jobs/{jobId}": {"200": 3}, "GET /v1/uploads/{uploadId}": {"200": 1}},
        ),
    ],
)
async def test_the_asset_id_is_read_from_the_job_or_the_upload(
    tmp_path: Path, source_of_id: str, when: str, polls: dict[str, dict[str, int]]
) -> None:
    source = make_source(tmp_path, 4, size=BASE64_LIMIT + 10)
    settings = {"entity_id_from": source_of_id, "entity_id_when": when, "pending_polls": 2}
    async with emulator(**settings) as sim, adapter(sim) as provider:
        await land(provider, source)  # "early" attaches only once imported (else a 400)
        assert attached_by_sha(sim) == {sha(source): 1}
        stats = api_stats(sim)
    assert {
        k: v for k, v in stats.items() if k.startswith("GET /v1/") and "models" not in k
    } == polls
    assert stats[ATTACH] == {"200": 1}


async def test_a_job_that_is_gone_hands_over_to_the_upload(tmp_path: Path) -> None:
    source = make_source(tmp_path, 5, size=BASE64_LIMIT + 10)
    async with emulator(pending_polls=1) as sim, adapter(sim) as provider:
        target = await provider.acquire(source)
        world_of(sim).jobs.clear()  # the job route answers 404 from now on
        landed = await provider.transfer(source, target)
        assert world_of(sim).assets[landed.remote_id].sha256 == sha(source)
        stats = api_stats(sim)
    assert stats["GET /v1/jobs/{jobId}"] == {"404": 1}
    assert stats["GET /v1/uploads/{uploadId}"] == {"200": 2}


# -- F8: captions arrive as descriptions ----------------------------------------------


@pytest.mark.parametrize("mode", ["assets", "inline"])
async def test_captions_arrive_as_descriptions(tmp_path: Path, mode: str) -> None:
    small = captioned(tmp_path, 6, 3000, "a red cube on a table")
    large = captioned(tmp_path, 7, BASE64_LIMIT + 10, "the same cube, closer")
    plain = make_source(tmp_path, 8, size=3000)
    async with emulator() as sim, adapter(sim, mode=mode) as provider:
        ids = [await land(provider, s) for s in (small, large, plain)]
        world = world_of(sim)
        descriptions = [world.assets[i].description for i in ids]
        shown = {i["id"]: i["description"] for i in _training_images(world)}
        stats = api_stats(sim)
    assert descriptions == ["a red cube on a table", "the same cube, closer", ""]
    assert [shown[i] for i in ids] == descriptions
    assert stats["PUT /v1/assets/{assetId}"] == {"200": 2}  # none for an item without caption


def _training_images(world: ScenarioWorld) -> list[dict[str, Any]]:
    return list(model_json(world.models[MODEL], world, images=True)["trainingImages"])


async def test_a_retried_description_does_not_make_a_second_asset(tmp_path: Path) -> None:
    source = captioned(tmp_path, 9, 3000, "once")
    async with emulator() as sim, adapter(sim) as provider:
        target = await provider.acquire(source)
        sim.set_faults("api.route=/assets/,api.503=1")  # PUT /v1/assets/{id} only
        with pytest.raises(TransferError) as info:
            await provider.transfer(source, target)
        assert info.value.action is Action.RETRY
        sim.set_faults("")
        landed = await provider.transfer(source, target)
        assert [a.description for a in world_of(sim).assets.values()] == ["once"]
        assert landed.remote_id in world_of(sim).assets
        stats = api_stats(sim)
    assert stats["POST /v1/assets"] == {"200": 1}
    assert stats["PUT /v1/assets/{assetId}"] == {"503": 1, "200": 1}


# -- F10: when to come back, and whether to --------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "action", "retry_after"),
    [
        (429, {"message": "slow", "remainingSeconds": 7}, {}, Action.RETRY, 7.0),
        (429, {"message": "slow", "details": {"remainingSeconds": 4}}, {}, Action.RETRY, 4.0),
        (429, {"message": "slow", "remainingSeconds": 7}, {"Retry-After": "2"}, Action.RETRY, 2.0),
        (429, {"message": "slow"}, {"retry-after-ms": "1500"}, Action.RETRY, 1.5),
        (409, {"message": "locked"}, {"x-should-retry": "true"}, Action.RETRY, None),
        (503, {"message": "down"}, {"x-should-retry": "false"}, Action.FAIL_ITEM, None),
        (401, {"message": "who"}, {"x-should-retry": "true"}, Action.STOP, None),
    ],
)
def test_remaining_seconds_and_should_retry(
    status: int, body: Any, headers: dict[str, str], action: Action, retry_after: float | None
) -> None:
    err = classify(response(status, body, headers), provider="scenario", op="transfer")
    assert (err.action, err.retry_after) == (action, retry_after)


@pytest.mark.parametrize(("where", "should_retry"), [("top", "none"), ("details", "false")])
async def test_the_emulators_429_fields_reach_the_adapter(
    tmp_path: Path, where: str, should_retry: str
) -> None:
    source = make_source(tmp_path, 10, size=3000)
    settings = {"remaining_seconds_at": where, "should_retry": should_retry}
    async with emulator(**settings) as sim, adapter(sim) as provider:
        target = await provider.acquire(source)
        sim.set_faults("api.429=1,api.retry_after=none")
        with pytest.raises(TransferError) as info:
            await provider.transfer(source, target)
    assert info.value.retry_after == 2.0
    assert info.value.action is (Action.FAIL_ITEM if should_retry == "false" else Action.RETRY)
