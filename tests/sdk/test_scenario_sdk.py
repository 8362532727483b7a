"""Scenario's request shapes pinned by its own SDK (PyPI ``scenario-sdk``, a dev dependency).

The adapter uploads to the in-process emulator, which records every request
it receives (`ScenarioSimSettings.record_requests`). For each one, the SDK
makes the same call, built from the same files and ids, through an
``httpx.MockTransport`` that records instead of sending (no network); the two
are compared on method, path, query, the headers that matter (Authorization;
Content-Type where there is a body) and every body field, long strings by
length and SHA-256. Each answer the emulator gave is validated against the
SDK's response model for that call, so the emulator's shapes carry every
field the SDK requires (F12 of docs/fidelity/scenario.md).

The SDK is driven whole here (no request model needed instead): every call
the adapter makes has an SDK method.
"""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import BaseModel
from scenario_sdk import Scenario
from scenario_sdk.types import (
    AssetUpdateResponse,
    AssetUploadResponse,
    JobRetrieveResponse,
    ModelRetrieveResponse,
    UploadCreateResponse,
    UploadRetrieveResponse,
    UploadTriggerActionResponse,
)
from scenario_sdk.types.models import TrainingImageAddResponse

from ingest.item import Source
from ingest.providers.base import Target
from ingest.providers.scenario import BASE64_LIMIT
from ingest.sim.scenario_world import summarized, world_of
from tests.unit.test_scenario_adapter import SECRETS, adapter, emulator, make_source, upload

Recorded = dict[str, Any]


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


class Sdk:
    """The SDK, wired to a transport that records each request and answers what the emulator did."""

    def __init__(self, files: dict[str, Source]) -> None:
        self.files = files  # file name -> source, to build bodies from the files themselves
        self.sent: list[httpx.Request] = []
        self._answer: Recorded = {}
        http = httpx.Client(transport=httpx.MockTransport(self._handle))
        self.client = Scenario(
            api_key=SECRETS["api_key_env"],
            api_secret=SECRETS["api_secret_env"],
            base_url="http://scenario.invalid/v1",
            http_client=http,
            max_retries=0,
        )

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(self._answer["status"], json=self._answer["answer"])

    def replay(self, recorded: Recorded) -> tuple[httpx.Request, Any]:
        """The SDK's request for the call `recorded` shows, and its parsed answer."""
        self._answer = recorded
        parts = recorded["path"].strip("/").split("/")
        body = recorded["json"] or {}
        client = self.client
        match recorded["method"], parts:
            case "GET", ["models", model_id]:
                parsed: Any = client.models.retrieve(model_id)
            case "POST", ["models", model_id, "training-images"]:
                parsed = self._add_training_image(model_id, body)
            case "POST", ["assets"]:
                source = self.files[body["name"]]
                image = data_url(source.item.path, source.content_type)
                parsed = client.assets.upload(name=source.item.path.name, image=image)
            case "PUT", ["assets", asset_id]:
                parsed = client.assets.update(asset_id, description=self._caption(asset_id))
            case "POST", ["uploads"]:
                source = self.files[body["fileName"]]
                parsed = client.uploads.create(
                    file_name=source.item.path.name,
                    file_size=source.item.path.stat().st_size,
                    content_type=source.content_type,
                    kind="image",
                    parts=body["parts"],  # the part size is the adapter's choice (a gap)
                )
            case "POST", ["uploads", upload_id, "action"]:
                parsed = client.uploads.trigger_action(upload_id, action="complete")
            case "GET", ["uploads", upload_id]:
                parsed = client.uploads.retrieve(upload_id)
            case "GET", ["jobs", job_id]:
                parsed = client.jobs.retrieve(job_id)
            case _:  # pragma: no cover - a call this test does not know yet
                raise AssertionError(f"no SDK call for {recorded['method']} {recorded['path']}")
        return self.sent[-1], parsed

    def _add_training_image(self, model_id: str, body: dict[str, Any]) -> Any:
        add = self.client.models.training_images.add
        if "assetIds" in body:
            return add(model_id, asset_ids=body["assetIds"], preset=body["preset"])
        if "assetId" in body:
            return add(model_id, asset_id=body["assetId"], preset=body["preset"])
        source = self.files[body["name"]]
        image = data_url(source.item.path, source.content_type)
        return add(model_id, data=image, name=source.item.path.name, preset=body["preset"])

    def _caption(self, asset_id: str) -> str:
        captions = {s.item.caption for s in self.files.values() if s.item.caption}
        [caption] = captions  # one captioned file in this test
        return caption


RESPONSES: dict[tuple[str, str], type[BaseModel]] = {
    ("GET", "models"): ModelRetrieveResponse,
    ("POST", "training-images"): TrainingImageAddResponse,
    ("POST", "assets"): AssetUploadResponse,
    ("PUT", "assets"): AssetUpdateResponse,
    ("POST", "uploads"): UploadCreateResponse,
    ("POST", "action"): UploadTriggerActionResponse,
    ("GET", "uploads"): UploadRetrieveResponse,
    ("GET", "jobs"): JobRetrieveResponse,
}


def response_model(recorded: Recorded) -> type[BaseModel]:
    parts = recorded["path"].strip("/").split("/")
    name = parts[-1] if parts[-1] in ("training-images", "action") else parts[0]
    return RESPONSES[recorded["method"], name]


def captioned(tmp: Path, index: int, size: int, caption: str) -> Source:
    source = make_source(tmp, index, size=size)
    return dataclasses.replace(source, item=dataclasses.replace(source.item, caption=caption))


async def adapter_requests(files: list[Source]) -> list[Recorded]:
    """Every request the adapter sends to upload `files` (assets mode, then inline mode)."""
    small, other, large, inline = files
    async with emulator(record_requests=True, pending_polls=1) as sim:
        async with adapter(sim) as provider:
            ids = [await upload(provider, s) for s in (small, other, large)]
            targets = [Target(i, None, "image/png", None) for i in ids]
            await provider.finalize([(None, t) for t in targets[:2]])  # a batch: assetIds
            await provider.finalize([(None, targets[2])])  # one: assetId
        async with adapter(sim, mode="inline", preset="style") as provider:
            await upload(provider, inline)
        recorded = list(world_of(sim).requests)
    assert all(r["status"] == 200 for r in recorded), [(r["path"], r["status"]) for r in recorded]
    return recorded


@pytest.mark.anyio
async def test_the_adapter_sends_what_the_sdk_sends(tmp_path: Path) -> None:
    files = [
        captioned(tmp_path, 1, 4000, "a red cube"),
        make_source(tmp_path, 2, size=5000),
        make_source(tmp_path, 3, size=BASE64_LIMIT + 10),  # multipart
        make_source(tmp_path, 4, size=3000),
    ]
    recorded = await adapter_requests(files)
    # Every kind of call an upload makes (ids left out of the paths).
    calls = {
        (r["method"], "/".join(p for p in r["path"][1:].split("/") if "_" not in p))
        for r in recorded
    }
    assert calls == {
        ("GET", "models"),
        ("POST", "assets"),
        ("PUT", "assets"),
        ("POST", "uploads"),
        ("POST", "uploads/action"),
        ("GET", "jobs"),
        ("POST", "models/training-images"),
    }
    sdk = Sdk({s.item.path.name: s for s in files})
    for adapter_sent in recorded:
        where = f"{adapter_sent['method']} {adapter_sent['path']}"
        sdk_sent, _parsed = sdk.replay(adapter_sent)
        assert sdk_sent.method == adapter_sent["method"], where
        assert sdk_sent.url.path == "/v1" + adapter_sent["path"], where
        assert dict(sdk_sent.url.params) == adapter_sent["query"], where
        headers = adapter_sent["headers"]
        assert sdk_sent.headers["authorization"] == headers["authorization"], where
        if sdk_sent.content:
            assert sdk_sent.headers["content-type"] == headers["content-type"], where
            assert summarized(orjson.loads(sdk_sent.content)) == adapter_sent["json"], where
        else:
            assert adapter_sent["json"] is None, where
        # The emulator's answer carries every field the SDK's model of it requires.
        response_model(adapter_sent).model_validate(adapter_sent["answer"], strict=False)
