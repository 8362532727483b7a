"""The emulator's Novita route: auth, validation, response shapes, injected API faults."""

from __future__ import annotations

import email.utils
import re
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import anyio
import pytest
import yarl

from ingest.sim import SimServer, SimSettings, serve

pytestmark = pytest.mark.anyio

ROUTE = "/v3/assets/training_dataset"
GOOD = {"Authorization": "Bearer sim-key"}


async def _post(
    http: aiohttp.ClientSession,
    sim: SimServer,
    *,
    headers: dict[str, str] | None = None,
    json: Any = None,
    data: bytes | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    hdrs = dict(GOOD if headers is None else headers)
    if json is not None:
        async with http.post(f"{sim.base_url}{ROUTE}", json=json, headers=hdrs) as resp:
            return resp.status, await resp.json(content_type=None), resp
    if "Content-Type" not in hdrs:
        hdrs["Content-Type"] = "application/json"
    async with http.post(f"{sim.base_url}{ROUTE}", data=data or b"", headers=hdrs) as resp:
        return resp.status, await resp.json(content_type=None), resp


async def test_issues_a_presigned_put_url() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        status, body, resp = await _post(http, sim, json={"file_extension": "jpeg"})
        assert status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert set(body) == {"assets_id", "upload_url", "method", "headers"}
        assert isinstance(body["assets_id"], int)
        assert body["method"] == "PUT"
        url = yarl.URL(body["upload_url"], encoded=True)
        authority = url.raw_authority
        assert body["headers"] == {"Host": {"values": [authority]}}
        assert f"http://{authority}" == sim.base_url
        assert re.fullmatch(r"/s3/faas-training-dataset/sim/[0-9a-f]{32}\.jpeg", url.raw_path)
        query = url.raw_query_string
        assert re.match(
            r"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA\w+%2F\d{8}%2F"
            r"ap-southeast-1%2Fs3%2Faws4_request&X-Amz-Date=\d{8}T\d{6}Z&X-Amz-Expires=120"
            r"&X-Amz-SignedHeaders=host&x-id=PutObject&X-Amz-Signature=[0-9a-f]{64}$",
            query,
        )
        _, second, _ = await _post(http, sim, json={"file_extension": "png"})
        assert second["assets_id"] == body["assets_id"] + 1
        asset = sim.state.assets[str(body["assets_id"])]
        assert asset.provider == "novita"
        assert asset.content_type is None
        assert sim.state.stats().api_requests == {f"POST {ROUTE}": {"200": 2}}


async def test_assets_id_as_string_and_lifetime_setting() -> None:
    settings = SimSettings(assets_id_as_string=True, url_lifetime_s=600)
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        _, body, _ = await _post(http, sim, json={"file_extension": "webp"})
        assert re.fullmatch(r"[0-9a-f]{32}", body["assets_id"])
        assert "X-Amz-Expires=600&" in body["upload_url"]
        sim.set_faults("lifetime=30")
        _, body, _ = await _post(http, sim, json={"file_extension": "webp"})
        assert "X-Amz-Expires=30&" in body["upload_url"]


@pytest.mark.parametrize(
    ("headers", "status", "reason", "message"),
    [
        ({}, 400, "MISSING_API_KEY", "missing api key"),
        ({"Authorization": "Bearer "}, 400, "MISSING_API_KEY", "missing api key"),
        ({"Authorization": "Bearer wrong"}, 403, "INVALID_API_KEY", "invalid api-key"),
        ({"Authorization": "Basic c2ltLWtleQ=="}, 403, "INVALID_API_KEY", "invalid api-key"),
    ],
)
async def test_auth(headers: dict[str, str], status: int, reason: str, message: str) -> None:
    settings = SimSettings(api_keys=frozenset({"sim-key"}))
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        got, body, _ = await _post(http, sim, headers=headers, json={"file_extension": "png"})
        assert got == status
        assert body == {"code": status, "reason": reason, "message": message, "metadata": {}}
        assert sim.state.assets == {}


async def test_any_key_is_accepted_by_default() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        headers = {"Authorization": "Bearer anything"}
        status, _, _ = await _post(http, sim, headers=headers, json={"file_extension": "png"})
        assert status == 200


@pytest.mark.parametrize(
    ("content_type", "data", "needle"),
    [
        ("text/plain", b'{"file_extension": "png"}', "Content-Type"),
        ("application/json", b"{not json", "JSON"),
        ("application/json", b'["png"]', "object"),
        ("application/json", b"{}", "file_extension"),
        ("application/json", b'{"file_extension": 3}', "file_extension"),
        ("application/json", b'{"file_extension": "gif"}', "file_extension"),
        ("application/json", b'{"file_extension": "PNG"}', "file_extension"),
    ],
)
async def test_validation(content_type: str, data: bytes, needle: str) -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        headers = {**GOOD, "Content-Type": content_type}
        status, body, _ = await _post(http, sim, headers=headers, data=data)
        assert status == 400
        assert body["reason"] == "INVALID_REQUEST_BODY"
        assert body["code"] == 400
        assert needle in body["message"]


async def test_date_header_follows_the_skewed_clock() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        sim.set_faults("skew=-300")
        _, body, resp = await _post(http, sim, json={"file_extension": "png"})
        served = email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()
        assert abs(served - (time.time() - 300)) < 30
        # The URL is signed with the same clock.
        stamp = re.search(r"X-Amz-Date=(\w+)", body["upload_url"])
        assert stamp is not None
        signed = datetime.strptime(stamp[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert abs(signed.timestamp() - served) <= 1


@pytest.mark.parametrize(
    ("plan", "status", "reason", "retry_after"),
    [
        ("api.429=1", 429, "RATE_LIMIT_EXCEEDED", "1"),
        ("api.429=1,api.retry_after=2", 429, "RATE_LIMIT_EXCEEDED", "2"),
        ("api.429=1,api.retry_after=none", 429, "RATE_LIMIT_EXCEEDED", None),
        ("api.500=1", 500, "INTERNAL_ERROR", None),
        ("api.503=1", 503, "SERVICE_UNAVAILABLE", None),
    ],
)
async def test_injected_api_errors(
    plan: str, status: int, reason: str, retry_after: str | None
) -> None:
    async with serve(SimSettings()) as sim, aiohttp.ClientSession() as http:
        sim.set_faults(plan)
        got, body, resp = await _post(http, sim, json={"file_extension": "png"})
        assert got == status
        assert body["code"] == status
        assert body["reason"] == reason
        assert body["metadata"] == {}
        assert resp.headers.get("Retry-After") == retry_after
        assert "Date" in resp.headers
        assert sim.state.assets == {}
        assert sim.state.stats().api_requests == {f"POST {ROUTE}": {str(status): 1}}


async def test_token_bucket_refuses_beyond_its_rate() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        sim.set_faults("api.rate=2")
        statuses: list[int] = []
        retry_afters: list[str | None] = []

        async def one() -> None:
            status, _, resp = await _post(http, sim, json={"file_extension": "png"})
            statuses.append(status)
            retry_afters.append(resp.headers.get("Retry-After"))

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(one)
        # Burst 2, refilled at 2/s: twelve requests at once cannot all pass.
        assert statuses.count(200) >= 2
        assert statuses.count(429) >= 6
        assert set(statuses) <= {200, 429}
        assert all(ra == "1" for s, ra in zip(statuses, retry_afters, strict=True) if s == 429)
        stats = sim.state.stats()
        assert stats.api_rate_limited == statuses.count(429)
        assert stats.api_429 == statuses.count(429)
