"""The emulator's S3-like storage route: admission in S3's order, XML errors, recording."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl
from multidict import CIMultiDict

from ingest.sim import SimServer, SimSettings, serve
from ingest.sim.testing import raw_exchange, request_target

pytestmark = pytest.mark.anyio

BODY = bytes(range(256)) * 256  # 64 KiB
KEY = "sim-key"


async def _acquire(http: aiohttp.ClientSession, sim: SimServer, ext: str = "png") -> Any:
    async with http.post(
        f"{sim.base_url}/v3/assets/training_dataset",
        json={"file_extension": ext},
        headers={"Authorization": f"Bearer {KEY}"},
    ) as resp:
        assert resp.status == 200
        return await resp.json()


async def _put(
    http: aiohttp.ClientSession, url: str | yarl.URL, data: Any = BODY, **kw: Any
) -> tuple[int, str, CIMultiDict[str]]:
    target = url if isinstance(url, yarl.URL) else yarl.URL(url, encoded=True)
    async with http.put(target, data=data, **kw) as resp:
        return resp.status, await resp.text(), CIMultiDict(resp.headers)


async def test_valid_put_lands_and_is_recorded() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        issued = await _acquire(http, sim)
        status, text, headers = await _put(
            http, issued["upload_url"], headers={"Content-Type": "image/png"}
        )
        assert (status, text) == (200, "")
        sha = hashlib.sha256(BODY).hexdigest()
        assert headers["ETag"] == f'"{sha[:32]}"'
        async with http.get(f"{sim.base_url}/_sim/objects") as resp:
            objects = (await resp.json())["objects"]
        assert len(objects) == 1
        obj = objects[0]
        assert obj["sha256"] == sha
        assert obj["size"] == len(BODY)
        assert obj["puts"] == 1
        assert obj["remote_id"] == str(issued["assets_id"])
        assert obj["content_type"] == "image/png"
        assert obj["provider"] == "novita"
        assert obj["key"].startswith("faas-training-dataset/sim/")
        assert obj["key"].endswith(".png")
        # A second PUT of the same URL lands again and is counted.
        assert (await _put(http, issued["upload_url"]))[0] == 200
        stored = sim.state.object_for(str(issued["assets_id"]))
        assert stored is not None
        assert stored.puts == 2
        stats = sim.state.stats()
        assert stats.storage_puts == {"200": 2}
        assert stats.storage_with_authorization == 0
        assert stats.storage_headers["host"] == 2


async def test_reencoded_url_is_signature_mismatch() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim))["upload_url"]
        assert "%2F" in url
        # aiohttp given a str re-quotes the query: %2F becomes "/".
        status, text, headers = await _put(http, yarl.URL(url))
        assert status == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in text
        assert headers["Content-Type"] == "application/xml"
        status, text, _ = await _put(http, url.replace("%2F", "/"))
        assert status == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in text
        assert sim.state.objects == {}
        assert sim.state.stats().signature_mismatch == 2


async def test_expired_url_via_clock_skew() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim))["upload_url"]
        sim.set_faults("skew=121")  # the emulator's clock jumps past the 120 s lifetime
        status, text, _ = await _put(http, url)
        assert status == 403
        assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<Error>')
        assert "<Code>AccessDenied</Code><Message>Request has expired</Message>" in text
        assert "<X-Amz-Expires>120</X-Amz-Expires><Expires>" in text
        for field in ("<ServerTime>", "<RequestId>", "<HostId>"):
            assert field in text
        assert sim.state.stats().expired == 1
        assert sim.state.objects == {}


async def test_expired_url_via_short_lifetime() -> None:
    # The URL's clock starts 10 s in the past and lives 1 s: expired on arrival.
    async with serve(SimSettings(url_lifetime_s=1)) as sim, aiohttp.ClientSession() as http:
        sim.set_faults("skew=-10")
        url = (await _acquire(http, sim))["upload_url"]
        assert "X-Amz-Expires=1&" in url
        sim.set_faults("")
        status, text, _ = await _put(http, url)
        assert status == 403
        assert "Request has expired" in text


async def test_chunked_body_is_501() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield BODY[:1000]
        yield BODY[1000:]

    async with serve() as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim))["upload_url"]
        status, text, _ = await _put(http, url, data=body())
        assert status == 501
        assert "<Code>NotImplemented</Code>" in text
        assert "implies functionality that is not implemented" in text
        assert "<Header>Transfer-Encoding</Header>" in text
        assert sim.state.stats().chunked_rejected == 1
        assert sim.state.objects == {}


async def test_missing_content_length_is_411() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim))["upload_url"]
        host = yarl.URL(url).raw_authority
        request = f"PUT {request_target(url)} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        response = await raw_exchange(sim.base_url, request.encode())
        assert response is not None
        assert response.status == 411
        assert response.headers["content-type"] == "application/xml"
        assert b"<Code>MissingContentLength</Code>" in response.body
        assert b"You must provide the Content-Length HTTP header." in response.body
        assert sim.state.stats().length_rejected == 1


async def test_short_body_is_not_recorded() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim))["upload_url"]
        host = yarl.URL(url).raw_authority
        request = (
            f"PUT {request_target(url)} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY[:1000]
        response = await raw_exchange(sim.base_url, request, half_close=True)
        assert response is None or response.status >= 400
        assert sim.state.objects == {}
        assert sim.state.stats().incomplete_bodies == 1


async def test_authorization_header_is_400() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim))["upload_url"]
        status, text, _ = await _put(
            http, url, headers={"Authorization": f"Bearer {KEY}", "x-api-key": KEY}
        )
        assert status == 400
        assert "<Code>InvalidArgument</Code>" in text
        assert "Only one auth mechanism allowed" in text
        assert KEY not in text
        stats = sim.state.stats()
        assert stats.storage_with_authorization == 1
        assert stats.storage_with_api_key == 1
        assert stats.storage_headers["authorization"] == 1


async def test_expect_continue_is_refused_before_the_body() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim))["upload_url"]
        host = yarl.URL(url).raw_authority
        bad_target = request_target(url).replace("%2F", "/")
        request = (
            f"PUT {bad_target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(BODY)}\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        response = await raw_exchange(sim.base_url, request.encode())
        assert response is not None
        assert response.status == 403
        assert b"SignatureDoesNotMatch" in response.body
        # A good request is told to go on, then lands.
        status, _, _ = await _put(http, url, expect100=True)
        assert status == 200
        assert sim.state.stats().storage_puts == {"200": 1, "403": 1}


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [
        ("/s3/faas-training-dataset/sim/never.png", 403, "AccessDenied"),
        (
            "/s3/faas-training-dataset/sim/never.png?X-Amz-Algorithm=AWS4-HMAC-SHA256",
            400,
            "AuthorizationQueryParametersError",
        ),
    ],
)
async def test_unsigned_or_malformed_is_refused(target: str, status: int, code: str) -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        got, text, _ = await _put(http, f"{sim.base_url}{target}")
        assert got == status
        assert f"<Code>{code}</Code>" in text


async def test_key_never_issued_is_403() -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim))["upload_url"]
        # Sign a URL for another key with the emulator's own credentials.
        from datetime import UTC, datetime

        from ingest.sim import sigv4

        creds = sim.credentials
        host = yarl.URL(url).raw_authority
        forged = sigv4.presign(
            "PUT",
            f"http://{host}",
            "/s3/faas-training-dataset/sim/forged.png",
            access_key=creds.access_key,
            secret=creds.secret,
            region=creds.region,
            now=datetime.now(tz=UTC),
            expires=60,
            signed_headers={"host": host},
        )
        status, text, _ = await _put(http, forged)
        assert status == 403
        assert "<Code>AccessDenied</Code><Message>Access Denied</Message>" in text
        assert sim.state.objects == {}


async def test_put_reset_drops_the_connection_and_records_nothing() -> None:
    async with serve(SimSettings()) as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim))["upload_url"]
        sim.set_faults("put.reset=1")
        with pytest.raises(aiohttp.ClientConnectionError):
            await _put(http, url, data=BODY * 16)
        assert sim.state.objects == {}
        assert sim.state.stats().resets >= 1
        sim.set_faults("")
        assert (await _put(http, url))[0] == 200
        (stored,) = sim.state.objects.values()
        assert stored.puts == 1


@pytest.mark.parametrize(
    ("plan", "status", "code", "retry_after"),
    [
        ("put.503=1", 503, "SlowDown", None),
        ("put.503=1,put.retry_after=3", 503, "SlowDown", "3"),
        ("put.500=1", 500, "InternalError", None),
        ("put.429=1,put.retry_after=1", 429, "TooManyRequests", "1"),
    ],
)
async def test_injected_storage_errors(
    plan: str, status: int, code: str, retry_after: str | None
) -> None:
    async with serve() as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim))["upload_url"]
        sim.set_faults(plan)
        got, text, headers = await _put(http, url)
        assert got == status
        assert f"<Code>{code}</Code>" in text
        assert headers.get("Retry-After") == retry_after
        assert sim.state.objects == {}


async def test_store_dir_keeps_the_bytes(tmp_path: Path) -> None:
    async with serve(SimSettings(store_dir=tmp_path)) as sim, aiohttp.ClientSession() as http:
        url = (await _acquire(http, sim, "webp"))["upload_url"]
        assert (await _put(http, url))[0] == 200
        (key,) = sim.state.objects
        assert (tmp_path / key).read_bytes() == BODY
