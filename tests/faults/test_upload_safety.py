"""Where an upload may go: plain http only to loopback (or when allowed), redirects never followed.

A pre-signed PUT answered with a redirect is not followed (the body and any
header would go to a host nobody signed for); neither is an API answer that
redirects (the API key would follow it). The storage session carries no
credentials at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from ingest.config import DEFAULT_PROVIDERS
from ingest.errors import Action, TransferError
from ingest.http import Timeouts, api_session, check_upload_url, storage_session
from ingest.item import Item, Source
from ingest.providers import provider_class
from ingest.providers.context import Context
from ingest.sniff import ImageType
from ingest.storage import put_file
from tests.images import make_image

SIGNED = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/b/k.png",
        "http://127.8.9.10/b/k.png",
        "http://localhost:9000/b/k.png",
        "http://[::1]:9000/b/k.png",
        "https://bucket.s3.amazonaws.com/k.png",
        "https://storage.example/k.png",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    assert str(check_upload_url(url + SIGNED, allow_insecure=False, provider="p")) == url + SIGNED


@pytest.mark.parametrize(
    "url",
    [
        "http://bucket.s3.amazonaws.com/k.png",
        "http://10.0.0.5/k.png",
        "http://192.168.1.20:9000/k.png",
        "http://localhost.evil.example/k.png",
        "http://127.0.0.1.evil.example/k.png",
        "http://0x7f000001/k.png",
    ],
)
def test_plain_http_elsewhere_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(TransferError) as refused:
        check_upload_url(url + SIGNED, allow_insecure=False, provider="p")
    err = refused.value
    assert err.action is Action.STOP and err.code == "insecure_url"
    assert "allow_insecure_http" in str(err)
    assert "0123456789abcdef" not in str(err) and "X-Amz" not in str(err)
    assert str(check_upload_url(url + SIGNED, allow_insecure=True, provider="p")) == url + SIGNED


@pytest.mark.parametrize("url", ["ftp://host/k.png", "file:///etc/passwd", "s3://bucket/k", "/k"])
def test_other_schemes_fail_the_item(url: str) -> None:
    with pytest.raises(TransferError) as refused:
        check_upload_url(url, allow_insecure=True, provider="p")
    assert refused.value.action is Action.FAIL_ITEM and refused.value.code == "bad_url"


@asynccontextmanager
async def redirecting(status: int) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A server whose every route answers `status` with a Location on the same server's /elsewhere."""
    followed: list[web.Request] = []

    async def redirect(request: web.Request) -> web.StreamResponse:
        await request.read()
        location = f"http://{request.host}/elsewhere{request.path_qs}"
        return web.Response(status=status, headers={"Location": location})

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        followed.append(request)
        await request.read()
        return web.json_response({"assets_id": 1, "upload_url": "http://127.0.0.1:9/x"})

    app = web.Application()
    app.router.add_route("*", "/elsewhere/{tail:.*}", elsewhere)
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", followed
    finally:
        await runner.cleanup()


@pytest.mark.anyio
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirected_put_is_not_followed(tmp_path: Path, status: int) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 5000, seed=1)
    async with (
        redirecting(status) as (base, followed),
        storage_session(Timeouts(connect=2, read=2), 2) as session,
    ):
        with pytest.raises(TransferError) as refused:
            await put_file(
                session, f"{base}/b/k.png{SIGNED}", path, 5000, "image/png", provider="p"
            )
    err = refused.value
    assert err.code == "redirect" and err.status == status and err.action is Action.FAIL_ITEM
    assert followed == []


@pytest.mark.anyio
@pytest.mark.parametrize("status", [302, 307, 308])
async def test_an_api_redirect_is_not_followed_with_the_key(tmp_path: Path, status: int) -> None:
    path = tmp_path / "a.png"
    make_image(path, "png", 5000, seed=2)
    source = Source(Item(key="k", path=path, line=1), 5000, path.stat().st_mtime_ns, ImageType.PNG)
    cls = provider_class("novita")
    async with redirecting(status) as (base, followed):
        settings = dataclasses.replace(DEFAULT_PROVIDERS["novita"], base_url=base)
        timeouts = Timeouts(connect=2, read=2)
        async with (
            api_session(
                base + "/", cls.auth_headers({"api_key_env": "sk-abc"}), timeouts, 2
            ) as api,
            storage_session(timeouts, 2) as storage,
        ):
            provider = cls(Context(api=api, storage=storage, settings=settings))
            with pytest.raises(TransferError) as refused:
                await provider.acquire(source)
    assert refused.value.status == status
    assert followed == []  # the Authorization header went nowhere else


@pytest.mark.anyio
async def test_the_storage_session_carries_no_credentials() -> None:
    async with storage_session(Timeouts(), 2) as session:
        names = {name.lower() for name in session.headers}
    assert names == {"user-agent"}
