"""The Autoenhance adapter: its requests, order binding, and how it classifies answers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from ingest.config import DEFAULT_PROVIDERS
from ingest.errors import Action, TransferError
from ingest.providers.autoenhance import AutoenhanceProvider, is_same_name_429
from ingest.providers.base import Landed
from ingest.providers.settings import AutoenhanceSettings
from tests.fakeapi import Canned, FakeApi, context, source

pytestmark = pytest.mark.anyio

ORDER = "7c2f8e9a-0b7d-4f7e-9a52-3f1c2d4e5f60"
URL = (
    "https://bucket.example.invalid/o/i?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Date=20310115T100000Z&X-Amz-Expires=600&X-Amz-Signature=00"
)


def provider(*answers: Canned, **settings: Any) -> tuple[AutoenhanceProvider, FakeApi]:
    api = FakeApi(*answers)
    return AutoenhanceProvider(context(api, "autoenhance", {"order_id": ORDER}, **settings)), api


def created(field: str = "upload_url", **extra: Any) -> Canned:
    body = {"image_id": "img-1", "order_id": ORDER, "status": "waiting", field: URL, **extra}
    return Canned(200, body)


@pytest.mark.parametrize("field", ["upload_url", "s3PutObjectUrl"])
async def test_acquire_reads_either_url_field_and_leases_from_the_url(
    tmp_path: Path, field: str
) -> None:
    ae, api = provider(created(field))
    target = await ae.acquire(source(tmp_path, "kitchen.jpg"))
    [sent] = api.sent
    assert (sent.method, sent.path) == ("POST", "v3/images/")
    assert sent.json == {
        "image_name": "kitchen.jpg",
        "content_type": "image/jpeg",
        "order_id": ORDER,
    }
    assert "x-api-version" not in sent.headers
    assert (target.remote_id, target.url, target.content_type) == ("img-1", URL, "image/jpeg")
    assert target.extra == {"order_id": ORDER}
    assert target.lease is not None and target.lease.source == "url"
    assert ae.landed(source(tmp_path), target) == Landed("img-1", extra={"order_id": ORDER})


async def test_api_version_is_sent_as_a_header(tmp_path: Path) -> None:
    ae, api = provider(created(), api_version="2024-11-01")
    await ae.acquire(source(tmp_path))
    assert api.sent[0].headers["x-api-version"] == "2024-11-01"


def test_run_params_bind_one_order_per_journal() -> None:
    settings = AutoenhanceSettings()
    fresh = AutoenhanceProvider.run_params(settings, {})["order_id"]
    assert uuid.UUID(fresh).version == 4
    assert AutoenhanceProvider.run_params(settings, {"order_id": "kept"}) == {"order_id": "kept"}
    named = AutoenhanceSettings(order_id="mine")
    assert AutoenhanceProvider.run_params(named, {"order_id": "kept"}) == {"order_id": "mine"}


def test_capabilities_and_auth() -> None:
    caps = AutoenhanceProvider.capabilities(DEFAULT_PROVIDERS["autoenhance"])
    assert not caps.finalize
    assert caps.same_name_limit == 30
    assert caps.max_size is None
    assert AutoenhanceProvider.auth_headers({"api_key_env": "k"}) == {"x-api-key": "k"}


RATE = {"message": "Too Many Requests"}
NAME_RULE = {"message": "Duplicate filename 'a.jpg': at most 30 images with the same file name"}


@pytest.mark.parametrize(
    ("status", "body", "action", "code"),
    [
        (
            401,
            {"message": "Unauthorized", "detail": {"x-api-key": "Invalid API key"}},
            Action.STOP,
            "unauthorized",
        ),
        (403, {"message": "Forbidden", "detail": "no"}, Action.STOP, "http_403"),
        (402, {"message": "Payment Required"}, Action.STOP, "http_402"),
        (429, RATE, Action.RETRY, "rate_limited"),
        (429, {"message": "Too Many Requests"}, Action.RETRY, "rate_limited"),
        (429, b"", Action.RETRY, "rate_limited"),
        (429, NAME_RULE, Action.FAIL_ITEM, "same_name_limit"),
        (
            429,
            {"message": "Too Many Requests", "detail": "Limit of 30 duplicate file names per hour"},
            Action.FAIL_ITEM,
            "same_name_limit",
        ),
        (404, {"message": "Not Found", "detail": "x"}, Action.FAIL_ITEM, "http_404"),
        (400, {"error": "Invalid request"}, Action.FAIL_ITEM, "http_400"),
        (500, {"message": "Internal Server Error"}, Action.RETRY, "http_500"),
        (502, b"<html>", Action.RETRY, "http_502"),
        (503, {"message": "Service Unavailable"}, Action.RETRY, "http_503"),
    ],
)
async def test_errors_are_classified(
    tmp_path: Path, status: int, body: Any, action: Action, code: str
) -> None:
    ae, _ = provider(Canned(status, body, {"Retry-After": "2"}))
    with pytest.raises(TransferError) as info:
        await ae.acquire(source(tmp_path))
    err = info.value
    assert (err.action, err.code, err.status) == (action, code, status)
    assert err.retry_after == 2


async def test_same_name_rule_says_what_to_do(tmp_path: Path) -> None:
    ae, _ = provider(Canned(429, NAME_RULE))
    with pytest.raises(TransferError) as info:
        await ae.acquire(source(tmp_path))
    assert "same file name" in info.value.message
    assert "--retry-failed" in info.value.message


async def test_validation_errors_name_each_field(tmp_path: Path) -> None:
    body = {
        "message": "Validation error",
        "detail": {
            "json": {
                "image_name": ["Missing data for required field."],
                "content_type": ["Unsupported", "really"],
            }
        },
    }
    ae, _ = provider(Canned(422, body))
    with pytest.raises(TransferError) as info:
        await ae.acquire(source(tmp_path))
    err = info.value
    assert (err.action, err.code) == (Action.FAIL_ITEM, "validation_error")
    assert err.message == (
        "Validation error: json.image_name: Missing data for required field.; "
        "json.content_type: Unsupported; really"
    )


@pytest.mark.parametrize(
    ("answer", "action", "code"),
    [
        (Canned(200, {"image_id": "img-1"}), Action.RETRY, "bad_response"),
        (Canned(200, {"upload_url": URL}), Action.RETRY, "bad_response"),
        (Canned(200, b"nope"), Action.RETRY, "bad_response"),
        (
            created(status="error", status_reason="Daily enhancement limit of 500 images reached"),
            Action.FAIL_ITEM,
            "image_error",
        ),
    ],
)
async def test_odd_answers(tmp_path: Path, answer: Canned, action: Action, code: str) -> None:
    ae, _ = provider(answer)
    with pytest.raises(TransferError) as info:
        await ae.acquire(source(tmp_path))
    assert (info.value.action, info.value.code) == (action, code)
    if code == "image_error":
        assert "Daily enhancement limit" in info.value.message


def test_same_name_detection_ignores_rate_limits() -> None:
    assert is_same_name_429(NAME_RULE)
    assert not is_same_name_429(RATE)
    assert not is_same_name_429({"message": "Too Many Requests", "detail": {"limit": 300}})
    assert not is_same_name_429(None)
    assert is_same_name_429({"message": "Identical file name used too often"})
    assert is_same_name_429({"message": "Duplicate filename kitchen.jpg"})
    assert is_same_name_429({"message": "Too Many Requests", "detail": {"same": "image_name"}})
    assert is_same_name_429("Limit of 30 duplicate file names per hour")
    assert not is_same_name_429("Rate limit exceeded: 300 requests per second")


def test_export_document() -> None:
    rows = [
        {"key": "a", "remote_id": "i1", "order_id": ORDER},
        {"key": "b", "remote_id": "i2", "order_id": ORDER},
    ]
    assert AutoenhanceProvider.export_document(rows, {"order_id": ORDER}) == {
        "order_id": ORDER,
        "image_ids": ["i1", "i2"],
    }
    assert AutoenhanceProvider.export_document([], {"order_id": ORDER}) == {
        "order_id": ORDER,
        "image_ids": [],
    }
    mixed = [*rows, {"key": "c", "remote_id": "i3", "order_id": "other"}]
    assert AutoenhanceProvider.export_document(mixed, {"order_id": ORDER}) == {
        "orders": [
            {"order_id": ORDER, "image_ids": ["i1", "i2"]},
            {"order_id": "other", "image_ids": ["i3"]},
        ]
    }
