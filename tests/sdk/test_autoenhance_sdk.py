"""Autoenhance's own SDK (PyPI ``autoenhance`` 1.1.0) pins the adapter's request shapes.

The SDK is openapi-generator code on urllib3: its `RESTClientObject` sends
through ``pool_manager.request(...)``. Here that pool manager records instead
of sending (nothing leaves the process), and the SDK's request for each call
the adapter makes is compared with what the adapter sent to the emulator, as
the emulator recorded it (``ingest.sim.autoenhance.RECEIVED``): method, path,
``x-api-key``, Content-Type and the body's fields.

Where the two differ on purpose it is said here: the SDK's ``ImageIn`` has no
``content_type`` (fidelity gap 3: the docs still ask for it, the adapter sends
it, and the SDK would pass it through as an additional property), and it adds
the documented defaults ``enhance``, ``lens_correction`` and
``vertical_correction`` (true), which the adapter leaves to the API. The SDK
has no upload call (the PUT is the caller's), so only the API calls are pinned.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import urllib3  # the SDK's transport
from autoenhance.api.images_api import ImagesApi
from autoenhance.api.orders_api import OrdersApi
from autoenhance.api_client import ApiClient
from autoenhance.configuration import Configuration
from autoenhance.models.image_created_out import ImageCreatedOut
from autoenhance.models.image_in import ImageIn
from autoenhance.models.image_out import ImageOut
from autoenhance.models.order_out import OrderOut

from ingest.providers.autoenhance import AutoenhanceProvider
from ingest.providers.base import Target
from ingest.sim import SimServer
from ingest.sim.autoenhance import RECEIVED, Received
from tests.contract.harness import HARNESSES, KEY, emulator
from tests.contract.harness import adapter as harness_adapter
from tests.fakeapi import source

pytestmark = pytest.mark.anyio

HOST = "http://sdk.invalid"  # never contacted: the pool manager records


@dataclass(frozen=True, slots=True)
class SdkRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: Any


class RecordingPool:
    """Stands in for the SDK's ``urllib3.PoolManager``: records, answers `answer`, sends nothing."""

    def __init__(self) -> None:
        self.sent: list[SdkRequest] = []
        self.answer: tuple[int, bytes] = (200, b"{}")

    def request(
        self, method: str, url: str, *, body: Any = None, headers: Any = None, **_: Any
    ) -> urllib3.HTTPResponse:
        decoded = json.loads(body) if isinstance(body, str | bytes) and body else None
        self.sent.append(SdkRequest(method, url, dict(headers or {}), decoded))
        status, data = self.answer
        return urllib3.HTTPResponse(
            body=io.BytesIO(data),  # a stream, as off a socket (bytes b"" would read as None)
            status=status,
            headers={"Content-Type": "application/json"},
            preload_content=False,
        )


def sdk_client() -> tuple[ImagesApi, OrdersApi, RecordingPool]:
    """The SDK's images and orders APIs on a recording pool manager."""
    client = ApiClient(Configuration(host=HOST, api_key={"ApiKeyAuth": KEY}))
    pool = RecordingPool()
    # Duck-typed: the SDK calls only `request` on it (`rest.py`).
    client.rest_client.pool_manager = cast(urllib3.PoolManager, pool)
    return ImagesApi(client), OrdersApi(client), pool


@contextlib.asynccontextmanager
async def adapter() -> AsyncIterator[tuple[SimServer, AutoenhanceProvider]]:
    """The emulator and the adapter wired as a run wires it (the contract harness)."""
    harness = HARNESSES["autoenhance"]
    async with (
        emulator(harness, api_keys=frozenset({KEY})) as sim,
        harness_adapter(harness, sim) as provider,
    ):
        assert isinstance(provider, AutoenhanceProvider)
        yield sim, provider


def received(sim: SimServer) -> list[Received]:
    kept = sim._ctx.app[RECEIVED]
    return list(kept)


def same_call(sdk: SdkRequest, ours: Received, *, sdk_auth: bool = True) -> None:
    """Method, path, key and (for a body) Content-Type agree.

    `sdk_auth` False: the SDK sends no key for this call (its spec lists no
    ``ApiKeyAuth`` for ``retrieve_image`` and ``retrieve_order``); the adapter
    sends it on every API call, which a public route ignores.
    """
    assert sdk.url.startswith(HOST)
    assert (sdk.method, sdk.url.removeprefix(HOST)) == (ours.method, ours.path)
    assert ours.headers["x-api-key"] == KEY
    assert sdk.headers.get("x-api-key") == (KEY if sdk_auth else None)
    if sdk.body is not None:
        assert sdk.headers["Content-Type"] == ours.headers["content-type"] == "application/json"


async def test_create_image_matches_the_sdk(tmp_path: Path) -> None:
    images, _, pool = sdk_client()
    async with adapter() as (sim, ae):
        target = await ae.acquire(source(tmp_path, "kitchen.jpg"))
        [ours] = received(sim)
        order_id = ae._ctx.params["order_id"]
        images.create_image(ImageIn(image_name="kitchen.jpg", order_id=order_id))
        [sdk] = pool.sent
        same_call(sdk, ours)
        assert ours.body == {
            "image_name": "kitchen.jpg",
            "content_type": "image/jpeg",
            "order_id": order_id,
        }
        # Every field both send is the same; the SDK's extras are the API's own defaults.
        common = set(sdk.body) & set(ours.body)
        assert common == {"image_name", "order_id"}
        assert {k: sdk.body[k] for k in common} == {k: ours.body[k] for k in common}
        defaults = {"enhance": True, "lens_correction": True, "vertical_correction": True}
        assert {k: v for k, v in sdk.body.items() if k not in common} == defaults
        # content_type is not in SDK 1.1.0's schema (gap 3); the SDK would pass it through.
        assert "content_type" not in ImageIn.model_fields
        parsed = ImageIn.from_dict(ours.body)
        assert parsed is not None and parsed.to_dict()["content_type"] == "image/jpeg"
        # The emulator's answer is an ImageCreatedOut the SDK reads, URL included.
        assert target.url is not None
        out = ImageCreatedOut.from_dict(
            {"image_id": target.remote_id, "order_id": order_id, "upload_url": target.url}
        )
        assert out is not None and out.upload_url == target.url


async def test_recover_and_tidy_calls_match_the_sdk(tmp_path: Path) -> None:
    images, orders, pool = sdk_client()
    async with adapter() as (sim, ae):
        item = source(tmp_path, "porch.jpg")
        target = await ae.acquire(item)
        acquired = Target(target.remote_id, None, target.content_type, None, target.extra)
        assert await ae.recover(item, acquired) is None  # waiting: deleted, to upload anew
        await ae.tidy()  # the order is empty now: 404, nothing to delete
        _, get, delete, order = received(sim)
        pool.answer = (
            200,
            json.dumps({"image_id": target.remote_id, "status": "waiting"}).encode(),
        )
        assert isinstance(images.retrieve_image(target.remote_id), ImageOut)
        pool.answer = (204, b"")
        images.delete_image(target.remote_id)
        pool.answer = (200, json.dumps({"order_id": ae._ctx.params["order_id"]}).encode())
        assert isinstance(orders.retrieve_order(ae._ctx.params["order_id"]), OrderOut)
        sdk_get, sdk_delete, sdk_order = pool.sent
        same_call(sdk_get, get, sdk_auth=False)
        same_call(sdk_delete, delete)
        same_call(sdk_order, order, sdk_auth=False)
