"""The reference's pieces in one process: the signer speaks every provider's flow, the bare
loop and the engine both upload through it, and the sink receives what each flow stores there.

The sink here is a counting aiohttp route, not nginx (the nginx-backed run is
`tests/integration/test_bench_reference.py`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

import ingest
from ingest.bench.bare import Bare, Flow, sink_objects
from ingest.bench.dataset import make_images, write_manifest
from ingest.bench.signer import build_app
from ingest.providers import PROVIDER_NAMES

SCENARIO: dict[str, Any] = {"model_id": "bench-model"}


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def reference() -> AsyncIterator[tuple[str, Counter[str]]]:
    """A counting PUT sink and the signer pointing at it: (signer URL, stored bytes by path)."""
    stored: Counter[str] = Counter()

    async def put(request: web.Request) -> web.StreamResponse:
        assert "X-Amz-Signature=" in request.query_string
        assert request.headers.get("Transfer-Encoding") is None  # exact Content-Length
        stored[request.path] = len(await request.read())
        return web.Response(status=201)

    sink = web.Application()
    sink.router.add_route("PUT", "/{tail:.+}", put)
    async with serving(sink) as sink_url, serving(build_app(sink_url)) as signer_url:
        yield signer_url, stored


def api_url(signer: str, provider: str) -> str:
    return signer + ("/v1" if provider == "scenario" else "")


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDER_NAMES)
async def test_bare_loop_uploads_every_flow_through_the_signer(
    provider: str, tmp_path: Path
) -> None:
    paths = make_images(tmp_path, 12, 3000)
    jobs = [(str(p), p.stat().st_size, None) for p in paths]
    async with reference() as (signer, stored):
        bare = Bare(cast(Flow, provider), api_url(signer, provider), "k", 4, 4)
        result = await bare.run(jobs, 4)
    assert (result["files"], result["failed"], result["bytes"]) == (12, 0, 12 * 3000)
    assert len(stored) == sink_objects(provider, [3000] * 12)
    assert all(size == 3000 for size in stored.values())


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDER_NAMES)
async def test_the_engine_accepts_the_signers_urls_for_every_provider(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("NOVITA_API_KEY", "MODELHUNTER_API_KEY", "AUTOENHANCE_API_KEY"):
        monkeypatch.setenv(variable, "k")
    monkeypatch.setenv("SCENARIO_API_KEY", "k")
    monkeypatch.setenv("SCENARIO_API_SECRET", "s")
    paths = make_images(tmp_path / "images", 9, 3000)
    manifest = write_manifest(paths, tmp_path / "manifest.jsonl")
    extra = SCENARIO if provider == "scenario" else {}
    async with reference() as (signer, stored):
        result = await ingest.upload(
            manifest,
            provider=provider,
            journal=tmp_path / "j.journal",
            base_url=api_url(signer, provider),
            **extra,
        )
    assert (result.done, result.failed, result.stop_reason) == (9, 0, None)
    assert len(stored) == sink_objects(provider, [3000] * 9)


def test_sink_objects_follow_where_each_flow_puts_its_bytes() -> None:
    sizes = [1000, 7_000_000, 12 * 2**20]
    assert sink_objects("novita", sizes) == 3
    assert sink_objects("scenario", sizes) == 2 + 3  # JSON under 3.5 MB; 5 MiB parts above


def test_bare_sends_scenario_images_as_the_adapter_does() -> None:
    from ingest.bench import bare
    from ingest.providers.scenario import adapter, multipart

    assert bare.SCENARIO_JSON_LIMIT == adapter.BASE64_LIMIT
    assert bare.PART_SIZE == multipart.PART_SIZE
    assert bare.ATTACH_BATCH == adapter.ATTACH_BATCH
