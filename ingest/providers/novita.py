"""Novita AI: `POST /v3/assets/training_dataset`, then PUT to S3.

API: https://novita.ai/docs/api-reference/model-apis-get-training-images-url

The URL signs only `host`, so any Content-Type passes; we send the sniffed
type anyway. `assets_id` arrives as an int or a 32-hex string and is kept as a
string (the training request wants a string). There is no finalize step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ingest.capabilities import Capabilities
from ingest.errors import Action, TransferError
from ingest.http import Response, http_error, request
from ingest.item import Source
from ingest.providers.base import Landed, Target
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
        """`image_dataset_items` for `POST /v3/training/subject|style` (≤ 50 per task)."""
        items = []
        for row in rows:
            entry = {"assets_id": str(row["remote_id"])}
            if row.get("caption"):
                entry["caption"] = str(row["caption"])[:1024]
            items.append(entry)
        return {"image_dataset_items": items}

    def _error(self, response: Response, op: str) -> TransferError:
        payload = response.json()
        reason, message = f"http_{response.status}", response.body[:200].decode("utf-8", "replace")
        if isinstance(payload, dict):
            reason = str(payload.get("reason") or reason)
            message = str(payload.get("message") or message)
        action: Action | None = None
        if reason in _STOP_REASONS or response.status == 401:
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
