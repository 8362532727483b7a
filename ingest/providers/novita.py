"""Novita AI: `POST /v3/assets/training_dataset`, then PUT to S3.

API: https://novita.ai/docs/api-reference/model-apis-get-training-images-url;
the SDK `novita-client` 0.7.1 (`novita_client/novita.py`,
`upload_training_assets`) makes the same call (tests/sdk/test_novita_sdk.py
compares the two).

The URL signs only `host`, so any Content-Type passes; we send the sniffed
type anyway. `assets_id` arrives as an int or a 32-hex string and is kept as a
string. There is no finalize step.

Export (`export_documents`): the ``image_dataset_items`` of
``POST /v3/training/subject`` or ``/v3/training/style``, at most 50 a task
("Each task supports uploading up to 50 images", create-subject-training),
split as evenly as it goes (60 → 30 + 30), so no task trains on a few
leftovers. Subject: ``assets_id`` a string, ``caption`` optional.
Style (create-style-training): ``caption`` required, 1–1024 characters, and
``assets_id`` an integer. An item that cannot be written as the kind asked is
a problem, named, never a silently cut or dropped entry.

Errors are classified by ``reason`` when the body is Novita's v3 envelope
``{"code", "reason", "message", "metadata"}`` (seen by third parties; the
basic-error-code page lists the reasons), else by status: its shape is a gap,
so a 401 or 403 stops the run whatever its body (every documented 403 reason
is a key or account refusal), a 429 or 5xx is retried with or without a
Retry-After (none is documented), another 4xx fails the item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from ingest.capabilities import Capabilities
from ingest.errors import Action, TransferError
from ingest.http import Response, http_error, request
from ingest.item import Source
from ingest.providers.base import Documents, Landed, Target, TrainingKind
from ingest.providers.context import Context
from ingest.providers.settings import NovitaSettings, ProviderSettings
from ingest.sniff import ImageType

_AUTH_REASONS = frozenset({"MISSING_API_KEY", "INVALID_API_KEY", "FAILED_TO_AUTH"})
_STOP_REASONS = _AUTH_REASONS | {
    "BILLING_BALANCE_NOT_ENOUGH",
    "FEATURE_NOT_ALLOWED",
    "API_NOT_ALLOWED",
    "NEED_REAL_NAME_VERIFY",
    "EXCEEDS_MAX_UPLOAD_QUOTA",
}
_ITEM_REASONS = frozenset(
    {
        "INVALID_REQUEST_BODY",
        "IMAGE_FILE_EXCEEDS_MAX_SIZE",
        "INVALID_IMAGE_FORMAT",
        "FILE_EXCEEDS_MAX_SIZE",
    }
)


TASK_IMAGES: Final = 50  # "Each task supports uploading up to 50 images"
CAPTION_CHARS: Final = 1024  # caption: 1..1024 characters (both training pages)


def _item(row: Mapping[str, object], training: TrainingKind) -> dict[str, object] | str:
    """One ``image_dataset_items`` entry, or why this row cannot be one."""
    assets_id, caption = str(row["remote_id"]), str(row.get("caption") or "")
    where = f"{row['key']}" + (f" ({row['path']})" if row.get("path") else "")
    if len(caption) > CAPTION_CHARS:
        return (
            f"{where}: its caption has {len(caption)} characters, over the {CAPTION_CHARS} allowed"
        )
    if training == "subject":
        return {"assets_id": assets_id, "caption": caption} if caption else {"assets_id": assets_id}
    if not caption:
        return (
            f"{where}: style training needs a caption (1-{CAPTION_CHARS} characters); it has none"
        )
    if not assets_id.isdigit():
        return (
            f"{where}: style training takes an integer assets_id; Novita gave {assets_id!r} "
            "(no caption can fix that: these ids suit --training subject)"
        )
    return {"assets_id": int(assets_id), "caption": caption}


def _even(count: int, limit: int) -> list[int]:
    """Sizes of the fewest parts of at most `limit` that hold `count`, as even as they go."""
    parts = -(-count // limit)
    return [count // parts + (1 if i < count % parts else 0) for i in range(parts)]


class NovitaProvider:
    """Adapter for Novita's training-dataset assets."""

    name: ClassVar[str] = "novita"
    key_envs: ClassVar[tuple[str, ...]] = NovitaSettings.key_envs

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.caps = self.capabilities(ctx.settings)

    @staticmethod
    def capabilities(settings: ProviderSettings) -> Capabilities:
        settings = NovitaSettings.of(settings)
        return Capabilities(
            formats=frozenset({ImageType.PNG, ImageType.JPEG, ImageType.WEBP}),
            max_size=settings.max_size,
            url_lifetime_s=settings.url_lifetime_s or 120.0,
        )

    @staticmethod
    def auth_headers(secrets: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {secrets['api_key_env']}"}

    @staticmethod
    def run_params(settings: ProviderSettings, previous: Mapping[str, str]) -> dict[str, str]:
        return {}

    @staticmethod
    def export_document(
        rows: Sequence[Mapping[str, object]], params: Mapping[str, str]
    ) -> Mapping[str, object]:
        """All rows in one ``image_dataset_items``, unchecked (`export` uses `export_documents`)."""
        items = []
        for row in rows:
            entry = {"assets_id": str(row["remote_id"])}
            if row.get("caption"):
                entry["caption"] = str(row["caption"])
            items.append(entry)
        return {"image_dataset_items": items}

    @staticmethod
    def export_documents(
        rows: Sequence[Mapping[str, object]],
        params: Mapping[str, str],
        training: TrainingKind | None,
    ) -> Documents:
        """One ``{"image_dataset_items": [...]}`` per task: ≤ 50 each, as the kind requires."""
        entries = [_item(row, training or "subject") for row in rows]
        problems = tuple(entry for entry in entries if isinstance(entry, str))
        items = [entry for entry in entries if not isinstance(entry, str)]
        documents, start = [], 0
        for size in _even(len(items), TASK_IMAGES) if items else []:
            documents.append({"image_dataset_items": items[start : start + size]})
            start += size
        return Documents(tuple(documents), problems)

    def _error(self, response: Response, op: str) -> TransferError:
        payload = response.json()
        reason, message = f"http_{response.status}", response.body[:200].decode("utf-8", "replace")
        if isinstance(payload, dict):
            reason = str(payload.get("reason") or reason)
            message = str(payload.get("message") or message)
        action: Action | None = None
        if reason in _STOP_REASONS or response.status in (401, 403):
            action = Action.STOP
        elif reason in _ITEM_REASONS:
            action = Action.FAIL_ITEM
        return http_error(
            response, provider=self.name, op=op, code=reason, message=message, action=action
        )

    async def acquire(self, source: Source) -> Target:
        response = await request(
            self._ctx.api,
            "POST",
            "v3/assets/training_dataset",
            provider=self.name,
            op="acquire",
            json={"file_extension": source.image_type.ext},
            clock=self._ctx.clock,
        )
        if response.status != 200:
            raise self._error(response, "acquire")
        payload: Any = response.json()
        url = payload.get("upload_url") if isinstance(payload, dict) else None
        assets_id = payload.get("assets_id") if isinstance(payload, dict) else None
        if not isinstance(url, str) or not isinstance(assets_id, int | str) or assets_id == "":
            raise TransferError(
                "answer lacks upload_url or assets_id",
                action=Action.RETRY,
                code="bad_response",
                provider=self.name,
                op="acquire",
                status=response.status,
            )
        lease = response.lease(
            url,
            expires_at=None,
            default_lifetime=self.caps.url_lifetime_s,
        )
        return Target(
            remote_id=str(assets_id), url=url, content_type=source.content_type, lease=lease
        )

    async def transfer(self, source: Source, target: Target) -> Target:
        return await self._ctx.put(self.name, source, target)

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        raise NotImplementedError("novita has no finalize step")

    def landed(self, source: Source, target: Target) -> Landed:
        return Landed(remote_id=target.remote_id)
