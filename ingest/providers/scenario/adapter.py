"""Scenario: training images of one model, inline or as assets.

API: https://docs.scenario.com/api/resources/models/subresources/training_images

How it works:

- Both modes: HTTP Basic ``base64(key:secret)``; every path is relative to
  the base URL (``https://api.cloud.scenario.com/v1``). The first acquire
  reads the model (``GET /models/{id}``), so a wrong key or model id stops
  the run before any bytes move.
- ``inline``: acquire is local (no URL, no lease). Transfer POSTs the image
  as a data URL to ``/models/{id}/training-images`` and learns the training
  image id (an asset id). No finalize. Images must be under 6 MB; larger
  ones fail locally with a pointer to assets mode.
- ``assets`` (default): transfer turns the file into an asset; finalize
  attaches up to 10 assets per call (``assetIds``).
  Under 6 MB: transfer POSTs ``/assets`` (base64 in JSON).
  From 6 MB: a multipart upload (`multipart`): acquire creates it and
  gets leased part URLs, transfer PUTs the parts, completes it and waits
  for the asset id.
- Attach outcomes: "already a training image of this model" is an outcome
  (the answer to an earlier attach was lost), not a failure. A batch refused
  as a whole with an item-class 4xx is retried one asset at a time, so one
  bad asset does not fail the others. The dataset ceiling (a 429 whose
  ``details`` carry ``actionName``/``actionLimit``) stops the run: smaller
  batches cannot get under it. A plain 429 is retried; 401/403 stop.

Images travel base64 inside JSON. Those bodies are streamed from disk and
encoded on the fly with an exact Content-Length, never built in memory, and
at most half of the API connections carry one at a time so acquires and
attaches are never starved of a connection.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import anyio
import orjson

from ingest.capabilities import Capabilities
from ingest.errors import Action, ConfigError, TransferError
from ingest.http import Response, map_errors, request
from ingest.item import Source
from ingest.providers.base import Landed, Target
from ingest.providers.context import Context
from ingest.providers.scenario.multipart import MultipartUploads
from ingest.providers.scenario.wire import (
    b64_length,
    classify,
    id_of,
    json_with_b64,
    object_of,
)
from ingest.providers.settings import (
    ProviderSettings,
    ScenarioMode,
    ScenarioPreset,
    ScenarioSettings,
)
from ingest.redact import register_secret
from ingest.sniff import ImageType
from ingest.storage import FileChanged, closing_body

ASSET_LIMIT = 6_000_000  # bytes: "< 6 MB" goes to /assets or inline; larger needs /uploads
ATTACH_BATCH = 10  # assetIds per attach call (documented maximum)
# Formats Scenario documents for assets [S15] that `ingest.sniff` knows; not BMP.
FORMATS = frozenset(ImageType) - {ImageType.BMP}


def _required_model_id(value: str) -> str:
    if not value.strip():
        raise ConfigError(
            "required: the id of the Scenario model to add training images to "
            "(set it in the config file or pass --model-id)",
            key="providers.scenario.model_id",
        )
    return value.strip()


# -- the adapter -------------------------------------------------------------------


class ScenarioProvider:
    """Adapter for Scenario training images (see the module docstring)."""

    name: ClassVar[str] = "scenario"
    key_envs: ClassVar[tuple[str, ...]] = ScenarioSettings.key_envs

    def __init__(self, ctx: Context) -> None:
        settings = ScenarioSettings.of(ctx.settings)
        self._ctx = ctx
        self.model_id = _required_model_id(ctx.params.get("model_id") or settings.model_id)
        self.mode: ScenarioMode = settings.mode
        self.preset: ScenarioPreset = settings.preset
        self.caps = self.capabilities(settings)
        self._model_path = f"models/{quote(self.model_id, safe='')}"
        self._model_checked = False
        self._model_lock = anyio.Lock()
        connector = ctx.api.connector
        connections = connector.limit if connector is not None and connector.limit else 8
        self._bodies = anyio.CapacityLimiter(max(1, connections // 2))
        self._multipart = MultipartUploads(ctx, self._error)
        self._auth_hint = (
            f"check {settings.api_key_env} and {settings.api_secret_env}"
            if settings.api_secret_env
            else f"check {settings.api_key_env}"
        )

    # -- class-level hooks -------------------------------------------------------

    @staticmethod
    def capabilities(settings: ProviderSettings) -> Capabilities:
        """Assets mode has an attach step (10 a call); inline mode lands in one call."""
        assets = ScenarioSettings.of(settings).mode == "assets"
        return Capabilities(
            formats=FORMATS,
            max_size=settings.max_size,
            url_lifetime_s=None,  # most items have no URL at all; part URLs carry their expiry
            finalize=assets,
            finalize_batch=ATTACH_BATCH if assets else 1,
        )

    @staticmethod
    def auth_headers(secrets: Mapping[str, str]) -> dict[str, str]:
        pair = f"{secrets['api_key_env']}:{secrets['api_secret_env']}"
        token = base64.b64encode(pair.encode("utf-8")).decode("ascii")
        register_secret(token)
        return {"Authorization": f"Basic {token}"}

    @staticmethod
    def run_params(settings: ProviderSettings, previous: Mapping[str, str]) -> dict[str, str]:
        """Binds the model id (a resume keeps the journal's unless one is named), mode and preset.

        The mode and preset always have a value, so a run that differs from
        its journal's is refused, never switched quietly.
        """
        own = ScenarioSettings.of(settings)
        model_id = _required_model_id(own.model_id or previous.get("model_id", ""))
        return {"model_id": model_id, "mode": own.mode, "preset": own.preset}

    @staticmethod
    def export_document(
        rows: Sequence[Mapping[str, object]], params: Mapping[str, str]
    ) -> Mapping[str, object]:
        """The model and its training images (asset ids), in manifest order."""
        images = []
        for row in rows:
            entry = {"asset_id": str(row["remote_id"]), "key": str(row["key"])}
            if row.get("caption"):
                entry["description"] = str(row["caption"])
            images.append(entry)
        return {"model_id": params.get("model_id", ""), "training_images": images}

    # -- errors ------------------------------------------------------------------

    def _error(self, response: Response, op: str) -> TransferError:
        return classify(response, provider=self.name, op=op, auth_hint=self._auth_hint)

    def _local_failure(self, message: str, code: str) -> TransferError:
        return TransferError(
            message, action=Action.FAIL_ITEM, code=code, provider=self.name, op="acquire"
        )

    # -- acquire -------------------------------------------------------------------

    async def acquire(self, source: Source) -> Target:
        if source.image_type not in FORMATS:
            accepted = ", ".join(sorted(t.ext for t in FORMATS))
            raise self._local_failure(
                f"unsupported image type {source.image_type.ext} (scenario accepts {accepted})",
                "unsupported_type",
            )
        if self.mode == "inline" and source.size >= ASSET_LIMIT:
            raise self._local_failure(
                f"{source.size:,} bytes is over inline mode's 6 MB limit (the image travels "
                "base64 inside JSON); upload such files with --mode assets, which sends large "
                "files in parts: list them in a manifest of their own (a journal keeps the "
                "mode it was made with)",
                "too_large_for_inline",
            )
        await self._check_model()
        if self.mode == "assets" and source.size >= ASSET_LIMIT:
            return await self._multipart.create(source)
        return Target(remote_id="", url=None, content_type=source.content_type, lease=None)

    async def _check_model(self) -> None:
        """Read the model once: a bad key or model id stops the run before any upload."""
        if self._model_checked:
            return
        async with self._model_lock:
            if self._model_checked:
                return
            response = await request(
                self._ctx.api,
                "GET",
                self._model_path,
                provider=self.name,
                op="check_model",
                clock=self._ctx.clock,
            )
            if response.status == 404:
                raise TransferError(
                    f"model {self.model_id} not found; check providers.scenario.model_id "
                    "(or --model-id) and that the key's project owns it",
                    action=Action.STOP,
                    code="model_not_found",
                    provider=self.name,
                    op="check_model",
                    status=404,
                )
            if response.status != 200:
                raise self._error(response, "check_model")
            self._model_checked = True

    # -- transfer ------------------------------------------------------------------

    async def transfer(self, source: Source, target: Target) -> Target:
        if target.remote_id:
            return target  # this target's bytes already landed: nothing to repeat
        if self.mode == "inline":
            return await self._post_inline(source, target)
        upload_id = target.extra.get("upload_id")
        if upload_id:
            return await self._multipart.transfer(source, target, upload_id)
        return await self._post_asset(source, target)

    async def _post_inline(self, source: Source, target: Target) -> Target:
        head = b'{"data":"data:' + source.content_type.encode("ascii") + b";base64,"
        tail = (
            b'","name":'
            + orjson.dumps(source.item.display_name)
            + b',"preset":'
            + orjson.dumps(self.preset)
            + b"}"
        )
        path = f"{self._model_path}/training-images"
        response = await self._post_with_image(path, head, source, tail)
        if response.status != 200:
            raise self._error(response, "transfer")
        remote_id = id_of(response.json(), "trainingImage", op="transfer", status=200)
        return dataclasses.replace(target, remote_id=remote_id)

    async def _post_asset(self, source: Source, target: Target) -> Target:
        head = b'{"name":' + orjson.dumps(source.item.display_name) + b',"image":"'
        response = await self._post_with_image("assets", head, source, b'"}')
        if response.status != 200:
            raise self._error(response, "transfer")
        payload = response.json()
        asset_id = id_of(payload, "asset", op="transfer", status=200)
        if (object_of(payload, "asset") or {}).get("status") == "error":
            raise TransferError(
                f"scenario could not process the image (asset {asset_id} has status error)",
                action=Action.FAIL_ITEM,
                code="asset_error",
                provider=self.name,
                op="transfer",
                status=200,
            )
        return dataclasses.replace(target, remote_id=asset_id)

    async def _post_with_image(
        self, path: str, head: bytes, source: Source, tail: bytes
    ) -> Response:
        """POST JSON whose middle is the file in base64, streamed with an exact length."""
        size = source.size
        length = len(head) + b64_length(size) + len(tail)
        headers = {"Content-Type": "application/json", "Content-Length": str(length)}
        clock = self._ctx.clock
        problems: list[BaseException] = []
        try:
            async with self._bodies, map_errors(self.name, "transfer"):
                sent_at = clock()
                data = json_with_b64(head, source, tail, problems)
                async with (
                    closing_body(data),
                    self._ctx.api.post(
                        path, data=data, headers=headers, allow_redirects=False
                    ) as resp,
                ):
                    body = await resp.read()
                    return Response(resp.status, resp.headers, body, sent_at, clock())
        except (TransferError, FileChanged, OSError) as exc:
            if not problems:
                raise
            raise self._local_problem(source, problems[0]) from exc

    def _local_problem(self, source: Source, problem: BaseException) -> TransferError:
        """The item failure for a file that changed or cannot be read (retrying cannot help)."""
        if isinstance(problem, FileChanged):
            message, code = str(problem), "file_changed"
        else:
            reason = problem.strerror if isinstance(problem, OSError) else None
            message, code = f"cannot read {source.item.where}: {reason or problem}", "unreadable"
        return TransferError(
            message, action=Action.FAIL_ITEM, code=code, provider=self.name, op="transfer"
        )

    # -- finalize ------------------------------------------------------------------

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        """Attach the batch's assets: one outcome per item."""
        return await self.attach([target.remote_id for _source, target in batch])

    async def attach(self, asset_ids: Sequence[str]) -> list[Landed | TransferError]:
        """Attach assets to the model: one outcome per id, in order.

        A batch refused as a whole with an item-class error is retried one
        asset at a time; RETRY and STOP errors are raised for the whole batch.
        """
        pending: Sequence[str] = asset_ids
        if len(asset_ids) > 1:
            response = await self._post_attach({"assetIds": list(asset_ids)})
            if response.status == 200:
                # A list answer names what it attached; a single object (the documented
                # shape) cannot, and a 200 is taken to cover the whole batch.
                pending = _unconfirmed(response.json(), asset_ids)
            else:
                err = self._error(response, "finalize")
                if err.action is not Action.FAIL_ITEM:
                    raise err
        outcomes: dict[str, Landed | TransferError] = {}
        for asset_id in pending:
            if not asset_id:
                outcomes[asset_id] = TransferError(
                    "the journal holds no asset id for this item",
                    action=Action.FAIL_ITEM,
                    code="no_asset_id",
                    provider=self.name,
                    op="finalize",
                )
                continue
            response = await self._post_attach({"assetId": asset_id})
            if response.status == 200:
                outcomes[asset_id] = Landed(remote_id=asset_id)
                continue
            err = self._error(response, "finalize")
            if err.code == "already_attached":
                outcomes[asset_id] = Landed(remote_id=asset_id)
            elif err.action is Action.FAIL_ITEM:
                outcomes[asset_id] = err
            else:
                raise err
        return [outcomes.get(asset_id) or Landed(remote_id=asset_id) for asset_id in asset_ids]

    async def _post_attach(self, body: dict[str, Any]) -> Response:
        return await request(
            self._ctx.api,
            "POST",
            f"{self._model_path}/training-images",
            provider=self.name,
            op="finalize",
            json={**body, "preset": self.preset},
            clock=self._ctx.clock,
        )

    def landed(self, source: Source, target: Target) -> Landed:
        return Landed(remote_id=target.remote_id)


def _unconfirmed(payload: Any, asset_ids: Sequence[str]) -> list[str]:
    """The ids a 200 batch answer does not show attached (none, for the single-object shape)."""
    images = payload.get("trainingImages") if isinstance(payload, dict) else None
    if not isinstance(images, list):
        return []
    shown = {image.get("id") for image in images if isinstance(image, dict)}
    return [asset_id for asset_id in asset_ids if asset_id not in shown]
