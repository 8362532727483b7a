"""The emulator's Autoenhance routes: auth, validation, URL fields, signed Content-Type, limits."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import yarl

from ingest.cli import sim as sim_cli
from ingest.config import DEFAULT_PROVIDERS
from ingest.errors import Action, TransferError
from ingest.http import Timeouts, api_session, storage_session
from ingest.providers.autoenhance import AutoenhanceProvider
from ingest.providers.context import Context
from ingest.sim import SimServer, SimSettings, serve
from ingest.sim.settings import AutoenhanceSimSettings
from tests.fakeapi import source as jpeg_source

pytestmark = pytest.mark.anyio

IMAGES = "/v3/images/"
KEY = "ae-test-key-0123456789"
GOOD = {"x-api-key": KEY}
BODY = bytes(range(256)) * 8


def _settings(**options: Any) -> SimSettings:
    return SimSettings(autoenhance=AutoenhanceSimSettings(**options))


async def _create(
    http: aiohttp.ClientSession,
    sim: SimServer,
    json: Any = None,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    body = {"image_name": "kitchen.jpg", "content_type": "image/jpeg"} if json is None else json
    hdrs = dict(GOOD if headers is None else headers)
    kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
    async with http.post(f"{sim.base_url}{IMAGES}", headers=hdrs, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None), resp


async def _get(http: aiohttp.ClientSession, sim: SimServer, path: str, key: str = KEY) -> Any:
    async with http.get(f"{sim.base_url}{path}", headers={"x-api-key": key}) as resp:
        return resp.status, await resp.json()


async def _put(http: aiohttp.ClientSession, url: str, content_type: str) -> tuple[int, str]:
    async with http.put(
        yarl.URL(url, encoded=True), data=BODY, headers={"Content-Type": content_type}
    ) as resp:
        return resp.status, await resp.text()


async def test_create_issues_a_url_signed_with_the_declared_content_type() -> None:
    async with serve(_settings(rate=None)) as sim, aiohttp.ClientSession() as http:
        order = "0a4f6c1e-3b2d-4e5f-8a9b-0c1d2e3f4a5b"
        status, body, _ = await _create(
            http,
            sim,
            {"image_name": "kitchen.jpg", "content_type": "image/jpeg", "order_id": order},
        )
        assert status == 200
        assert (body["order_id"], body["image_name"], body["status"]) == (
            order,
            "kitchen.jpg",
            "waiting",
        )
        assert "s3PutObjectUrl" not in body
        url = yarl.URL(body["upload_url"], encoded=True)
        assert url.raw_path == f"/s3/autoenhanceapi-prod/{order}/{body['image_id']}"
        assert "X-Amz-SignedHeaders=content-type%3Bhost&" in url.raw_query_string
        status, text = await _put(http, body["upload_url"], "image/png")
        assert status == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in text
        assert (await _put(http, body["upload_url"], "image/jpeg"))[0] == 200
        status, image = await _get(http, sim, f"/v3/images/{body['image_id']}")
        assert (status, image["status"], image["order_id"]) == (200, "processing", order)
        assert "upload_url" not in image


async def test_without_content_type_the_put_must_say_octet_stream() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        _, body, _ = await _create(http, sim, {"image_name": "a.jpg"})
        assert (await _put(http, body["upload_url"], "image/jpeg"))[0] == 403
        assert (await _put(http, body["upload_url"], "application/octet-stream"))[0] == 200
        assert sim.state.assets[body["image_id"]].content_type == "application/octet-stream"


@pytest.mark.parametrize(
    ("default", "version", "field"),
    [
        ("upload_url", None, "upload_url"),
        ("s3PutObjectUrl", None, "s3PutObjectUrl"),
        ("s3PutObjectUrl", "2025-08-31", "upload_url"),
        ("upload_url", "2024-01-01", "s3PutObjectUrl"),
    ],
)
async def test_url_field_follows_the_account_default_and_x_api_version(
    default: str, version: str | None, field: str
) -> None:
    headers = {**GOOD, **({"x-api-version": version} if version else {})}
    async with serve(_settings(url_field=default)) as sim, aiohttp.ClientSession() as http:
        status, body, _ = await _create(http, sim, headers=headers)
        assert status == 200
        other = {"upload_url", "s3PutObjectUrl"} - {field}
        assert field in body and not other & set(body)


async def test_a_version_that_is_not_a_date_gets_the_account_default() -> None:
    """No source says the API refuses an unknown x-api-version (the old 422 was invented)."""
    settings = _settings(url_field="s3PutObjectUrl")
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        status, body, _ = await _create(http, sim, headers={**GOOD, "x-api-version": "latest"})
        assert status == 200
        assert "s3PutObjectUrl" in body and "upload_url" not in body


@pytest.mark.parametrize(
    ("headers", "detail"),
    [({}, "Missing API key"), ({"x-api-key": "nope"}, "Invalid API key")],
)
async def test_auth(headers: dict[str, str], detail: str) -> None:
    """401 is the SDK's ``HTTPError``: ``detail`` an object (``models/http_error.py``)."""
    async with (
        serve(SimSettings(api_keys=frozenset({KEY}))) as sim,
        aiohttp.ClientSession() as http,
    ):
        status, body, _ = await _create(http, sim, headers=headers)
        assert (status, body) == (401, {"message": "Unauthorized", "detail": {"x-api-key": detail}})
        async with http.get(f"{sim.base_url}/v3/orders/x", headers=headers) as resp:
            assert resp.status == 401
        assert sim.state.assets == {}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"{oops", "_schema"),
        (b"[]", "_schema"),
        (b"{}", "image_name"),
        (b'{"image_name": 7}', "image_name"),
        (b'{"image_name": "a.gif", "content_type": "image/gif"}', "content_type"),
        (b'{"image_name": "a.jpg", "order_id": ""}', "order_id"),
        (b'{"image_name": "a.jpg", "hdr": "yes"}', "hdr"),
        (b'{"image_name": "a.jpg", "hdr": true}', "order_id"),
    ],
)
async def test_validation_errors_name_the_field(data: bytes, field: str) -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        headers = {**GOOD, "Content-Type": "application/json"}
        status, body, _ = await _create(http, sim, headers=headers, data=data)
        assert status == 422
        assert body["message"] == "Validation error"
        [(location, fields)] = body["detail"].items()
        assert location == "json"
        assert list(fields) == [field]
        assert all(isinstance(m, str) for m in fields[field])
        assert sim.state.assets == {}


async def test_same_name_limit_is_a_429_naming_the_rule() -> None:
    async with serve(_settings(same_name_limit=3)) as sim, aiohttp.ClientSession() as http:
        for _ in range(3):
            assert (await _create(http, sim))[0] == 200
        status, body, resp = await _create(http, sim)
        assert status == 429
        assert body == {
            "message": "Duplicate filename 'kitchen.jpg': at most 3 images with the same "
            "file name per 3600 s"
        }
        assert 3500 <= int(resp.headers["Retry-After"]) <= 3600
        other = {"image_name": "bathroom.jpg", "content_type": "image/jpeg"}
        assert (await _create(http, sim, other))[0] == 200
        sim.set_faults("skew=3601")  # an hour later the name is free again
        assert (await _create(http, sim))[0] == 200


async def test_request_rate_limit_is_a_429_with_retry_after() -> None:
    async with serve(_settings(rate=5)) as sim, aiohttp.ClientSession() as http:
        answers: list[tuple[int, Any, str | None]] = []

        async def one(n: int) -> None:
            body = {"image_name": f"r{n}.jpg", "content_type": "image/jpeg"}
            status, got, resp = await _create(http, sim, body)
            answers.append((status, got, resp.headers.get("Retry-After")))

        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(one, n)
        refused = [a for a in answers if a[0] == 429]
        # Burst 5, refilled at 5/s: twenty requests at once cannot all pass.
        assert len(answers) - len(refused) >= 5
        assert len(refused) >= 5
        for _, body, retry_after in refused:
            assert body == {"message": "Too Many Requests"}
            assert retry_after == "1"
        assert sim.state.stats().api_rate_limited == len(refused)


async def test_daily_limit_creates_images_in_the_error_state() -> None:
    async with serve(_settings(daily_limit=1)) as sim, aiohttp.ClientSession() as http:
        _, first, _ = await _create(http, sim)
        _, second, _ = await _create(http, sim)
        assert first["status"] == "waiting"
        assert (second["status"], second["error"]) == ("error", True)
        assert "Daily enhancement limit" in second["status_reason"]


async def test_orders_collect_their_images_per_key() -> None:
    settings = SimSettings(api_keys=frozenset({KEY, "other"}))
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        _, a, _ = await _create(http, sim, {"image_name": "a.jpg", "order_id": "o-1"})
        _, b, _ = await _create(http, sim, {"image_name": "b.jpg", "order_id": "o-1"})
        _, c, _ = await _create(http, sim, {"image_name": "c.jpg"})
        assert c["order_id"] not in ("o-1", "")
        status, order = await _get(http, sim, "/v3/orders/o-1")
        assert status == 200
        assert [i["image_id"] for i in order["images"]] == [a["image_id"], b["image_id"]]
        assert order["total_images"] == 2
        assert (await _get(http, sim, "/v3/orders/o-1", key="other"))[0] == 404
        assert (await _get(http, sim, "/v3/orders/nope"))[0] == 404
        assert (await _get(http, sim, f"/v3/images/{a['image_id']}", key="other"))[0] == 404


@pytest.mark.parametrize(
    ("status", "message"), [(500, "Internal Server Error"), (503, "Service Unavailable")]
)
async def test_injected_errors(status: int, message: str) -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        sim.set_faults(f"api.{status}=1")
        got, body, _ = await _create(http, sim)
        assert (got, body["message"]) == (status, message)


async def test_adapter_round_trip_and_content_type_mismatch(tmp_path: Path) -> None:
    source = jpeg_source(tmp_path, "porch.jpg", 3000)
    async with serve(_settings(url_field="s3PutObjectUrl")) as sim:
        settings = dataclasses.replace(DEFAULT_PROVIDERS["autoenhance"], base_url=sim.base_url)
        params = AutoenhanceProvider.run_params(settings, {})
        timeouts = Timeouts(connect=5, read=10)
        headers = AutoenhanceProvider.auth_headers({"api_key_env": KEY})
        async with (
            api_session(sim.base_url + "/", headers, timeouts, 4) as api,
            storage_session(timeouts, 4) as storage,
        ):
            ctx = Context(api=api, storage=storage, settings=settings, params=params)
            ae = AutoenhanceProvider(ctx)
            target = await ae.acquire(source)
            assert target.lease is not None and target.lease.source == "url"
            assert target.extra == {"order_id": params["order_id"]}
            wrong = dataclasses.replace(target, content_type="image/png")
            with pytest.raises(TransferError) as info:
                await ae.transfer(source, wrong)
            assert (info.value.status, info.value.code) == (403, "SignatureDoesNotMatch")
            assert info.value.action is Action.RESIGN
            await ae.transfer(source, target)
            [obj] = sim.state.objects.values()
            assert (obj.remote_id, obj.size) == (target.remote_id, 3000)


def test_sim_command_flags() -> None:
    parser = argparse.ArgumentParser(prog="ingest")
    sim_cli.register(parser.add_subparsers(dest="command", required=True))
    assert sim_cli._autoenhance_settings(parser.parse_args(["sim"])) == AutoenhanceSimSettings()
    args = parser.parse_args(
        [
            "sim",
            "--autoenhance-url-field",
            "s3PutObjectUrl",
            "--autoenhance-rate",
            "0",
            "--autoenhance-name-limit",
            "0",
            "--autoenhance-daily-limit",
            "500",
            "--autoenhance-content-type",
            "ignored",
            "--autoenhance-upload-host",
            "api",
            "--autoenhance-429-body",
            "generic",
        ]
    )
    assert sim_cli._autoenhance_settings(args) == AutoenhanceSimSettings(
        url_field="s3PutObjectUrl",
        rate=None,
        same_name_limit=None,
        daily_limit=500,
        content_type="ignored",
        upload_host="api",
        body_429="generic",
    )
