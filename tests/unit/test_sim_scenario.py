"""The emulator's Scenario routes: auth, models, assets, attaches, multipart uploads, control."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
import yarl

from ingest.sim import SimServer, SimSettings, serve
from ingest.sim.scenario import ALREADY_ATTACHED, TOO_MANY
from ingest.sim.scenario_wire import CLIENT_GONE
from ingest.sim.scenario_world import attached_by_sha, world_of
from ingest.sim.settings import ScenarioSimSettings
from ingest.sim.testing import raw_exchange
from tests.images import image_bytes

pytestmark = pytest.mark.anyio

MODEL = "model_unit"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"key-1:secret-1").decode()}


@asynccontextmanager
async def scenario(**overrides: Any) -> AsyncIterator[tuple[SimServer, aiohttp.ClientSession]]:
    settings = ScenarioSimSettings(**{"models": frozenset({MODEL}), **overrides})
    async with serve(SimSettings(scenario=settings)) as sim, aiohttp.ClientSession() as http:
        yield sim, http


async def call(
    http: aiohttp.ClientSession,
    sim: SimServer,
    method: str,
    path: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    hdrs = dict(AUTH if headers is None else headers)
    data = None
    if json is not None:  # a file object: aiohttp warns about multi-MB bytes bodies
        data, hdrs["Content-Type"] = io.BytesIO(orjson.dumps(json)), "application/json"
    async with http.request(method, f"{sim.base_url}/v1{path}", data=data, headers=hdrs) as resp:
        return resp.status, await resp.json(content_type=None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def new_asset(http: aiohttp.ClientSession, sim: SimServer, seed: int) -> str:
    status, body = await call(
        http,
        sim,
        "POST",
        "/assets",
        json={"image": b64(image_bytes("png", 2000, seed)), "name": "a.png"},
    )
    assert status == 200, body
    return str(body["asset"]["id"])


# -- auth ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer key-1",
        "Basic !!!notbase64",
        "Basic " + b64(b"no-colon"),
        "Basic " + b64(b"key-1:"),
        "Basic " + b64(b":secret-1"),
    ],
)
async def test_missing_or_malformed_credentials_are_401(header: str | None) -> None:
    async with scenario() as (sim, http):
        headers = {} if header is None else {"Authorization": header}
        status, body = await call(http, sim, "GET", f"/models/{MODEL}", headers=headers)
    assert status == 401
    assert body["message"]


@pytest.mark.parametrize(
    ("keys", "pair", "status"),
    [
        ({"key-1:secret-1"}, "key-1:secret-1", 200),
        ({"key-1:secret-1"}, "key-1:wrong", 401),
        ({"key-1"}, "key-1:anything", 200),
        ({"key-1"}, "key-2:secret-1", 401),
    ],
)
async def test_configured_keys(keys: set[str], pair: str, status: int) -> None:
    settings = SimSettings(
        api_keys=frozenset(keys), scenario=ScenarioSimSettings(models=frozenset({MODEL}))
    )
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        headers = {"Authorization": "Basic " + b64(pair.encode())}
        got, _ = await call(http, sim, "GET", f"/models/{MODEL}", headers=headers)
    assert got == status


# -- models ----------------------------------------------------------------------------


async def test_models_create_get_and_404() -> None:
    async with scenario() as (sim, http):
        status, body = await call(http, sim, "POST", "/models", json={"name": "Mine"})
        assert status == 200
        model_id = body["model"]["id"]
        assert model_id.startswith("model_") and len(model_id) == len("model_") + 22
        status, body = await call(http, sim, "GET", f"/models/{model_id}")
        assert status == 200
        assert body["model"]["trainingImages"] == []
        assert body["model"]["trainingImagesNumber"] == 0
        status, body = await call(http, sim, "GET", "/models/model_nope")
        assert status == 404
        assert "not found" in body["message"].lower()
        status, _ = await call(http, sim, "POST", "/models", json={"name": "x" * 65})
        assert status == 400


async def test_auto_create_models() -> None:
    async with scenario(auto_create_models=True) as (sim, http):
        status, body = await call(http, sim, "GET", "/models/model_fresh")
        assert status == 200
        assert body["model"]["id"] == "model_fresh"
        assert "model_fresh" in world_of(sim).models


# -- assets ----------------------------------------------------------------------------


@pytest.mark.parametrize("as_data_url", [False, True])
async def test_asset_from_base64_is_recorded_with_its_sha256(as_data_url: bool) -> None:
    raw = image_bytes("jpeg", 50_000, 3)
    image = f"data:image/jpeg;base64,{b64(raw)}" if as_data_url else b64(raw)
    async with scenario() as (sim, http):
        status, body = await call(
            http, sim, "POST", "/assets", json={"image": image, "name": "x.jpg"}
        )
        assert status == 200
        asset = body["asset"]
        assert asset["id"].startswith("asset_")
        assert asset["mimeType"] == "image/jpeg"
        obj = sim.state.objects[f"scenario-assets/{asset['id']}"]
    assert obj.sha256 == hashlib.sha256(raw).hexdigest()
    assert obj.size == len(raw)
    assert obj.puts == 1
    assert obj.provider == "scenario"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"name": "a.png"}, 400, "image"),
        ({"image": "%%%notbase64", "name": "a.png"}, 400, "base64"),
        ({"image": b64(b"just some text, no image at all"), "name": "a.txt"}, 400, "not an image"),
        ({"image": b64(b"BM" + bytes(100)), "name": "a.bmp"}, 400, "unsupported image type bmp"),
        ({"image": b64(image_bytes("png", 500, 1))}, 400, "name"),
        (
            {"image": "data:image/bmp;base64," + b64(image_bytes("png", 500, 1)), "name": "a"},
            400,
            "unsupported",
        ),
    ],
)
async def test_asset_validation(body: dict[str, Any], status: int, needle: str) -> None:
    async with scenario() as (sim, http):
        got, answer = await call(http, sim, "POST", "/assets", json=body)
        assert not world_of(sim).assets
    assert got == status
    assert needle in answer["message"]


async def test_json_over_the_body_limit_is_413_request_too_long() -> None:
    async with scenario() as (sim, http):
        # 4.6 MB of image is 6.1 MB of base64: refused as API Gateway refuses it.
        image = b64(image_bytes("png", 4_600_000, 1))
        status, body = await call(http, sim, "POST", "/assets", json={"image": image, "name": "a"})
        assert (status, body) == (413, {"message": "Request Too Long"})
        assert world_of(sim).json_too_long == 1
        assert world_of(sim).largest_json > 6_000_000  # the largest body sent, refused or not
        assert not world_of(sim).assets
        under = b64(image_bytes("png", 4_400_000, 1))  # 5.87 MB of base64
        status, _ = await call(http, sim, "POST", "/assets", json={"image": under, "name": "a"})
        assert status == 200
    async with scenario(json_body_limit=10_000_000) as (sim, http):
        # With a larger body limit, the documented "< 6 MB" image rule still holds [S15].
        image = b64(image_bytes("png", 6_000_000, 1))
        status, body = await call(http, sim, "POST", "/assets", json={"image": image, "name": "a"})
        assert status == 413 and "/uploads" in body["message"]
        assert world_of(sim).json_too_long == 0


@pytest.mark.parametrize(
    ("accept", "data_url", "bare"),
    [("either", 200, 200), ("data_url", 200, 400), ("base64", 400, 200)],
)
async def test_asset_image_encoding_is_a_setting(accept: str, data_url: int, bare: int) -> None:
    raw = image_bytes("png", 3000, 4)
    async with scenario(asset_image=accept) as (sim, http):
        got = []
        for image in (f"data:image/png;base64,{b64(raw)}", b64(raw)):
            status, _ = await call(http, sim, "POST", "/assets", json={"image": image, "name": "a"})
            got.append(status)
    assert got == [data_url, bare]


async def test_asset_description_is_set_with_put_and_shown_on_the_training_image() -> None:
    async with scenario() as (sim, http):
        asset = await new_asset(http, sim, 8)
        status, body = await call(
            http, sim, "PUT", f"/assets/{asset}", json={"description": "a cat"}
        )
        assert status == 200 and body["asset"]["description"] == "a cat"
        await call(http, sim, "POST", f"/models/{MODEL}/training-images", json={"assetId": asset})
        _, model = await call(http, sim, "GET", f"/models/{MODEL}")
        assert model["model"]["trainingImages"][0]["description"] == "a cat"
        status, _ = await call(http, sim, "PUT", "/assets/asset_gone", json={"description": "x"})
        assert status == 404
        status, _ = await call(http, sim, "PUT", f"/assets/{asset}", json={"description": 3})
        assert status == 400


async def test_json_body_is_required() -> None:
    async with scenario() as (sim, http):
        status, body = await call(
            http, sim, "POST", "/assets", headers={**AUTH, "Content-Type": "text/plain"}
        )
        assert status == 400
        assert "application/json" in body["message"]


# -- attaching training images ---------------------------------------------------------


async def test_attach_one_then_again_is_the_documented_400() -> None:
    async with scenario() as (sim, http):
        asset = await new_asset(http, sim, 1)
        path = f"/models/{MODEL}/training-images"
        status, body = await call(http, sim, "POST", path, json={"assetId": asset})
        assert status == 200
        assert body["trainingImage"]["id"] == asset
        status, body = await call(http, sim, "POST", path, json={"assetId": asset})
        assert status == 400
        assert body["message"] == ALREADY_ATTACHED
        status, body = await call(http, sim, "GET", f"/models/{MODEL}")
        assert [i["id"] for i in body["model"]["trainingImages"]] == [asset]


@pytest.mark.parametrize("shape", ["single", "list"])
async def test_batch_attach_answer_shape_is_a_setting(shape: str) -> None:
    async with scenario(batch_response=shape) as (sim, http):
        assets = [await new_asset(http, sim, i) for i in range(3)]
        status, body = await call(
            http, sim, "POST", f"/models/{MODEL}/training-images", json={"assetIds": assets}
        )
        assert status == 200
        if shape == "single":
            assert set(body) == {"trainingImage"}
        else:
            assert [i["id"] for i in body["trainingImages"]] == assets
        assert set(world_of(sim).models[MODEL].images) == set(assets)


async def test_batch_is_all_or_nothing_and_capped_at_ten() -> None:
    async with scenario() as (sim, http):
        assets = [await new_asset(http, sim, i) for i in range(11)]
        path = f"/models/{MODEL}/training-images"
        status, body = await call(http, sim, "POST", path, json={"assetIds": assets})
        assert status == 400
        assert body["message"] == TOO_MANY
        await call(http, sim, "POST", path, json={"assetId": assets[0]})
        status, body = await call(http, sim, "POST", path, json={"assetIds": assets[:5]})
        assert status == 400
        assert body["message"] == ALREADY_ATTACHED
        assert set(world_of(sim).models[MODEL].images) == {assets[0]}
        status, body = await call(http, sim, "POST", path, json={"assetIds": ["asset_nope"]})
        assert status == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"assetIds": []},
        {"assetIds": "asset_x"},
        {"assetIds": ["a"], "name": "n"},
        {"assetId": 3},
        {"assetId": "a", "preset": "portrait"},
        {"data": "not a data url"},
    ],
)
async def test_attach_validation(body: dict[str, Any]) -> None:
    async with scenario() as (sim, http):
        status, answer = await call(
            http, sim, "POST", f"/models/{MODEL}/training-images", json=body
        )
    assert status == 400
    assert answer["message"]


async def test_attach_to_an_unknown_model_is_404() -> None:
    async with scenario() as (sim, http):
        asset = await new_asset(http, sim, 1)
        status, _ = await call(
            http, sim, "POST", "/models/model_nope/training-images", json={"assetId": asset}
        )
    assert status == 404


async def test_dataset_ceiling_is_a_429_with_details() -> None:
    async with scenario(training_image_limit=2) as (sim, http):
        assets = [await new_asset(http, sim, i) for i in range(3)]
        path = f"/models/{MODEL}/training-images"
        status, _ = await call(http, sim, "POST", path, json={"assetIds": assets[:2]})
        assert status == 200
        status, body = await call(http, sim, "POST", path, json={"assetId": assets[2]})
    assert status == 429
    assert body["details"] == {"actionName": "add-training-image", "actionLimit": 2}


async def test_inline_data_creates_an_asset_and_attaches_it() -> None:
    raw = image_bytes("webp", 30_000, 4)
    async with scenario() as (sim, http):
        status, body = await call(
            http,
            sim,
            "POST",
            f"/models/{MODEL}/training-images",
            json={
                "data": f"data:image/webp;base64,{b64(raw)}",
                "name": "w.webp",
                "preset": "style",
            },
        )
        assert status == 200
        image = body["trainingImage"]
        assert image["name"] == "w.webp"
        assert world_of(sim).models[MODEL].images[image["id"]].preset == "style"
        assert attached_by_sha(sim) == {hashlib.sha256(raw).hexdigest(): 1}
        status, body = await call(
            http,
            sim,
            "POST",
            f"/models/{MODEL}/training-images",
            json={"data": f"data:image/png;base64,{b64(raw)}", "name": "w.webp"},
        )
        assert status == 400
        assert "declared image/png" in body["message"]


# -- multipart uploads -------------------------------------------------------------------


async def put_part(http: aiohttp.ClientSession, url: str, data: bytes, content_type: str) -> int:
    headers = {"Content-Type": content_type}
    async with http.put(yarl.URL(url, encoded=True), data=data, headers=headers) as resp:
        await resp.read()
        return resp.status


async def start_upload(
    http: aiohttp.ClientSession, sim: SimServer, raw: bytes, parts: int, content_type: str
) -> dict[str, Any]:
    body = {
        "fileName": "big.png",
        "fileSize": len(raw),
        "contentType": content_type,
        "kind": "image",
        "parts": parts,
    }
    status, answer = await call(http, sim, "POST", "/uploads", json=body)
    assert status == 200, answer
    return dict(answer["upload"])


async def test_multipart_upload_assembles_the_parts_into_an_asset() -> None:
    raw = image_bytes("png", 2500, 9)
    async with scenario(min_part_size=1000) as (sim, http):
        upload = await start_upload(http, sim, raw, 3, "image/png")
        assert upload["status"] == "pending"
        assert [p["number"] for p in upload["parts"]] == [1, 2, 3]
        assert all(p["expires"].endswith("Z") for p in upload["parts"])
        for part in reversed(upload["parts"]):  # any order
            start = (part["number"] - 1) * 1000
            assert await put_part(http, part["url"], raw[start : start + 1000], "image/png") == 200
        # The part URLs sign the content type.
        assert await put_part(http, upload["parts"][0]["url"], raw[:1000], "image/jpeg") == 403
        action = f"/uploads/{upload['id']}/action"
        status, body = await call(http, sim, "POST", action, json={"action": "complete"})
        assert status == 200
        done = body["upload"]
        assert done["status"] == "imported"
        asset_id = done["entityId"]
        obj = sim.state.objects[f"scenario-assets/{asset_id}"]
        assert obj.sha256 == hashlib.sha256(raw).hexdigest()
        assert obj.size == len(raw)
        assert sim.state.bodies == {}  # part bodies are released once assembled
        # Completing again answers the same upload.
        status, body = await call(http, sim, "POST", action, json={"action": "complete"})
        assert status == 200
        assert body["upload"]["entityId"] == asset_id
        assert len(world_of(sim).assets) == 1


async def test_multipart_complete_checks_the_parts() -> None:
    raw = image_bytes("png", 2500, 9)
    async with scenario(min_part_size=1000) as (sim, http):
        upload = await start_upload(http, sim, raw, 2, "image/png")
        first, second = upload["parts"]
        action = f"/uploads/{upload['id']}/action"
        await put_part(http, first["url"], raw[:1000], "image/png")
        status, body = await call(http, sim, "POST", action, json={"action": "complete"})
        assert status == 400
        assert "part 2 of 2" in body["message"]
        await put_part(http, second["url"], raw[1000:2000], "image/png")  # 500 bytes short
        status, body = await call(http, sim, "POST", action, json={"action": "complete"})
        assert status == 400
        assert "fileSize" in body["message"]
        status, body = await call(http, sim, "POST", action, json={"action": "abort"})
        assert status == 400
        status, _ = await call(http, sim, "GET", "/uploads/upload_nope")
        assert status == 404


async def test_multipart_part_size_floor() -> None:
    raw = image_bytes("png", 2500, 9)
    async with scenario(min_part_size=1000) as (sim, http):
        status, body = await call(
            http,
            sim,
            "POST",
            "/uploads",
            json={
                "fileName": "a",
                "fileSize": 2500,
                "contentType": "image/png",
                "kind": "image",
                "parts": 4,
            },
        )
        assert status == 400
        assert "parts" in body["message"]
        upload = await start_upload(http, sim, raw, 2, "image/png")
        first, second = upload["parts"]
        await put_part(http, first["url"], raw[:999], "image/png")
        await put_part(http, second["url"], raw[999:], "image/png")
        status, body = await call(
            http, sim, "POST", f"/uploads/{upload['id']}/action", json={"action": "complete"}
        )
        assert status == 400
        assert "smaller than 1000" in body["message"]


async def test_multipart_pending_polls_then_imported() -> None:
    raw = image_bytes("jpeg", 1500, 2)
    async with scenario(pending_polls=2, min_part_size=1000) as (sim, http):
        upload = await start_upload(http, sim, raw, 1, "image/jpeg")
        for field in ("jobId", "authorId", "ownerId", "updatedAt", "createdAt"):
            assert upload[field], field  # required by the SDK's Upload model (F12)
        await put_part(http, upload["parts"][0]["url"], raw, "image/jpeg")
        _, body = await call(
            http, sim, "POST", f"/uploads/{upload['id']}/action", json={"action": "complete"}
        )
        assert body["upload"]["status"] == "validating"
        assert "entityId" not in body["upload"]
        seen = []
        for _ in range(2):
            _, body = await call(http, sim, "GET", f"/uploads/{upload['id']}")
            seen.append(body["upload"]["status"])
        _, job = await call(http, sim, "GET", f"/jobs/{upload['jobId']}")  # polls count too
        assert seen == ["validating", "validating"]
        assert job["job"]["status"] == "success" and job["job"]["jobType"] == "upload"
        asset_id = job["job"]["metadata"]["output"]["entityId"]
        assert [h["status"] for h in job["job"]["statusHistory"]] == [
            "pending",
            "in-progress",
            "success",
        ]
        _, body = await call(http, sim, "GET", f"/uploads/{upload['id']}")
        assert body["upload"]["entityId"] == asset_id
        status, _ = await call(http, sim, "GET", "/jobs/job_nope")
        assert status == 404


@pytest.mark.parametrize(
    ("source", "when", "on_upload", "on_job", "early"),
    [
        ("both", "imported", True, True, False),
        ("job", "imported", False, True, False),
        ("upload", "imported", True, False, False),
        ("both", "early", True, True, True),
    ],
)
async def test_where_and_when_the_asset_id_shows_is_a_setting(
    source: str, when: str, on_upload: bool, on_job: bool, early: bool
) -> None:
    raw = image_bytes("png", 1500, 3)
    settings = {"entity_id_from": source, "entity_id_when": when}
    async with scenario(pending_polls=1, min_part_size=1000, **settings) as (sim, http):
        upload = await start_upload(http, sim, raw, 1, "image/png")
        await put_part(http, upload["parts"][0]["url"], raw, "image/png")
        _, body = await call(
            http, sim, "POST", f"/uploads/{upload['id']}/action", json={"action": "complete"}
        )
        assert ("entityId" in body["upload"]) is early
        if early:  # named, but not imported yet: attaching it is refused
            attach = {"assetId": body["upload"]["entityId"]}
            status, _ = await call(
                http, sim, "POST", f"/models/{MODEL}/training-images", json=attach
            )
            assert status == 400
        _, job = await call(http, sim, "GET", f"/jobs/{upload['jobId']}")  # the last pending poll
        _, job = await call(http, sim, "GET", f"/jobs/{upload['jobId']}")
        _, body = await call(http, sim, "GET", f"/uploads/{upload['id']}")
    assert job["job"]["status"] == "success"
    assert ("output" in job["job"]["metadata"]) is on_job
    assert ("entityId" in body["upload"]) is on_upload


async def test_multipart_of_a_non_image_fails() -> None:
    raw = b"\x89PNG\r\n\x1a\n" + bytes(1000)
    async with scenario(min_part_size=1000) as (sim, http):
        upload = await start_upload(http, sim, raw, 1, "image/jpeg")
        await put_part(http, upload["parts"][0]["url"], raw, "image/jpeg")
        _, body = await call(
            http, sim, "POST", f"/uploads/{upload['id']}/action", json={"action": "complete"}
        )
    assert body["upload"]["status"] == "failed"
    assert body["upload"]["errorMessage"]


# -- faults and control ------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_injected_errors_use_the_envelope(status: int) -> None:
    async with scenario() as (sim, http):
        sim.set_faults(f"api.{status}=1")
        got, body = await call(http, sim, "GET", f"/models/{MODEL}")
        stats = sim.state.stats().api_requests
    assert got == status
    assert set(body) == {"message"}  # a plain 429 has no details: a rate limit, not a ceiling
    assert stats == {"GET /v1/models/{modelId}": {str(status): 1}}


@pytest.mark.parametrize(
    ("where", "should_retry", "body"),
    [
        ("top", "none", {"message": "Too Many Requests", "remainingSeconds": 2}),
        ("details", "false", {"message": "Too Many Requests", "details": {"remainingSeconds": 2}}),
    ],
)
async def test_injected_429_fields_are_settings(where: str, should_retry: str, body: Any) -> None:
    async with scenario(remaining_seconds_at=where, should_retry=should_retry) as (sim, http):
        sim.set_faults("api.429=1")
        async with http.get(f"{sim.base_url}/v1/models/{MODEL}", headers=AUTH) as resp:
            assert (resp.status, await resp.json()) == (429, body)
            assert resp.headers.get("x-should-retry") == (
                None if should_retry == "none" else "false"
            )


async def test_control_route_lists_models_and_their_images() -> None:
    async with scenario() as (sim, http):
        asset = await new_asset(http, sim, 5)
        await call(http, sim, "POST", f"/models/{MODEL}/training-images", json={"assetId": asset})
        async with http.get(f"{sim.base_url}/_sim/scenario/models") as resp:
            body = await resp.json()
    [model] = body["models"]
    assert model["id"] == MODEL
    [image] = model["training_images"]
    assert image["id"] == asset
    assert image["sha256"] == hashlib.sha256(image_bytes("png", 2000, 5)).hexdigest()
    assert body["assets"] == 1


async def test_attach_fault_drop_commits_then_cuts_the_connection() -> None:
    async with scenario() as (sim, http):
        asset = await new_asset(http, sim, 6)
        async with http.put(
            f"{sim.base_url}/_sim/scenario/attach-fault", json={"after_attach": "drop", "count": 1}
        ) as resp:
            assert (await resp.json())["count"] == 1
        with pytest.raises(aiohttp.ClientError):
            await call(
                http, sim, "POST", f"/models/{MODEL}/training-images", json={"assetId": asset}
            )
        assert asset in world_of(sim).models[MODEL].images
        assert world_of(sim).dropped_attaches == 1
        # The fault is spent: the retry gets the documented 400.
        status, body = await call(
            http, sim, "POST", f"/models/{MODEL}/training-images", json={"assetId": asset}
        )
        assert (status, body["message"]) == (400, ALREADY_ATTACHED)


async def test_attach_fault_validation() -> None:
    async with scenario() as (sim, http):
        for bad in ({"after_attach": "explode"}, {"after_attach": "hold", "count": -1}):
            async with http.put(f"{sim.base_url}/_sim/scenario/attach-fault", json=bad) as resp:
                assert resp.status == 400


@pytest.mark.parametrize(
    "settings",
    [
        {"batch_response": "tuple"},
        {"training_image_limit": -1},
        {"pending_polls": -1},
        {"min_part_size": 0},
        {"models": frozenset({""})},
        {"json_body_limit": 10},
        {"asset_image": "png"},
        {"entity_id_from": "asset"},
        {"entity_id_when": "later"},
        {"remaining_seconds_at": "header"},
        {"should_retry": "maybe"},
    ],
)
def test_settings_are_checked(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings)).split("_")[0]):
        ScenarioSimSettings(**settings)


async def test_a_client_that_dies_mid_body_is_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    head = (
        f"POST /v1/models/{MODEL}/training-images HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {AUTH['Authorization']}\r\nContent-Type: application/json\r\n"
        "Content-Length: 500\r\n\r\n"
    ).encode()
    async with scenario() as (sim, _http):
        answer = await raw_exchange(sim.base_url, head + b'{"assetId": "asset_', half_close=True)
        with anyio.fail_after(5):  # an unhandled error would never be counted
            await sim.state.wait_until(lambda s: bool(s.stats().api_requests))
        stats = sim.state.stats().api_requests
    assert answer is None or answer.status == CLIENT_GONE
    assert stats == {"POST /v1/models/{modelId}/training-images": {str(CLIENT_GONE): 1}}
    assert "Error handling request" not in caplog.text


def test_ingest_sim_flags_play_each_gap() -> None:
    import argparse

    from ingest.cli import sim as sim_cli

    parser = argparse.ArgumentParser(prog="ingest")
    sim_cli.register(parser.add_subparsers(dest="command", required=True))
    flags = ["--scenario-json-limit", "4000000", "--scenario-asset-image", "base64"]
    flags += ["--scenario-entity-id", "job", "--scenario-entity-id-early"]
    settings = sim_cli._scenario_settings(parser.parse_args(["sim", *flags]))
    assert (settings.json_body_limit, settings.asset_image) == (4_000_000, "base64")
    assert (settings.entity_id_from, settings.entity_id_when) == ("job", "early")
    defaults = sim_cli._scenario_settings(parser.parse_args(["sim"]))
    assert defaults == ScenarioSimSettings()
