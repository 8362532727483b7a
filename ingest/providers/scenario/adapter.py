"""Scenario: training images of one model, inline or as assets.

API: https://docs.scenario.com/api/resources/models/subresources/training_images
Fidelity (each behaviour's source, each gap's emulator setting and test):
docs/fidelity/scenario.md.

How it works:

- Both modes: HTTP Basic ``base64(key:secret)``; every path is relative to
  the base URL (``https://api.cloud.scenario.com/v1``). The first acquire
  reads the model (``GET /models/{id}``), so a wrong key or model id stops
  the run before any bytes move.
- Images under `BASE64_LIMIT` (3,500,000 bytes, the cap of Scenario's own
  client) travel base64 in JSON (`jsonbody`): ``inline`` POSTs a data URL to
  ``/models/{id}/training-images`` (attached in that call), ``assets`` POSTs
  ``/assets``. Larger ones go through a multipart upload (`multipart`, in
  both modes): acquire creates it and gets leased part URLs, transfer PUTs
  the parts, completes it and waits for the asset id; inline mode then
  attaches that asset in the same transfer.
- A 413 on a JSON upload (the body over the API's cap, which no source
  gives exactly) is not a failure: that image goes through ``/uploads``
  instead, and so does every later one at least as large.
- A manifest caption becomes the asset's ``description``
  (``PUT /assets/{assetId}``, scenario-sdk ``assets.update``), set in the
  transfer once the asset exists (a training image is an asset).
- ``assets`` mode's finalize attaches up to 10 assets per call (``assetIds``).
- Attach outcomes: "already a training image of this model" is an outcome
  (the answer to an earlier attach was lost), not a failure. A batch refused
  as a whole with an item-class 4xx is retried one asset at a time, so one
  bad asset does not fail the others. The dataset ceiling (a 429 whose
  ``details`` carry ``actionName``/``actionLimit``) stops the run: smaller
  batches cannot get under it. A plain 429 is retried; 401/403 stop.

Within one process a transfer that is retried never repeats a step that
succeeded: the asset it made, its description and its attach are kept per
item (`_Made`) until the transfer returns or fails for good.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import anyio

from ingest.capabilities import Capabilities
from ingest.errors import Action, ConfigError, TransferError
from ingest.http import Response, request
from ingest.item import Source
from ingest.providers.base import Landed, Target
from ingest.providers.context import Context
from ingest.providers.scenario.jsonbody import JsonUploads
from ingest.providers.scenario.multipart import MultipartUploads
from ingest.providers.scenario.wire import classify, wrong_base
from ingest.providers.settings import (
    ProviderSettings,
    ScenarioMode,
    ScenarioPreset,
    ScenarioSettings,
)
from ingest.redact import register_secret
from ingest.sniff import ImageType

# Raw bytes from which an image goes through /uploads, not base64 in JSON: Scenario's
# own client's cap (blender-plugin scenario/core/api/assets.py BASE64_LIMIT: "under the
# documented 4 MB cap for POST /assets"; "4.4 MB raw PNGs verified to pass").
BASE64_LIMIT = 3_500_000
ASSET_LIMIT = BASE64_LIMIT  # the name earlier code imported
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


@dataclass(slots=True)
class _Made:
    """What a transfer of one item has done so far in this process (see the docstring)."""

    asset_id: str
    attached: bool  # inline mode: the asset is a training image of the model
    described: bool = False


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
        self._base_url = settings.base_url.rstrip("/")  # named when it looks wrong
        self._model_checked = False
        self._model_lock = anyio.Lock()
        self._json = JsonUploads(ctx, self._error, self._model_path, self.preset)
        self._multipart = MultipartUploads(ctx, self._error)
        self.json_cap = BASE64_LIMIT  # lowered by a 413: from this size, /uploads
        self._made: dict[str, _Made] = {}  # item key -> what its transfer did so far
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
            one_put=False,  # base64 in a JSON body or multipart parts: read from a file
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
        await self._check_model()
        if source.size >= self.json_cap:
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
            called = f"{self._base_url}/{self._model_path}"
            wrong = wrong_base(
                response,
                called=called,
                base_url=self._base_url,
                op="check_model",
                auth_hint=self._auth_hint,
            )
            if wrong is not None:
                raise wrong
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
        key = source.item.key
        try:
            made = self._made.get(key)
            if made is None:
                made = self._made[key] = await self._land(source, target)
            if source.item.caption and not made.described:
                await self._describe(made.asset_id, source.item.caption)
                made.described = True
            if self.mode == "inline" and not made.attached:
                [outcome] = await self.attach([made.asset_id])
                if isinstance(outcome, TransferError):
                    raise outcome
                made.attached = True
        except TransferError as err:
            if err.action is not Action.RETRY:  # this transfer will not be tried again
                self._made.pop(key, None)
            raise
        del self._made[key]
        return dataclasses.replace(target, remote_id=made.asset_id)

    async def _land(self, source: Source, target: Target) -> _Made:
        """Make the item's asset (inline and small: its training image): base64 or multipart."""
        upload_id = target.extra.get("upload_id") or self._multipart.current(source.item.key)
        if not upload_id and source.size < self.json_cap:
            try:
                if self.mode == "inline":
                    return _Made(await self._json.training_image(source), attached=True)
                return _Made(await self._json.asset(source), attached=False)
            except TransferError as err:
                if err.status != 413:
                    raise
                # Too long for this API's JSON cap: this image, and any as large, in parts.
                self.json_cap = min(self.json_cap, source.size)
        if not upload_id:
            target = await self._multipart.create(source)
            upload_id = target.extra["upload_id"]
        landed = await self._multipart.transfer(source, target, upload_id)
        return _Made(landed.remote_id, attached=False)

    async def _describe(self, asset_id: str, caption: str) -> None:
        """The manifest caption as the asset's description (``PUT /assets/{assetId}``)."""
        response = await request(
            self._ctx.api,
            "PUT",
            f"assets/{quote(asset_id, safe='')}",
            provider=self.name,
            op="transfer",
            json={"description": caption},
            clock=self._ctx.clock,
        )
        if response.status != 200:
            raise self._error(response, "describe")

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
