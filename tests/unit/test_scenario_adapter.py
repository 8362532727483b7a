"""The Scenario adapter: error triage, settings, and each mode against the in-process emulator."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.config import RunSettings, load_settings
from ingest.engine import Engine, EngineSettings
from ingest.errors import Action, ConfigError, ManifestError, TransferError
from ingest.http import Response, Timeouts, api_session, storage_session
from ingest.item import Item, Source
from ingest.journal import Header, Journal
from ingest.providers import provider_class
from ingest.providers.base import Landed, Target
from ingest.providers.context import Context
from ingest.providers.scenario import BASE64_LIMIT, ScenarioProvider, multipart
from ingest.providers.scenario.multipart import PART_SIZE, part_size_for
from ingest.providers.scenario.wire import b64_length, classify, wrong_base
from ingest.providers.settings import ScenarioMode, ScenarioSettings
from ingest.sim import FaultPlan, SimServer, SimSettings, serve
from ingest.sim.faults import FaultInjector
from ingest.sim.scenario_world import attached_by_sha, world_of
from ingest.sim.settings import ScenarioSimSettings
from ingest.sniff import ImageType
from tests.images import Kind, image_bytes

MODEL = "model_adapter"
SECRETS = {"api_key_env": "key-abc-123", "api_secret_env": "secret-xyz-789"}


# -- pure parts ----------------------------------------------------------------------


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(status, headers or {}, raw, 0.0, 0.0)


@pytest.mark.parametrize(
    ("status", "body", "headers", "action", "code", "retry_after", "needle"),
    [
        (401, {"message": "Unauthorized"}, {}, Action.STOP, "unauthorized", None, "check K and S"),
        (403, {"message": "Forbidden"}, {}, Action.STOP, "forbidden", None, "check K and S"),
        (
            429,
            {
                "message": "Limit",
                "details": {"actionName": "add-training-image", "actionLimit": 50},
            },
            {"Retry-After": "3"},
            Action.STOP,
            "limit_reached",
            3.0,
            "add-training-image limit 50",
        ),
        (
            429,
            {"message": "Too Many Requests"},
            {"Retry-After": "2"},
            Action.RETRY,
            "http_429",
            2.0,
            "Too",
        ),
        (
            429,
            {"message": "cooldown", "details": {"remainingSeconds": 7}},
            {},
            Action.RETRY,
            "http_429",
            7.0,
            "cool",
        ),
        (
            400,
            {"message": "The provided assetId is already a training image of this model"},
            {},
            Action.FAIL_ITEM,
            "already_attached",
            None,
            "already",
        ),
        (
            400,
            {"message": "Too many assetIds provided in a single request"},
            {},
            Action.FAIL_ITEM,
            "too_many_asset_ids",
            None,
            "Too many",
        ),
        (
            404,
            {"message": "Asset not found: asset_1", "reason": "not_found"},
            {},
            Action.FAIL_ITEM,
            "not_found",
            None,
            "asset_1",
        ),
        (422, b"<html>nope</html>", {}, Action.FAIL_ITEM, "http_422", None, "nope"),
        (500, {"message": "Internal"}, {}, Action.RETRY, "http_500", None, "Internal"),
        (503, b"", {}, Action.RETRY, "http_503", None, "HTTP 503"),
    ],
)
def test_classify(
    status: int,
    body: Any,
    headers: dict[str, str],
    action: Action,
    code: str,
    retry_after: float | None,
    needle: str,
) -> None:
    err = classify(
        response(status, body, headers),
        provider="scenario",
        op="finalize",
        auth_hint="check K and S",
    )
    assert err.action is action
    assert err.code == code
    assert err.status == status
    assert err.retry_after == retry_after
    assert needle in err.message


def test_ceiling_message_says_chunking_cannot_help() -> None:
    body = {
        "message": "Limit reached",
        "details": {"actionName": "add-training-image", "actionLimit": 9},
    }
    err = classify(response(429, body), provider="scenario", op="finalize")
    assert "smaller batches cannot" in err.message


def settings(**changes: Any) -> ScenarioSettings:
    return ScenarioSettings(**changes)


def test_run_params_bind_the_model_id() -> None:
    cls = provider_class("scenario")
    assert cls is ScenarioProvider
    how = {"mode": "assets", "preset": "default"}
    assert cls.run_params(settings(model_id="model_a"), {}) == {"model_id": "model_a", **how}
    assert cls.run_params(settings(), {"model_id": "model_b"}) == {"model_id": "model_b", **how}
    assert cls.run_params(settings(model_id="model_c"), {"model_id": "model_b"}) == {
        "model_id": "model_c",
        **how,
    }
    # The mode and preset are the run's own, never the journal's (a difference is refused).
    inline = settings(model_id="m", mode="inline", preset="style")
    assert cls.run_params(inline, {"model_id": "m", "mode": "assets"}) == {
        "model_id": "m",
        "mode": "inline",
        "preset": "style",
    }
    with pytest.raises(ConfigError) as info:
        cls.run_params(settings(), {})
    assert info.value.key == "providers.scenario.model_id"
    assert "--model-id" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [("mode", "bulk", "assets, inline"), ("preset", "portrait", "default, style, subject")],
)
def test_mode_and_preset_are_checked_when_loaded(name: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError, match=allowed) as info:
        load_settings(provider_overrides={"scenario": {name: value}})
    assert info.value.key == f"providers.scenario.{name}"


@pytest.mark.parametrize("mode", ["assets", "inline"])
def test_capabilities_follow_the_mode(mode: ScenarioMode) -> None:
    caps = ScenarioProvider.capabilities(settings(mode=mode))
    assert caps.finalize is (mode == "assets")
    assert caps.finalize_batch == (10 if mode == "assets" else 1)
    assert caps.url_lifetime_s is None


def test_auth_headers_are_basic_key_colon_secret() -> None:
    headers = ScenarioProvider.auth_headers(SECRETS)
    scheme, token = headers["Authorization"].split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token) == b"key-abc-123:secret-xyz-789"


def test_export_document() -> None:
    rows = [
        {"key": "a", "remote_id": "asset_1", "path": "/x/a.png"},
        {"key": "b", "remote_id": "asset_2", "caption": "a cat"},
    ]
    assert ScenarioProvider.export_document(rows, {"model_id": "model_q"}) == {
        "model_id": "model_q",
        "training_images": [
            {"asset_id": "asset_1", "key": "a"},
            {"asset_id": "asset_2", "key": "b", "description": "a cat"},
        ],
    }


def test_sizes() -> None:
    assert part_size_for(7_000_000) == PART_SIZE
    assert part_size_for(100 * 1024**3) == -(-100 * 1024**3 // 10_000)
    assert [b64_length(n) for n in (0, 1, 2, 3, 4)] == [0, 4, 4, 4, 8]


# -- against the emulator ------------------------------------------------------------


@asynccontextmanager
async def emulator(**scenario: Any) -> AsyncIterator[SimServer]:
    sim_settings = ScenarioSimSettings(**{"models": frozenset({MODEL}), **scenario})
    async with serve(SimSettings(scenario=sim_settings)) as sim:
        yield sim


@asynccontextmanager
async def adapter(
    sim: SimServer, *, secrets: dict[str, str] | None = None, **changes: Any
) -> AsyncIterator[ScenarioProvider]:
    changes = {"model_id": MODEL, "base_url": sim.base_url + "/v1", **changes}
    psettings = settings(**changes)
    params = ScenarioProvider.run_params(psettings, {})
    timeouts = Timeouts(connect=5, read=10)
    async with (
        api_session(
            psettings.base_url + "/", ScenarioProvider.auth_headers(secrets or SECRETS), timeouts, 8
        ) as api,
        storage_session(timeouts, 8) as storage,
    ):
        yield ScenarioProvider(Context(api=api, storage=storage, settings=psettings, params=params))


def make_source(tmp: Path, index: int, size: int = 3000, kind: Kind = "png") -> Source:
    ext = {"png": "png", "jpeg": "jpg", "webp": "webp"}[kind]
    path = tmp / f"s{index:03d}.{ext}"
    path.write_bytes(image_bytes(kind, size, seed=500 + index))
    st = path.stat()
    image_type = {"png": ImageType.PNG, "jpeg": ImageType.JPEG, "webp": ImageType.WEBP}[kind]
    return Source(Item(f"s{index:03d}", path, index + 1), st.st_size, st.st_mtime_ns, image_type)


def sha(source: Source) -> str:
    return hashlib.sha256(source.item.path.read_bytes()).hexdigest()


def target(remote_id: str) -> Target:
    return Target(remote_id=remote_id, url=None, content_type="image/png", lease=None)


async def upload(provider: ScenarioProvider, source: Source) -> str:
    target = await provider.acquire(source)
    target = await provider.transfer(source, target)
    return target.remote_id


@pytest.mark.anyio
async def test_assets_mode_small_file_lands_and_reattach_is_an_outcome(tmp_path: Path) -> None:
    source = make_source(tmp_path, 1)
    async with emulator() as sim, adapter(sim) as provider:
        assert provider.caps.finalize and provider.caps.finalize_batch == 10
        assert provider.caps.url_lifetime_s is None
        target = await provider.acquire(source)
        assert (target.remote_id, target.url, target.lease) == ("", None, None)
        target = await provider.transfer(source, target)
        assert target.remote_id.startswith("asset_")
        assert await provider.transfer(source, target) == target  # repeating is a no-op
        [first] = await provider.finalize([(source, target)])
        [again] = await provider.finalize([(None, target)])  # the answer was "lost"
        assert isinstance(first, Landed) and isinstance(again, Landed)
        assert first.remote_id == again.remote_id == target.remote_id
        assert attached_by_sha(sim) == {sha(source): 1}
        stats = sim.state.stats().api_requests
    assert stats["POST /v1/models/{modelId}/training-images"] == {"200": 1, "400": 1}
    assert stats["GET /v1/models/{modelId}"] == {"200": 1}  # the model is checked once


@pytest.mark.anyio
@pytest.mark.parametrize("shape", ["single", "list"])
async def test_batch_with_an_attached_asset_falls_back_to_one_at_a_time(
    tmp_path: Path, shape: str
) -> None:
    sources = [make_source(tmp_path, i) for i in range(10)]
    async with emulator(batch_response=shape) as sim, adapter(sim) as provider:
        ids = [await upload(provider, s) for s in sources]
        first = await provider.attach(ids[:4])
        assert [x.remote_id for x in first if isinstance(x, Landed)] == ids[:4]
        outcomes = await provider.attach(ids)
        counts = attached_by_sha(sim)
        stats = sim.state.stats().api_requests["POST /v1/models/{modelId}/training-images"]
    assert [o.remote_id for o in outcomes if not isinstance(o, TransferError)] == ids
    assert all(counts[sha(s)] == 1 for s in sources)
    # One batch of 4, one refused batch of 10, then 10 single attaches (4 of them 400s).
    assert stats == {"200": 7, "400": 5}


@pytest.mark.anyio
async def test_one_bad_asset_does_not_fail_the_others(tmp_path: Path) -> None:
    sources = [make_source(tmp_path, i) for i in range(3)]
    async with emulator() as sim, adapter(sim) as provider:
        ids = [await upload(provider, s) for s in sources]
        outcomes = await provider.attach([ids[0], "asset_gone", ids[1], ids[2]])
        assert isinstance(outcomes[1], TransferError)
        assert outcomes[1].action is Action.FAIL_ITEM
        assert "asset_gone" in outcomes[1].message
        assert [o.remote_id for o in outcomes if not isinstance(o, TransferError)] == ids
        # Through the protocol each item gets its own outcome.
        batch = [(None, target(ids[0])), (None, target("asset_gone"))]
        first, gone = await provider.finalize(batch)
        assert not isinstance(first, TransferError) and first.remote_id == ids[0]
        assert isinstance(gone, TransferError) and gone.action is Action.FAIL_ITEM
        assert all(attached_by_sha(sim)[sha(s)] == 1 for s in sources)


@pytest.mark.anyio
async def test_dataset_ceiling_stops(tmp_path: Path) -> None:
    sources = [make_source(tmp_path, i) for i in range(3)]
    async with emulator(training_image_limit=2) as sim, adapter(sim) as provider:
        ids = [await upload(provider, s) for s in sources]
        with pytest.raises(TransferError) as info:
            await provider.attach(ids)
    assert info.value.action is Action.STOP
    assert info.value.code == "limit_reached"
    assert "actionLimit" not in info.value.message and "limit 2" in info.value.message


@pytest.mark.anyio
@pytest.mark.parametrize("polls", [0, 2])
async def test_multipart_upload_of_a_large_file(
    tmp_path: Path, polls: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(multipart, "_poll_sleep", no_wait)
    source = make_source(tmp_path, 7, size=2 * PART_SIZE + 123, kind="jpeg")
    async with emulator(pending_polls=polls) as sim, adapter(sim) as provider:
        target = await provider.acquire(source)
        assert target.remote_id == ""
        assert target.extra["parts"] == "3"
        assert target.lease is not None and target.lease.source == "field"
        assert target.url is not None and target.url not in repr(target)
        target = await provider.transfer(source, target)
        [landed] = await provider.finalize([(source, target)])
        assert isinstance(landed, Landed)
        assert landed.remote_id == target.remote_id
        assert attached_by_sha(sim) == {sha(source): 1}
        parts = [o for o in sim.state.objects.values() if o.key.startswith("scenario-uploads/")]
        assert sorted(o.size for o in parts) == [source.size - 2 * PART_SIZE, PART_SIZE, PART_SIZE]
        assert all(o.content_type == "image/jpeg" and o.puts == 1 for o in parts)
        assert len(provider._multipart) == 0
    assert waits == ([0.1, 0.2, 0.4][: polls + 1] if polls else [])  # one wait per GET


def _put_fault_seed() -> int:
    """A seed whose storage PUTs go: ok, 503, ok, ok (so part 2 fails once)."""
    for seed in range(1000):
        injector = FaultInjector(FaultPlan.parse(f"seed={seed},put.503=0.5"))
        statuses = [injector.decide_put().status for _ in range(4)]
        if statuses == [None, 503, None, None]:
            return seed
    raise AssertionError("no seed found")  # pragma: no cover


@pytest.mark.anyio
async def test_multipart_retry_puts_only_the_missing_parts(tmp_path: Path) -> None:
    source = make_source(tmp_path, 8, size=PART_SIZE + 1000)  # two parts
    async with emulator() as sim, adapter(sim) as provider:
        target = await provider.acquire(source)
        sim.set_faults(f"seed={_put_fault_seed()},put.503=0.5")
        with pytest.raises(TransferError) as info:
            await provider.transfer(source, target)
        assert info.value.action is Action.RETRY
        target = await provider.transfer(source, target)  # the engine's retry
        puts = sim.state.stats().storage_puts
        assert target.remote_id.startswith("asset_")
        assert world_of(sim).assets[target.remote_id].sha256 == sha(source)
    assert puts == {"200": 2, "503": 1}  # part 1 once, part 2 twice


@pytest.mark.anyio
async def test_expired_part_url_asks_for_a_new_upload(tmp_path: Path) -> None:
    source = make_source(tmp_path, 9, size=BASE64_LIMIT + 1000)
    async with emulator() as sim, adapter(sim) as provider:
        target = await provider.acquire(source)
        sim.set_faults(FaultPlan.parse("skew=86400"))
        with pytest.raises(TransferError) as info:
            await provider.transfer(source, target)
        assert info.value.action is Action.RESIGN
        sim.set_faults(FaultPlan())
        assert len(provider._multipart) == 0
        with pytest.raises(TransferError) as info:  # a stale target is not reused
            await provider.transfer(source, target)
        assert info.value.action is Action.RESIGN
        fresh = await provider.acquire(source)
        assert fresh.extra["upload_id"] != target.extra["upload_id"]
        assert (await provider.transfer(source, fresh)).remote_id


@pytest.mark.anyio
async def test_inline_mode(tmp_path: Path) -> None:
    source = make_source(tmp_path, 10, size=200_001, kind="webp")
    big = make_source(tmp_path, 11, size=BASE64_LIMIT)  # in parts, then attached
    async with emulator() as sim, adapter(sim, mode="inline", preset="subject") as provider:
        assert not provider.caps.finalize and provider.caps.url_lifetime_s is None
        target = await provider.acquire(source)
        assert target.url is None and target.lease is None
        target = await provider.transfer(source, target)
        assert provider.landed(source, target).remote_id == target.remote_id
        image = world_of(sim).models[MODEL].images[target.remote_id]
        assert image.preset == "subject" and image.name == source.item.path.name
        big_target = await provider.acquire(big)
        assert big_target.extra["upload_id"] and big_target.lease is not None
        big_target = await provider.transfer(big, big_target)
        assert world_of(sim).models[MODEL].images[big_target.remote_id].preset == "subject"
        assert attached_by_sha(sim) == {sha(source): 1, sha(big): 1}
        stats = sim.state.stats().api_requests
    assert stats["POST /v1/uploads"] == {"200": 1}
    assert stats["POST /v1/models/{modelId}/training-images"] == {"200": 2}
    assert "POST /v1/assets" not in stats


@pytest.mark.anyio
async def test_a_base_url_without_v1_is_named_not_taken_for_a_missing_model(
    tmp_path: Path,
) -> None:
    """The emulator off /v1 answers a plain '404: Not Found': it said 'model … not found'
    with no hint; now it names the call and that Scenario's base URL ends in /v1."""
    async with emulator() as sim, adapter(sim, base_url=sim.base_url) as provider:
        with pytest.raises(TransferError) as info:
            await provider.acquire(make_source(tmp_path, 14))
    assert info.value.action is Action.STOP and info.value.code == "wrong_base_url"
    assert info.value.message == (
        f"GET {sim.base_url}/models/{MODEL} answered 404 (404: Not Found): Scenario's base URL "
        "ends in /v1 (https://api.cloud.scenario.com/v1), and providers.scenario.base_url "
        f"(or --base-url) {sim.base_url} does not"
    )


@pytest.mark.parametrize(
    ("base", "status", "body", "code", "needles"),
    [  # API Gateway's answer for a path it has no resource for
        ("https://h/v1", 403, {"message": "Missing Authentication Token"}, "wrong_base_url",
         ["answered 403 (Missing Authentication Token), not an answer of Scenario's API"]),
        ("https://h/api/v1", 404, b"<html>Not Found</html>", "wrong_base_url",
         ["answered 404 (<html>Not Found</html>), not an answer", "is https://api.cloud"]),
        ("https://h", 403, {"message": "Forbidden"}, "forbidden",  # the key, or the path
         ["ends in /v1", "https://h does not; or the key is refused (check K and S)"]),
        # Scenario's own answers: the model's, the key's
        ("https://h", 404, {"message": "Model not found: m", "reason": "not_found"}, None, []),
        ("https://h/v1", 403, {"message": "Forbidden"}, None, []),
    ],
)  # fmt: skip
def test_answers_that_suggest_a_wrong_base_path_say_so(
    base: str, status: int, body: Any, code: str | None, needles: list[str]
) -> None:
    err = wrong_base(
        response(status, body),
        called=f"{base}/models/m",
        base_url=base,
        op="o",
        auth_hint="check K and S",
    )
    assert (err and err.code) == code and (err is None or err.action is Action.STOP)
    assert all(needle in (err.message if err else "") for needle in needles)


@pytest.mark.anyio
async def test_unsupported_type_fails_locally(tmp_path: Path) -> None:
    source = dataclasses.replace(make_source(tmp_path, 12), image_type=ImageType.BMP)
    async with emulator() as sim, adapter(sim) as provider:
        with pytest.raises(TransferError) as info:
            await provider.acquire(source)
        assert sim.state.stats().api_requests == {}
    assert info.value.action is Action.FAIL_ITEM
    assert "bmp" in info.value.message


@pytest.mark.anyio
async def test_unknown_model_and_bad_key_stop_before_any_upload(tmp_path: Path) -> None:
    source = make_source(tmp_path, 13)
    async with emulator() as sim, adapter(sim, model_id="model_missing") as provider:
        with pytest.raises(TransferError) as info:
            await provider.acquire(source)
        assert info.value.action is Action.STOP
        assert info.value.code == "model_not_found"
        assert "model_missing" in info.value.message
    keys = frozenset({"key-abc-123:secret-xyz-789"})
    async with serve(
        SimSettings(api_keys=keys, scenario=ScenarioSimSettings(models=frozenset({MODEL})))
    ) as sim:
        wrong = {"api_key_env": "key-abc-123", "api_secret_env": "wrong-secret"}
        async with adapter(sim, secrets=wrong) as provider:
            with pytest.raises(TransferError) as info:
                await provider.acquire(source)
        assert sim.state.objects == {}
    assert info.value.action is Action.STOP
    assert info.value.status == 401
    assert "SCENARIO_API_KEY" in info.value.message and "SCENARIO_API_SECRET" in info.value.message
    assert "wrong-secret" not in str(info.value)


@pytest.mark.anyio
async def test_constructor_requires_a_model_id() -> None:
    async with emulator() as sim, adapter(sim) as provider:
        ctx = dataclasses.replace(provider._ctx, params={}, settings=settings())
        with pytest.raises(ConfigError) as info:
            ScenarioProvider(ctx)
    assert info.value.key == "providers.scenario.model_id"


# -- through the engine ----------------------------------------------------------------


def entries(items: list[Item]) -> Iterator[Item | ManifestError]:
    yield from items


@pytest.mark.anyio
async def test_engine_lands_each_image_once_when_attach_answers_are_lost(tmp_path: Path) -> None:
    sources = [make_source(tmp_path, i, size=1000 + 37 * i) for i in range(25)]
    async with emulator() as sim, adapter(sim) as provider:
        world = world_of(sim)
        world.attach_fault, world.attach_fault_count = "drop", 3
        journal, state = Journal.open(tmp_path / "j", Header(provider="scenario", manifest="m"))
        run = RunSettings(put_concurrency=4, api_concurrency=4, backoff_base_s=0.01)
        with journal:
            engine = Engine(provider, journal, state, EngineSettings(run))
            await engine.run(entries([s.item for s in sources]))
        counts = attached_by_sha(sim)
        assert world.dropped_attaches == 3
        stats = sim.state.stats().api_requests["POST /v1/models/{modelId}/training-images"]
    assert engine.counters.failed == 0 and engine.counters.done == 25
    assert all(counts[sha(s)] == 1 for s in sources)
    assert stats.get("400", 0) >= 1  # a retried attach met "already a training image"


def test_a_list_answer_that_omits_an_id_leaves_it_unconfirmed() -> None:
    from ingest.providers.scenario.adapter import _unconfirmed

    listed = {"trainingImages": [{"id": "asset_1"}, {"id": "asset_3"}]}
    assert _unconfirmed(listed, ["asset_1", "asset_2", "asset_3"]) == ["asset_2"]
    assert _unconfirmed({"trainingImage": {"id": "asset_1"}}, ["asset_1", "asset_2"]) == []
    assert _unconfirmed(None, ["asset_1"]) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("change", "code"),
    [("shrink", "file_changed"), ("grow", "file_changed"), ("delete", "unreadable")],
)
async def test_a_file_changed_since_validation_fails_its_item(
    tmp_path: Path, change: str, code: str
) -> None:
    source = make_source(tmp_path, 14, size=300_000)
    path = source.item.path
    if change == "delete":
        path.unlink()
    else:
        data = path.read_bytes()
        path.write_bytes(data[:-1000] if change == "shrink" else data + b"x" * 1000)
    async with emulator() as sim, adapter(sim) as provider:
        target = await provider.acquire(source)
        with pytest.raises(TransferError) as info:
            await provider.transfer(source, target)
        assert world_of(sim).assets == {}
    assert info.value.action is Action.FAIL_ITEM
    assert info.value.code == code
