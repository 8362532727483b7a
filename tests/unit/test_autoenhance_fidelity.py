"""Autoenhance's undocumented behaviours (fidelity gaps): the adapter against each way the emulator plays.

docs/fidelity/autoenhance.md maps each gap to the emulator setting and the
test here. Everything runs in process: the emulator on loopback, the real
adapter on real sessions, the engine where a rule of the engine is the point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingest.clock import FakeClock
from ingest.config import DEFAULT_PROVIDERS, RunSettings
from ingest.engine import Engine, EngineSettings, Outcome
from ingest.errors import Action, Scope, TransferError
from ingest.http import Timeouts, api_session, storage_session
from ingest.item import Item, Member, Source
from ingest.journal import Header, Journal
from ingest.manifest import read_manifest
from ingest.providers.autoenhance import AutoenhanceProvider, NameUses, needs_api_key
from ingest.providers.context import Context
from ingest.sim import SimServer, SimSettings, serve
from ingest.sim.settings import AutoenhanceSimSettings
from ingest.sniff import ImageType
from ingest.transport.session import ClientRules, Session
from tests.fakeapi import source
from tests.fakeprovider import FakeProvider, refusal, run_engine, write_manifest
from tests.images import image_bytes, make_image

pytestmark = pytest.mark.anyio

KEY = "ae-fidelity-0123456789"
TIMEOUTS = Timeouts(connect=5, read=10)
Middleware = Callable[
    [aiohttp.ClientRequest, Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]],
    Awaitable[aiohttp.ClientResponse],
]


@contextlib.asynccontextmanager
async def emulated(
    *,
    storage_middleware: Middleware | None = None,
    sim: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[SimServer, AutoenhanceProvider]]:
    """The emulator with these Autoenhance settings, and the adapter wired to it."""
    settings = SimSettings(
        api_keys=frozenset({KEY}), autoenhance=AutoenhanceSimSettings(**options), **(sim or {})
    )
    async with serve(settings) as server:
        psettings = dataclasses.replace(DEFAULT_PROVIDERS["autoenhance"], base_url=server.base_url)
        params = AutoenhanceProvider.run_params(psettings, {})
        headers = AutoenhanceProvider.auth_headers({"api_key_env": KEY})
        storage = (
            storage_session(TIMEOUTS, 4)
            if storage_middleware is None
            else Session(
                headers={},
                limit=4,
                rules=ClientRules(TIMEOUTS.connect, TIMEOUTS.read, None, storage=True),
                lean=None,
                client=aiohttp.ClientSession(middlewares=(storage_middleware,)),
            )
        )
        async with api_session(server.base_url + "/", headers, TIMEOUTS, 4) as api, storage:
            ctx = Context(api=api, storage=storage, settings=psettings, params=params)
            yield server, AutoenhanceProvider(ctx)


async def run(tmp_path: Path, provider: AutoenhanceProvider, count: int) -> Outcome:
    """`count` JPEGs through the engine, one PUT at a time (so the order of PUTs is fixed)."""
    entries = []
    for n in range(count):
        make_image(tmp_path / f"room{n}.jpg", "jpeg", 3000 + n, seed=n)
        entries.append({"path": f"room{n}.jpg", "id": f"k{n}"})
    manifest = write_manifest(tmp_path / "m.jsonl", entries)
    journal, state = Journal.open(
        tmp_path / "journal", Header(provider="autoenhance", manifest=str(manifest))
    )
    with journal:
        engine = Engine(
            provider,
            journal,
            state,
            EngineSettings(RunSettings(put_concurrency=1, lookahead=0, api_concurrency=1)),
            rng=random.Random(3),
        )
        return await engine.run(read_manifest(manifest))


async def order_images(sim: SimServer, provider: AutoenhanceProvider) -> list[dict[str, Any]]:
    order_id = provider._ctx.params["order_id"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{sim.base_url}/v3/orders/{order_id}", headers={"x-api-key": KEY}) as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
    images: list[dict[str, Any]] = body["images"]
    assert body["total_images"] == len(images)
    return images


# -- gap: is content_type honoured? -------------------------------------------------


@pytest.mark.parametrize(
    ("honoured", "puts", "landed_as"),
    [
        ("honoured", {"200": 3}, "image/jpeg"),
        # The first item's PUT meets the mismatch and is sent again as octet-stream;
        # the run has learnt, so the others go as octet-stream first.
        ("ignored", {"200": 3, "403": 1}, "application/octet-stream"),
    ],
)
async def test_uploads_work_whether_or_not_content_type_is_honoured(
    tmp_path: Path, honoured: str, puts: dict[str, int], landed_as: str
) -> None:
    async with emulated(content_type=honoured) as (sim, ae):
        outcome = await run(tmp_path, ae, 3)
        assert (outcome.counters.done, outcome.counters.failed) == (3, 0)
        assert outcome.counters.resigns == 0  # the second try is the adapter's, on the same URL
        stats = sim.state.stats()
        assert stats.storage_puts == puts
        assert {obj.content_type for obj in sim.state.objects.values()} == {landed_as}
        assert len(await order_images(sim, ae)) == 3


async def test_a_persistent_signature_mismatch_leaves_at_most_two_images(tmp_path: Path) -> None:
    """Something on the way (here a proxy) rewrites Content-Type: no PUT can ever match.

    One re-sign (a second image, the API has no re-issue call; the first,
    which got no bytes, is deleted), each image tried with the declared type
    and octet-stream; then the item fails. Before `resign_limit` it made 9.
    """

    async def rewrite(
        request: aiohttp.ClientRequest,
        handler: Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]],
    ) -> aiohttp.ClientResponse:
        request.headers["Content-Type"] = "image/x-rewritten"
        return await handler(request)

    async with emulated(storage_middleware=rewrite) as (sim, ae):
        outcome = await run(tmp_path, ae, 1)
        assert (outcome.counters.done, outcome.counters.failed) == (0, 1)
        assert outcome.counters.resigns == 1
        stats = sim.state.stats()
        assert stats.api_requests["POST /v3/images/"] == {"200": 2}  # at most two images
        assert stats.api_requests["DELETE /v3/images/{image_id}"] == {"204": 1}
        assert stats.storage_puts == {"403": 4}
        [image] = await order_images(sim, ae)  # the order keeps one, waiting
        assert image["status"] == "waiting"


async def test_a_renewed_url_replaces_its_image_and_a_landed_one_stays(tmp_path: Path) -> None:
    """Any re-sign (expiry too) deletes the image its old URL belonged to; an upload never."""
    async with emulated() as (sim, ae):
        item = source(tmp_path, "attic.jpg")
        first = await ae.acquire(item)
        second = await ae.acquire(item)  # as the engine re-signs
        [image] = await order_images(sim, ae)
        assert image["image_id"] == second.remote_id != first.remote_id
        await ae.transfer(item, second)
        third = await ae.acquire(item)  # the same key again later (--reupload-changed)
        listed = {image["image_id"]: image["status"] for image in await order_images(sim, ae)}
        assert listed == {second.remote_id: "processing", third.remote_id: "waiting"}


# -- gap: upload_url on the API host ----------------------------------------------------


async def test_an_upload_url_on_the_api_host_is_put_with_the_key(tmp_path: Path) -> None:
    async with emulated(upload_host="api") as (sim, ae):
        item = source(tmp_path, "hall.jpg", 2048)
        target = await ae.acquire(item)
        assert target.url is not None and needs_api_key(target.url, sim.base_url)
        # No expiry in the URL, none documented: the lease is the fallback hour.
        assert target.lease is not None and target.lease.source == "default"
        await ae.transfer(item, target)
        [obj] = sim.state.objects.values()
        assert (obj.remote_id, obj.size) == (target.remote_id, 2048)
        assert sim.state.stats().api_requests["PUT /v3/images/{image_id}/upload"] == {"200": 1}


async def test_a_pre_signed_url_never_gets_the_key(tmp_path: Path) -> None:
    async with emulated() as (sim, ae):
        outcome = await run(tmp_path, ae, 2)
        assert outcome.counters.done == 2
        stats = sim.state.stats()
        assert stats.storage_with_api_key == stats.storage_with_authorization == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.autoenhance.ai/v3/images/i/upload", True),
        ("https://API.autoenhance.ai:443/v3/up?token=t", True),
        ("https://api.autoenhance.ai/v3/up?X-Amz-Signature=00&X-Amz-Date=1", False),
        ("https://autoenhanceapi-prod.s3.eu-west-1.amazonaws.com/o/i", False),
        ("http://api.autoenhance.ai/v3/images/i/upload", False),  # another origin
        ("https://api.autoenhance.ai:8443/v3/images/i/upload", False),
    ],
)
def test_the_key_goes_only_to_the_api_origin_and_only_unsigned(url: str, expected: bool) -> None:
    assert needs_api_key(url, "https://api.autoenhance.ai") is expected


async def test_the_api_host_upload_refuses_a_put_without_the_key(tmp_path: Path) -> None:
    async with emulated(upload_host="api") as (sim, ae):
        target = await ae.acquire(source(tmp_path, "hall.jpg", 2048))
        assert target.url is not None
        async with aiohttp.ClientSession() as http, http.put(target.url, data=b"x" * 64) as resp:
            assert resp.status == 401
        assert sim.state.objects == {}


# -- gap: 429 bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["worded", "generic", "empty"])
async def test_the_same_name_429_is_known_whatever_its_body(tmp_path: Path, body: str) -> None:
    """Worded: by its words; generic or empty: by the 30 creates of that name this hour,
    or (a name an earlier run used up) by a Retry-After far past the rate limit's."""
    async with emulated(body_429=body, rate=None) as (sim, ae):
        item = source(tmp_path, "front.jpg")
        for _ in range(30):
            await ae.acquire(item)
        with pytest.raises(TransferError) as info:
            await ae.acquire(item)
        err = info.value
        assert (err.status, err.code, err.action, err.scope) == (
            429,
            "same_name_limit",
            Action.FAIL_ITEM,
            Scope.ITEM,
        )
        assert "--retry-failed" in err.message
        # A later run (its own count empty) meets the same 429: its hour-long Retry-After
        # tells it apart. It was a plane-wide pause that stalled every item for minutes.
        ae._names = NameUses()
        with pytest.raises(TransferError) as info:
            await ae.acquire(item)
        assert (info.value.code, info.value.scope) == ("same_name_limit", Scope.ITEM)
        # A rate-limit 429 of the same shape, for a name barely used, is a pace to slow to.
        sim.set_faults("api.429=1")
        with pytest.raises(TransferError) as info:
            await ae.acquire(source(tmp_path, "back.jpg"))
        assert (info.value.code, info.value.action) == ("rate_limited", Action.RETRY)
        assert info.value.scope is Scope.PLANE


# -- SDK shapes of errors; formats and size -------------------------------------------------------


async def test_a_bad_key_stops_with_the_detail_object_in_words(tmp_path: Path) -> None:
    async with emulated() as (_, ae):
        ae._ctx.api.headers["x-api-key"] = "wrong"
        with pytest.raises(TransferError) as info:
            await ae.acquire(source(tmp_path))
        err = info.value
        assert (err.status, err.code, err.action) == (401, "unauthorized", Action.STOP)
        assert err.message == "Unauthorized: x-api-key: Invalid API key"


async def test_a_type_the_api_refuses_fails_the_item_with_its_words(tmp_path: Path) -> None:
    async with emulated(content_types=frozenset({"image/png"})) as (_, ae):
        with pytest.raises(TransferError) as info:
            await ae.acquire(source(tmp_path))
        err = info.value
        assert (err.status, err.code, err.action) == (422, "validation_error", Action.FAIL_ITEM)
        assert "json.content_type: Unsupported content type 'image/jpeg'" in err.message


async def test_a_body_over_the_api_host_limit_fails_the_item(tmp_path: Path) -> None:
    async with emulated(upload_host="api", max_size_bytes=1000) as (sim, ae):
        item = source(tmp_path, "big.jpg", 2048)
        target = await ae.acquire(item)
        with pytest.raises(TransferError) as info:
            await ae.transfer(item, target)
        assert (info.value.status, info.value.action) == (413, Action.FAIL_ITEM)
        assert sim.state.objects == {}


# -- the engine's budget for a provider without a re-issue call -------------------------------


@pytest.mark.parametrize(
    ("code", "acquires", "puts"),
    [
        ("SignatureDoesNotMatch", 2, 2),  # one re-sign for a refusal that is not expiry
        ("expired", 3, 3),  # expiry keeps the run's max_resigns (2 here)
    ],
)
async def test_resign_limit_bounds_only_refusals_other_than_expiry(
    tmp_path: Path, code: str, acquires: int, puts: int
) -> None:
    clock = FakeClock()
    provider = FakeProvider(clock)
    provider.caps = dataclasses.replace(provider.caps, resign_limit=1)
    provider.fail_always("transfer", "k0", refusal(Action.RESIGN, code, op="transfer"))
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"path": "a.png", "id": "k0"}])
    ran = await run_engine(tmp_path, provider, manifest, clock, run=RunSettings(max_resigns=2))
    assert ran.outcome.counters.failed == 1
    assert len(provider.calls("acquire", "k0")) == acquires
    assert len(provider.calls("transfer", "k0")) == puts


# -- gap: URL lifetime -------------------------------------------------------------------------


@pytest.mark.parametrize("lifetime", [5.0, 7 * 86400.0])
async def test_the_lease_is_the_urls_own_expiry_short_or_long(
    tmp_path: Path, lifetime: float
) -> None:
    """Undocumented lifetime: whatever X-Amz-Expires says wins over the one-hour fallback."""
    async with emulated(sim={"url_lifetime_s": lifetime}) as (_, ae):
        target = await ae.acquire(source(tmp_path))
        assert target.lease is not None and target.lease.source == "url"
        assert lifetime - 2 <= target.lease.granted_s <= lifetime


async def test_a_shard_member_goes_through_the_content_type_retry(tmp_path: Path) -> None:
    """The retried PUT sends the member's bytes again, not the shard's (`Context.put`)."""
    jpeg = image_bytes("jpeg", 2500, seed=9)
    shard = tmp_path / "shard.tar"
    shard.write_bytes(b"\0" * 512 + jpeg + b"\0" * 300)
    member = Member(name="s/000.jpg", offset=512, length=len(jpeg))
    item = Item(key="shard.tar#s/000.jpg", path=shard, line=1, member=member)
    st = shard.stat()
    packed = Source(item=item, size=len(jpeg), mtime_ns=st.st_mtime_ns, image_type=ImageType.JPEG)
    async with emulated(content_type="ignored") as (sim, ae):
        await ae.transfer(packed, await ae.acquire(packed))
        [obj] = sim.state.objects.values()
        assert (obj.size, obj.sha256) == (len(jpeg), hashlib.sha256(jpeg).hexdigest())
        assert sim.state.stats().storage_puts == {"200": 1, "403": 1}
