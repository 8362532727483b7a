"""ModelHunter: upload-url, PUT to R2, then complete → CDN url.

API: https://docs.modelhunter.ai/core-concepts/file-uploads (ModelHunter has
no SDK: the request shapes follow its API reference pages, Get Upload URL and
Complete Upload, and are pinned by tests/unit/test_provider_modelhunter.py)

    acquire   POST /api/v1/files/upload-url {filename, contentType, sizeBytes}
              → {success, data: {upload_url, file_id, expires_at}}
    transfer  PUT upload_url with exactly the declared Content-Type (whether
              it is signed is undocumented: sending it works either way)
    finalize  POST /api/v1/files/{file_id}/complete → {success, data: {id, url, ...}}

The lease comes from ``expires_at`` (ISO-8601, "valid for 15 minutes"); the
CDN ``url`` of the complete answer is what `Landed.url` journals and exports.
Files are images of at most 50 MB ("max 50 MB", File Uploads; MB = 10^6
bytes): the local limit unless ``max_size_mb`` says otherwise (upload-url
itself says 100 MB, for any file).

Errors arrive as ``{"success": false, "error": {"code", "message",
"details"?}}`` and are classified by code first, then by status:

    STOP       AUTH_* (401), FORBIDDEN / KEY_* (403), INSUFFICIENT_BALANCE (402)
    FAIL_ITEM  VALIDATION_ERROR, INVALID_PARAMETER, MISSING_PARAMETER (400),
               FILE_TOO_LARGE (422)
    RESIGN     on complete, any other refusal of this file id: 404
               ``FILE_NOT_FOUND`` ("File not found or upload URL has
               expired", Complete Upload), a 409 of a complete that is not
               idempotent, a size the API disputes: upload anew
    RETRY      429 (whatever its body: its shape is undocumented) and 5xx
               (502 is ModelHunter's "provider error"), 408
    other      `ingest.http.triage` (other 4xx fail the item)

A complete that can no longer succeed for its file id (RESIGN) makes the
engine upload the item once more under a new file id and complete that
(`engine.finalize`): a resume past the URL's expiry, or a complete held up
until then, ends done instead of failed. Whether a repeated complete answers
the same data is undocumented; if it does not, a complete whose answer was
lost costs one more upload, never a lost item.

Resume of an item killed in flight (`recover`, journaled ``acq`` only): the
documented API has no call that re-issues an upload URL for a file id, nor a
files list or get; complete is the one call about a file id, and it can only
succeed for bytes that landed ("Use this to call Complete Upload after
uploading", Get Upload URL). So the acquired file id is completed first: a
success means the PUT had landed and the item is done under that id; a
refusal means it had not (or the file is forgotten), and the item is uploaded
anew (the old id stays behind at ModelHunter as a file that never completes:
there is no delete call).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

from ingest.capabilities import MODELHUNTER_IMAGE_BYTES, Capabilities
from ingest.errors import Action, TransferError
from ingest.http import Response, bad_response, http_error, request
from ingest.item import Source
from ingest.providers.base import Landed, Target
from ingest.providers.context import Context
from ingest.providers.settings import ModelHunterSettings, ProviderSettings
from ingest.sniff import ImageType

DOCUMENTED_LIFETIME_S = 900.0  # "valid for 15 minutes" (Get Upload URL)
IMAGE_LIMIT_BYTES = MODELHUNTER_IMAGE_BYTES  # "max 50 MB" for images (File Uploads)

_STOP_CODES = frozenset(
    {
        "AUTH_REQUIRED",
        "AUTH_INVALID_TOKEN",
        "AUTH_TOKEN_EXPIRED",
        "FORBIDDEN",
        "KEY_PERMISSION_DENIED",
        "KEY_EXPIRED",
        "KEY_REVOKED",
        "INSUFFICIENT_BALANCE",
    }
)
_ITEM_CODES = frozenset(
    {"VALIDATION_ERROR", "INVALID_PARAMETER", "MISSING_PARAMETER", "FILE_TOO_LARGE"}
)
_GONE_OPS = frozenset({"finalize", "recover"})  # calls about an acquired file id (complete)


class ModelHunterProvider:
    """Adapter for ModelHunter's file uploads."""

    name: ClassVar[str] = "modelhunter"
    key_envs: ClassVar[tuple[str, ...]] = ModelHunterSettings.key_envs

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.caps = self.capabilities(ctx.settings)

    @staticmethod
    def capabilities(settings: ProviderSettings) -> Capabilities:
        settings = ModelHunterSettings.of(settings)
        return Capabilities(
            formats=frozenset({ImageType.PNG, ImageType.JPEG, ImageType.WEBP}),
            max_size=settings.max_size or IMAGE_LIMIT_BYTES,
            url_lifetime_s=settings.url_lifetime_s or DOCUMENTED_LIFETIME_S,
            finalize=True,
            finalize_batch=1,
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
        """Each file's id and CDN url, to pass as ``image_url`` in generation requests."""
        files = []
        for row in rows:
            entry = {"key": str(row["key"]), "file_id": str(row["remote_id"])}
            if row.get("url"):
                entry["url"] = str(row["url"])
            files.append(entry)
        return {"files": files}

    # -- errors ----------------------------------------------------------------

    def _error(self, response: Response, op: str, file_id: str | None = None) -> TransferError:
        payload = response.json()
        error = payload.get("error") if isinstance(payload, dict) else None
        code, message = f"http_{response.status}", response.body[:200].decode("utf-8", "replace")
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or message)
            details = error.get("details")
            if isinstance(details, dict) and details.get("reason"):
                message = f"{message} ({details.get('field', '?')}: {details['reason']})"
        action: Action | None = None
        if code in _STOP_CODES:
            action = Action.STOP
        elif code in _ITEM_CODES and op not in _GONE_OPS:
            action = Action.FAIL_ITEM
        err = http_error(
            response, provider=self.name, op=op, code=code, message=message, action=action
        )
        if op in _GONE_OPS and err.action is Action.FAIL_ITEM:
            # This file id will not complete: its bytes go up again under a new one.
            return TransferError(
                f"{message}; {file_id} cannot be completed, so it is uploaded anew",
                action=Action.RESIGN,
                code=code,
                provider=self.name,
                op=op,
                status=response.status,
            )
        return err

    def _bad_response(self, response: Response, op: str, what: str) -> TransferError:
        return bad_response(response, provider=self.name, op=op, what=what)

    def _data(self, response: Response, op: str, file_id: str | None = None) -> dict[str, Any]:
        """The ``data`` of a successful answer; raises the classified error otherwise."""
        payload = response.json()
        if response.status != 200 or (
            isinstance(payload, dict) and payload.get("success") is False
        ):
            raise self._error(response, op, file_id)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            raise self._bad_response(response, op, "data")
        return data

    # -- steps -------------------------------------------------------------------

    async def acquire(self, source: Source) -> Target:
        response = await request(
            self._ctx.api,
            "POST",
            "api/v1/files/upload-url",
            provider=self.name,
            op="acquire",
            json={
                "filename": source.item.display_name,
                "contentType": source.content_type,
                "sizeBytes": source.size,
            },
            clock=self._ctx.clock,
        )
        data = self._data(response, "acquire")
        url, file_id = data.get("upload_url"), data.get("file_id")
        if not isinstance(url, str) or not isinstance(file_id, str) or not file_id:
            raise self._bad_response(response, "acquire", "upload_url or file_id")
        expires_at = data.get("expires_at")
        lease = response.lease(
            url,
            expires_at=expires_at if isinstance(expires_at, str) else None,
            default_lifetime=self.caps.url_lifetime_s,
        )
        return Target(remote_id=file_id, url=url, content_type=source.content_type, lease=lease)

    async def transfer(self, source: Source, target: Target) -> Target:
        return await self._ctx.put(self.name, source, target)

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        results: list[Landed | TransferError] = []
        for _source, target in batch:
            try:
                results.append((await self._complete(target.remote_id))[0])
            except TransferError as err:
                if err.action is not Action.RESIGN:
                    raise  # RETRY and STOP concern the call, not this file id
                results.append(err)
        return results

    async def recover(self, source: Source, acquired: Target) -> Landed | None:
        """Complete the acquired file id: done if its bytes had landed, else None (see above)."""
        try:
            landed, size = await self._complete(acquired.remote_id, "recover")
        except TransferError as err:
            if err.action in (Action.FAIL_ITEM, Action.RESIGN):
                return None
            raise
        if size is not None and size != source.size:
            return None  # the bytes there are an older version of the file: upload this one
        return landed

    async def _complete(self, file_id: str, op: str = "finalize") -> tuple[Landed, int | None]:
        """The completed file, and its size in bytes when the answer gives one."""
        response = await request(
            self._ctx.api,
            "POST",
            f"api/v1/files/{quote(file_id, safe='')}/complete",
            provider=self.name,
            op=op,
            clock=self._ctx.clock,
        )
        data = self._data(response, op, file_id)
        url = data.get("url")
        if not isinstance(url, str) or not url:
            raise self._bad_response(response, op, "the file's url")
        size = data.get("size_bytes")
        landed = Landed(remote_id=str(data.get("id") or file_id), url=url)
        return landed, size if isinstance(size, int) and not isinstance(size, bool) else None

    def landed(self, source: Source, target: Target) -> Landed:
        raise NotImplementedError("modelhunter lands items through finalize (complete)")
