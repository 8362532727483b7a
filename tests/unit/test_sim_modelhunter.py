"""The emulator's ModelHunter routes: auth, validation, envelopes, signed Content-Type, complete."""

from __future__ import annotations

import argparse
import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yarl

from ingest.cli import sim as sim_cli
from ingest.config import DEFAULT_PROVIDERS
from ingest.errors import Action, TransferError
from ingest.http import Timeouts, api_session, storage_session
from ingest.providers.base import Landed
from ingest.providers.context import Context
from ingest.providers.modelhunter import ModelHunterProvider
from ingest.sim import SimServer, SimSettings, serve
from ingest.sim.modelhunter import completed_by_sha, files_of
from ingest.sim.settings import ModelHunterSimSettings, ThrottleBody
from tests.fakeapi import source as jpeg_source

pytestmark = pytest.mark.anyio

UPLOAD = "/api/v1/files/upload-url"
KEY = "river_test_0123456789abcdef0123456789abcdef"
GOOD = {"Authorization": f"Bearer {KEY}"}
BODY = bytes(range(256)) * 16  # 4 KiB
REQUEST = {"filename": "cat.jpg", "contentType": "image/jpeg", "sizeBytes": len(BODY)}


async def _call(
    http: aiohttp.ClientSession,
    sim: SimServer,
    path: str,
    *,
    json: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    hdrs = dict(GOOD if headers is None else headers)
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    async with http.post(f"{sim.base_url}{path}", json=json, data=data, headers=hdrs) as resp:
        return resp.status, await resp.json(content_type=None), resp


async def _issue(http: aiohttp.ClientSession, sim: SimServer, **changes: Any) -> dict[str, Any]:
    status, body, _ = await _call(http, sim, UPLOAD, json={**REQUEST, **changes})
    assert status == 200, body
    return dict(body["data"])


async def _put(
    http: aiohttp.ClientSession, url: str, content_type: str = "image/jpeg", data: bytes = BODY
) -> tuple[int, str]:
    async with http.put(
        yarl.URL(url, encoded=True), data=data, headers={"Content-Type": content_type}
    ) as resp:
        return resp.status, await resp.text()


def _complete(file_id: str) -> str:
    return f"/api/v1/files/{file_id}/complete"


async def test_upload_url_signs_content_type_and_expires_at_matches_the_url() -> None:
    async with serve(SimSettings(url_lifetime_s=900)) as sim, aiohttp.ClientSession() as http:
        status, body, resp = await _call(http, sim, UPLOAD, json=REQUEST)
        assert status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert body["success"] is True
        data = body["data"]
        assert set(data) == {"upload_url", "file_id", "expires_at"}
        assert re.fullmatch(r"file_[0-9a-f]{24}", data["file_id"])
        url = yarl.URL(data["upload_url"], encoded=True)
        assert url.raw_path == f"/s3/modelhunter-uploads/uploads/{data['file_id']}"
        query = url.raw_query_string
        assert "X-Amz-SignedHeaders=content-type%3Bhost&" in query
        assert "X-Amz-Expires=900&" in query
        amz_date = re.search(r"X-Amz-Date=(\w+)", query)
        assert amz_date is not None
        signed = datetime.strptime(amz_date[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expires = datetime.strptime(data["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert (expires - signed).total_seconds() == 900
        asset = sim.state.assets[data["file_id"]]
        assert (asset.provider, asset.content_type) == ("modelhunter", "image/jpeg")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "AUTH_REQUIRED"),
        ({"Authorization": "Bearer river_test_wrong"}, "AUTH_INVALID_TOKEN"),
        ({"Authorization": f"Basic {KEY}"}, "AUTH_INVALID_TOKEN"),
    ],
)
async def test_auth(headers: dict[str, str], code: str) -> None:
    settings = SimSettings(api_keys=frozenset({KEY}))
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        for path in (UPLOAD, _complete("file_x")):
            status, body, _ = await _call(http, sim, path, json=REQUEST, headers=headers)
            assert status == 401
            assert body["success"] is False
            assert body["error"]["code"] == code
            assert body["error"]["message"]
        assert sim.state.assets == {}


@pytest.mark.parametrize(
    ("data", "status", "code", "field"),
    [
        (b"{not json", 400, "VALIDATION_ERROR", None),
        (b"[1]", 400, "VALIDATION_ERROR", None),
        (b'{"contentType": "image/png", "sizeBytes": 3}', 400, "MISSING_PARAMETER", "filename"),
        (b'{"filename": "a.png", "sizeBytes": 3}', 400, "MISSING_PARAMETER", "contentType"),
        (
            b'{"filename": "a.png", "contentType": "image/png"}',
            400,
            "MISSING_PARAMETER",
            "sizeBytes",
        ),
        (
            b'{"filename": "", "contentType": "image/png", "sizeBytes": 3}',
            400,
            "INVALID_PARAMETER",
            "filename",
        ),
        (
            b'{"filename": "a.png", "contentType": "image/png", "sizeBytes": "3"}',
            400,
            "INVALID_PARAMETER",
            "sizeBytes",
        ),
        (
            b'{"filename": "a.png", "contentType": "image/png", "sizeBytes": 0}',
            400,
            "INVALID_PARAMETER",
            "sizeBytes",
        ),
        (
            b'{"filename": "a.gif", "contentType": "image/gif", "sizeBytes": 3}',
            400,
            "VALIDATION_ERROR",
            "contentType",
        ),
        (
            b'{"filename": "a.png", "contentType": "image/png", "sizeBytes": 2048}',
            422,
            "FILE_TOO_LARGE",
            "sizeBytes",
        ),
    ],
)
async def test_validation(data: bytes, status: int, code: str, field: str | None) -> None:
    settings = SimSettings(modelhunter=ModelHunterSimSettings(max_size_bytes=1024))
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        got, body, _ = await _call(http, sim, UPLOAD, data=data)
        assert got == status, body
        assert body["success"] is False
        assert body["error"]["code"] == code
        if field is None:
            assert "details" not in body["error"]
        else:
            assert body["error"]["details"]["field"] == field
        if code == "FILE_TOO_LARGE":
            assert body["error"]["message"] == "File size exceeds the 1024 byte limit"
        if code == "VALIDATION_ERROR" and field == "contentType":
            assert body["error"]["message"] == "Invalid contentType: must be a supported MIME type"
        got, body, _ = await _call(
            http, sim, UPLOAD, data=b"{}", headers={**GOOD, "Content-Type": "text/plain"}
        )
        assert (got, body["error"]["code"]) == (400, "VALIDATION_ERROR")
        assert sim.state.assets == {}


async def test_put_with_another_content_type_is_refused_by_the_signature() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        data = await _issue(http, sim)
        status, text = await _put(http, data["upload_url"], content_type="image/png")
        assert status == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in text
        assert sim.state.objects == {}
        assert await _put(http, data["upload_url"]) == (200, "")
        [obj] = sim.state.objects.values()
        assert (obj.remote_id, obj.content_type, obj.size) == (data["file_id"], "image/jpeg", 4096)


async def test_unsigned_content_type_setting_accepts_any_type() -> None:
    settings = SimSettings(modelhunter=ModelHunterSimSettings(sign_content_type=False))
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        data = await _issue(http, sim)
        assert "X-Amz-SignedHeaders=host&" in data["upload_url"]
        assert (await _put(http, data["upload_url"], content_type="image/png"))[0] == 200


async def test_expired_url_is_refused_r2_style() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        data = await _issue(http, sim)
        sim.set_faults("skew=86400")
        status, text = await _put(http, data["upload_url"])
        assert status == 403
        assert "<Code>ExpiredRequest</Code>" in text
        assert sim.state.stats().expired == 1


async def test_complete_needs_the_bytes_then_is_idempotent() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        data = await _issue(http, sim)
        file_id = data["file_id"]
        status, body, _ = await _call(http, sim, _complete(file_id))
        assert (status, body["error"]["code"]) == (404, "FILE_NOT_FOUND")  # no bytes yet
        assert (await _put(http, data["upload_url"]))[0] == 200
        status, first, _ = await _call(http, sim, _complete(file_id))
        assert status == 200
        assert first["success"] is True
        done = first["data"]
        assert set(done) == {"id", "url", "filename", "content_type", "size_bytes", "created_at"}
        assert done["id"] == file_id
        assert done["url"] == f"{sim.base_url}/cdn/files/{file_id}.jpg"
        assert (done["filename"], done["content_type"], done["size_bytes"]) == (
            "cat.jpg",
            "image/jpeg",
            len(BODY),
        )
        status, second, _ = await _call(http, sim, _complete(file_id))
        assert (status, second) == (200, first)
        record = files_of(sim)[file_id]
        assert record.completes == 2
        assert sum(completed_by_sha(sim).values()) == 1
        async with http.get(f"{sim.base_url}/_sim/modelhunter/files") as resp:
            listed = (await resp.json())["files"]
        assert [(f["file_id"], f["completed"], f["completes"]) for f in listed] == [
            (file_id, True, 2)
        ]


async def test_complete_refuses_unknown_foreign_and_short_uploads() -> None:
    other = "river_test_other"
    settings = SimSettings(api_keys=frozenset({KEY, other}))
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        status, body, _ = await _call(http, sim, _complete("file_nope"))
        assert (status, body["error"]["code"]) == (404, "FILE_NOT_FOUND")
        assert body["error"]["message"].startswith("File not found or upload URL has expired")
        data = await _issue(http, sim)
        assert (await _put(http, data["upload_url"]))[0] == 200
        foreign = {"Authorization": f"Bearer {other}"}
        status, body, _ = await _call(http, sim, _complete(data["file_id"]), headers=foreign)
        assert (status, body["error"]["code"]) == (404, "FILE_NOT_FOUND")
        short = await _issue(http, sim, sizeBytes=len(BODY) + 1)
        assert (await _put(http, short["upload_url"]))[0] == 200
        status, body, _ = await _call(http, sim, _complete(short["file_id"]))
        assert (status, body["error"]["code"]) == (400, "VALIDATION_ERROR")
        assert "sizeBytes" in body["error"]["message"]


@pytest.mark.parametrize("forget", [True, False])
async def test_a_file_not_completed_before_its_url_expired_is_forgotten(forget: bool) -> None:
    """complete-upload: 404 FILE_NOT_FOUND "File not found or upload URL has expired".

    Without ``--lifetime`` the URLs live ModelHunter's 15 minutes (get-upload-url),
    not the emulator-wide 120 s they once had: a complete 14:50 later still works.
    """
    settings = SimSettings(modelhunter=ModelHunterSimSettings(forget_expired=forget))
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        finished, late = await _issue(http, sim), await _issue(http, sim)
        assert "X-Amz-Expires=900&" in finished["upload_url"]
        for data in (finished, late):
            assert (await _put(http, data["upload_url"]))[0] == 200
        sim.set_faults("skew=890")  # within the URLs' 15 minutes
        status, done, _ = await _call(http, sim, _complete(finished["file_id"]))
        assert status == 200
        sim.set_faults("skew=901")  # past them
        status, body, _ = await _call(http, sim, _complete(late["file_id"]))
        if forget:
            assert (status, body["error"]["code"]) == (404, "FILE_NOT_FOUND")
        else:
            assert (status, body["data"]["id"]) == (200, late["file_id"])
        assert (await _call(http, sim, _complete(finished["file_id"])))[:2] == (200, done)


async def test_a_complete_that_is_not_idempotent_answers_409_the_second_time() -> None:
    settings = SimSettings(modelhunter=ModelHunterSimSettings(complete_repeat="conflict"))
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        data = await _issue(http, sim)
        assert (await _put(http, data["upload_url"]))[0] == 200
        assert (await _call(http, sim, _complete(data["file_id"])))[0] == 200
        status, body, _ = await _call(http, sim, _complete(data["file_id"]))
        assert (status, body["error"]["code"]) == (409, "ALREADY_COMPLETED")


@pytest.mark.parametrize(
    ("shape", "body"),
    [("envelope", None), ("text", b"Too Many Requests"), ("empty", b"")],
)
async def test_the_429_body_is_a_setting(shape: ThrottleBody, body: bytes | None) -> None:
    settings = SimSettings(modelhunter=ModelHunterSimSettings(throttle_body=shape))
    async with serve(settings) as sim, aiohttp.ClientSession() as http:
        sim.set_faults("api.429=1,api.retry_after=2")
        async with http.post(f"{sim.base_url}{UPLOAD}", json=REQUEST, headers=GOOD) as resp:
            got = await resp.read()
            assert (resp.status, resp.headers.get("Retry-After")) == (429, "2")
        if body is None:
            assert orjson.loads(got)["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        else:
            assert got == body


async def test_images_are_limited_to_50_mb_other_files_to_100() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        for content_type, size, status in [
            ("image/png", 50_000_000, 200),
            ("image/png", 50_000_001, 422),
            ("video/mp4", 100_000_000, 200),
            ("video/mp4", 100_000_001, 422),
        ]:
            request = {**REQUEST, "contentType": content_type, "sizeBytes": size}
            got, body, _ = await _call(http, sim, UPLOAD, json=request)
            assert got == status, (content_type, size, body)
            if status == 422:
                limit = "50 MB" if content_type.startswith("image/") else "100 MB"
                assert body["error"]["message"] == f"File size exceeds the {limit} limit"


@pytest.mark.parametrize(
    ("plan", "status", "code"),
    [
        ("api.429=1,api.retry_after=2", 429, "RATE_LIMIT_EXCEEDED"),
        ("api.500=1", 500, "INTERNAL_ERROR"),
        ("api.503=1", 503, "SERVICE_UNAVAILABLE"),
    ],
)
async def test_injected_errors_use_the_envelope(plan: str, status: int, code: str) -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        sim.set_faults(plan)
        got, body, resp = await _call(http, sim, UPLOAD, json=REQUEST)
        assert got == status
        assert body == {
            "success": False,
            "error": {"code": code, "message": body["error"]["message"]},
        }
        assert resp.headers.get("Retry-After") == ("2" if status == 429 else None)


async def test_api_route_fault_hits_only_the_complete_route() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        sim.set_faults("api.503=1,api.route=/complete")
        data = await _issue(http, sim)
        assert (await _put(http, data["upload_url"]))[0] == 200
        status, body, _ = await _call(http, sim, _complete(data["file_id"]))
        assert (status, body["error"]["code"]) == (503, "SERVICE_UNAVAILABLE")
        sim.set_faults("")
        assert (await _call(http, sim, _complete(data["file_id"])))[0] == 200


async def test_adapter_round_trip_and_content_type_mismatch(tmp_path: Path) -> None:
    """The adapter against the emulator: a target declared as another type is refused."""
    source = jpeg_source(tmp_path, "cat.jpg", 5000)
    async with serve() as sim:
        settings = dataclasses.replace(DEFAULT_PROVIDERS["modelhunter"], base_url=sim.base_url)
        timeouts = Timeouts(connect=5, read=10)
        async with (
            api_session(
                sim.base_url + "/",
                ModelHunterProvider.auth_headers({"api_key_env": KEY}),
                timeouts,
                4,
            ) as api,
            storage_session(timeouts, 4) as storage,
        ):
            mh = ModelHunterProvider(Context(api=api, storage=storage, settings=settings))
            target = await mh.acquire(source)
            assert target.lease is not None and target.lease.source == "field"
            wrong = dataclasses.replace(target, content_type="image/png")
            with pytest.raises(TransferError) as info:
                await mh.transfer(source, wrong)
            assert (info.value.status, info.value.code) == (403, "SignatureDoesNotMatch")
            assert info.value.action is Action.RESIGN
            await mh.transfer(source, target)
            [landed] = await mh.finalize([(source, target)])
            assert isinstance(landed, Landed)
            assert landed.remote_id == target.remote_id
            assert landed.url == f"{sim.base_url}/cdn/files/{target.remote_id}.jpg"


def test_sim_command_flags() -> None:
    parser = argparse.ArgumentParser(prog="ingest")
    sim_cli.register(parser.add_subparsers(dest="command", required=True))
    defaults = parser.parse_args(["sim"])
    assert sim_cli._modelhunter_settings(defaults) == ModelHunterSimSettings()
    args = parser.parse_args(
        [
            "sim",
            "--modelhunter-max-mb",
            "0.5",
            "--modelhunter-unsigned-content-type",
            "--modelhunter-keep-expired",
            "--modelhunter-complete-repeat",
            "conflict",
            "--modelhunter-throttle-body",
            "text",
        ]
    )
    assert sim_cli._modelhunter_settings(args) == ModelHunterSimSettings(
        sign_content_type=False,
        max_size_bytes=500_000,
        image_max_bytes=500_000,
        forget_expired=False,
        complete_repeat="conflict",
        throttle_body="text",
    )


def test_each_provider_has_its_own_url_lifetime_unless_one_is_set() -> None:
    assert SimSettings().lifetime_of("modelhunter") == 900  # get-upload-url
    assert SimSettings().lifetime_of("novita") == 120  # its example URL
    assert "modelhunter 900 s" in SimSettings().describe_lifetime()
    assert SimSettings(url_lifetime_s=3).lifetime_of("modelhunter") == 3
    assert SimSettings(url_lifetime_s=3).describe_lifetime() == "3 s"
