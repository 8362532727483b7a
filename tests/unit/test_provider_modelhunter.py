"""The ModelHunter adapter: its requests, and how it classifies every answer (no network)."""

from __future__ import annotations

import calendar
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ingest.errors import Action, TransferError
from ingest.providers.base import Landed, Target
from ingest.providers.modelhunter import ModelHunterProvider
from ingest.sniff import ImageType
from tests.fakeapi import Canned, FakeApi, context, source

pytestmark = pytest.mark.anyio

URL = "https://storage.example.invalid/uploads/file_abc123?X-Amz-Signature=deadbeef"


def envelope(code: str, message: str = "nope", **details: str) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"success": False, "error": error}


def provider(*answers: Canned) -> tuple[ModelHunterProvider, FakeApi]:
    api = FakeApi(*answers)
    return ModelHunterProvider(context(api, "modelhunter")), api


def issued(expires_at: str = "2031-01-15T11:00:00Z") -> Canned:
    data = {"upload_url": URL, "file_id": "file_abc123", "expires_at": expires_at}
    return Canned(200, {"success": True, "data": data})


async def test_acquire_declares_name_type_and_size_and_leases_from_expires_at(
    tmp_path: Path,
) -> None:
    mh, api = provider(issued())
    target = await mh.acquire(source(tmp_path, "cat.jpg", 4321))
    [sent] = api.sent
    assert (sent.method, sent.path) == ("POST", "api/v1/files/upload-url")
    assert sent.json == {"filename": "cat.jpg", "contentType": "image/jpeg", "sizeBytes": 4321}
    assert target.remote_id == "file_abc123"
    assert target.url == URL
    assert target.content_type == "image/jpeg"
    assert target.lease is not None
    assert target.lease.source == "field"
    assert target.lease.expires_at == calendar.timegm((2031, 1, 15, 11, 0, 0))


def test_capabilities_and_auth() -> None:
    caps = ModelHunterProvider.capabilities(context(FakeApi(), "modelhunter").settings)
    assert caps.finalize and caps.finalize_batch == 1
    assert caps.max_size == 50_000_000  # images: "max 50 MB" (File Uploads), MB = 10^6 bytes
    assert caps.url_lifetime_s == 900
    assert caps.formats == {ImageType.PNG, ImageType.JPEG, ImageType.WEBP}
    headers = ModelHunterProvider.auth_headers({"api_key_env": "river_test_x"})
    assert headers == {"Authorization": "Bearer river_test_x"}


@pytest.mark.parametrize(
    ("status", "code", "action"),
    [
        (401, "AUTH_REQUIRED", Action.STOP),
        (401, "AUTH_INVALID_TOKEN", Action.STOP),
        (401, "AUTH_TOKEN_EXPIRED", Action.STOP),
        (403, "FORBIDDEN", Action.STOP),
        (403, "KEY_PERMISSION_DENIED", Action.STOP),
        (403, "KEY_EXPIRED", Action.STOP),
        (403, "KEY_REVOKED", Action.STOP),
        (402, "INSUFFICIENT_BALANCE", Action.STOP),
        (400, "VALIDATION_ERROR", Action.FAIL_ITEM),
        (400, "INVALID_PARAMETER", Action.FAIL_ITEM),
        (400, "MISSING_PARAMETER", Action.FAIL_ITEM),
        (422, "FILE_TOO_LARGE", Action.FAIL_ITEM),
        (422, "VALIDATION_ERROR", Action.FAIL_ITEM),
        (429, "RATE_LIMIT_EXCEEDED", Action.RETRY),
        (500, "INTERNAL_ERROR", Action.RETRY),
        (502, "PROVIDER_ERROR", Action.RETRY),
        (503, "SERVICE_UNAVAILABLE", Action.RETRY),
        (404, "NOT_FOUND", Action.FAIL_ITEM),
        (409, "CONFLICT", Action.FAIL_ITEM),
        (418, "SOMETHING_NEW", Action.FAIL_ITEM),
    ],
)
async def test_acquire_errors_are_classified_by_code_then_status(
    tmp_path: Path, status: int, code: str, action: Action
) -> None:
    mh, _ = provider(Canned(status, envelope(code, "Server says no"), {"Retry-After": "3"}))
    with pytest.raises(TransferError) as info:
        await mh.acquire(source(tmp_path))
    err = info.value
    assert (err.action, err.code, err.status, err.op) == (action, code, status, "acquire")
    assert err.message.startswith("Server says no")
    assert err.retry_after == 3


async def test_error_details_are_kept_in_the_message(tmp_path: Path) -> None:
    body = envelope("VALIDATION_ERROR", "Invalid contentType", field="contentType", reason="gif")
    mh, _ = provider(Canned(400, body))
    with pytest.raises(TransferError) as info:
        await mh.acquire(source(tmp_path))
    assert info.value.message == "Invalid contentType (contentType: gif)"


@pytest.mark.parametrize(
    ("answer", "action", "code"),
    [
        (Canned(502, b"<html>bad gateway</html>"), Action.RETRY, "http_502"),
        (Canned(200, {"success": True}), Action.RETRY, "bad_response"),
        (Canned(200, b"not json"), Action.RETRY, "bad_response"),
        (Canned(200, {"success": True, "data": {"file_id": "f"}}), Action.RETRY, "bad_response"),
        (Canned(200, envelope("VALIDATION_ERROR")), Action.FAIL_ITEM, "VALIDATION_ERROR"),
    ],
)
async def test_odd_answers(tmp_path: Path, answer: Canned, action: Action, code: str) -> None:
    mh, _ = provider(answer)
    with pytest.raises(TransferError) as info:
        await mh.acquire(source(tmp_path))
    assert (info.value.action, info.value.code) == (action, code)


def _target() -> Target:
    return Target(remote_id="file_abc123", url=None, content_type="", lease=None)


async def test_finalize_completes_and_returns_the_cdn_url(tmp_path: Path) -> None:
    data: dict[str, Any] = {
        "id": "file_abc123",
        "url": "https://cdn.example.invalid/files/file_abc123.jpg",
        "filename": "cat.jpg",
        "content_type": "image/jpeg",
        "size_bytes": 4321,
        "created_at": "2031-01-15T10:50:00Z",
    }
    mh, api = provider(Canned(200, {"success": True, "data": data}))
    landed = await mh.finalize([(None, _target())])
    assert landed == [Landed(remote_id="file_abc123", url=data["url"])]
    [sent] = api.sent
    assert (sent.method, sent.path, sent.json) == (
        "POST",
        "api/v1/files/file_abc123/complete",
        None,
    )
    assert "Content-Type" not in sent.headers  # no body


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "FILE_NOT_FOUND"),  # complete-upload: "File not found or upload URL has expired"
        (404, "NOT_FOUND"),
        (409, "ALREADY_COMPLETED"),  # a complete that is not idempotent (a gap)
        (400, "VALIDATION_ERROR"),
        (410, "GONE"),
    ],
)
async def test_a_complete_that_can_never_succeed_asks_for_a_new_upload(
    status: int, code: str
) -> None:
    """RESIGN, returned in the item's place: the engine uploads it anew under a new file id."""
    mh, _ = provider(Canned(status, envelope(code, "File gone")))
    [err] = await mh.finalize([(None, _target())])
    assert isinstance(err, TransferError)
    assert (err.action, err.code, err.op, err.status) == (Action.RESIGN, code, "finalize", status)
    assert "file_abc123" in err.message and "uploaded anew" in err.message


def test_a_configured_limit_replaces_the_50_mb_one() -> None:
    settings = dataclasses.replace(context(FakeApi(), "modelhunter").settings, max_size_mb=1.0)
    assert ModelHunterProvider.capabilities(settings).max_size == 1024 * 1024


@pytest.mark.parametrize(
    ("answer", "action"),
    [
        (Canned(429, envelope("RATE_LIMIT_EXCEEDED")), Action.RETRY),
        (Canned(503, envelope("SERVICE_UNAVAILABLE")), Action.RETRY),
        (Canned(401, envelope("AUTH_INVALID_TOKEN")), Action.STOP),
        (Canned(402, envelope("INSUFFICIENT_BALANCE")), Action.STOP),
        (Canned(200, {"success": True, "data": {"id": "file_abc123"}}), Action.RETRY),
    ],
)
async def test_finalize_errors(answer: Canned, action: Action) -> None:
    mh, _ = provider(answer)
    with pytest.raises(TransferError) as info:
        await mh.finalize([(None, _target())])
    assert info.value.action is action


def test_export_document_lists_file_ids_and_urls() -> None:
    rows = [
        {"key": "a", "remote_id": "file_1", "url": "http://cdn/file_1.png"},
        {"key": "b", "remote_id": "file_2"},
    ]
    assert ModelHunterProvider.export_document(rows, {}) == {
        "files": [
            {"key": "a", "file_id": "file_1", "url": "http://cdn/file_1.png"},
            {"key": "b", "file_id": "file_2"},
        ]
    }
    assert ModelHunterProvider.run_params(context(FakeApi(), "modelhunter").settings, {}) == {}


# The examples of Get Upload URL, verbatim (docs.modelhunter.ai/api-reference/files/get-upload-url).
DOCS_ISSUED = {
    "success": True,
    "data": {
        "upload_url": "https://storage.modelhunter.ai/uploads/file_abc123?X-Amz-Signature=...",
        "file_id": "file_abc123",
        "expires_at": "2025-01-15T11:00:00Z",
    },
}
DOCS_400 = {
    "success": False,
    "error": {
        "code": "VALIDATION_ERROR",
        "message": "Invalid contentType: must be a supported MIME type",
    },
}
DOCS_422 = {
    "success": False,
    "error": {"code": "FILE_TOO_LARGE", "message": "File size exceeds the 100 MB limit"},
}


async def test_the_docs_examples_are_read_as_the_docs_mean_them(tmp_path: Path) -> None:
    """ModelHunter has no SDK: its reference pages' examples pin the shapes instead."""
    mh, api = provider(Canned(200, DOCS_ISSUED), Canned(400, DOCS_400), Canned(422, DOCS_422))
    target = await mh.acquire(source(tmp_path, "my-image.jpg", 2048))
    assert (target.remote_id, target.url) == ("file_abc123", DOCS_ISSUED["data"]["upload_url"])  # type: ignore[index]
    assert target.lease is not None
    assert target.lease.expires_at == calendar.timegm((2025, 1, 15, 11, 0, 0))
    for status, code, message in [
        (400, "VALIDATION_ERROR", "Invalid contentType: must be a supported MIME type"),
        (422, "FILE_TOO_LARGE", "File size exceeds the 100 MB limit"),
    ]:
        with pytest.raises(TransferError) as info:
            await mh.acquire(source(tmp_path))
        err = info.value
        assert (err.status, err.code, err.action, err.message) == (
            status,
            code,
            Action.FAIL_ITEM,
            message,
        )
    # The body fields are the page's three required ones, and nothing else.
    assert [set(sent.json) for sent in api.sent] == [{"filename", "contentType", "sizeBytes"}] * 3
