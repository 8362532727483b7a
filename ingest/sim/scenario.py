"""Scenario's training-image API under ``/v1``, as its docs, SDK and own client describe it.

API: https://docs.scenario.com/api/resources/models/subresources/training_images
Uploads: https://docs.scenario.com/get-started/content/uploading-assets

Owns the emulated models, assets and training images, the request wrapper
every Scenario route shares, and these routes (each route's source is named
beside it below; docs/fidelity/scenario.md is the whole table):

    POST /v1/models                              {name?, type?} → {model}
    GET  /v1/models/{modelId}                    {model: {..., trainingImages: [every one]}}
    POST /v1/models/{modelId}/training-images    assetId | assetIds (≤ 10) | data + name; preset
    POST /v1/assets                              {image: data URL or base64, name} → {asset}
    PUT  /v1/assets/{assetId}                    {description?, name?} → {asset}

and, in `ingest.sim.scenario_uploads`, the multipart uploads and their jobs
(``/v1/uploads``, ``/v1/uploads/{id}/action``, ``/v1/uploads/{id}``,
``/v1/jobs/{jobId}``).

Auth is ``Basic base64(key:secret)``; a missing or wrong credential is a 401.
With `SimSettings.api_keys` set, ``key:secret`` or the key alone must be
listed (so ``--key KEY:SECRET`` checks both halves, ``--key KEY`` the key).
Errors use the JSON envelope ``{"message", "reason"?, "details"?}``; the
documented ones are reproduced: 400 "Too many assetIds provided in a single
request", 400 "The provided assetId is already a training image of this
model", and the dataset ceiling as a 429 whose ``details`` name
``actionName``/``actionLimit``. An attach is all or nothing. A JSON body over
`ScenarioSimSettings.json_body_limit` is a 413 (`ingest.sim.scenario_wire`).

Images under 6 MB (6,000,000 bytes) may go to ``/assets`` or inline ``data``
[S15]; whether ``image`` takes a data URL, bare base64 or both is a gap
(`ScenarioSimSettings.asset_image`). Every asset's bytes are recorded as a
`StoredObject` under ``scenario-assets/<asset id>`` (SHA-256 of the decoded
image or of the assembled parts), so ``/_sim/objects`` shows them like any
other upload.

The error envelope, credentials and body decoding live in
`ingest.sim.scenario_wire`; the records, their JSON shapes and the control
routes (``/_sim/scenario/…``) in `ingest.sim.scenario_world`. Its attach fault commits the next N
successful attaches, then holds the answer (until shutdown, so a test can
kill the client) or drops the connection: the client never learns that its
attach landed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from aiohttp import web

from ingest.sim.context import Handler, SimContext, abort_connection
from ingest.sim.scenario_uploads import add_upload_routes
from ingest.sim.scenario_wire import (
    BODY_JSON,
    BODY_SIZE,
    CLIENT_GONE,
    BadRequest,
    ClientGone,
    bad,
    basic_credentials,
    decode_image,
    digest,
    error,
    image_type,
    injected_errors,
    read_json,
)
from ingest.sim.scenario_world import (
    WORLD,
    Asset,
    Model,
    ScenarioWorld,
    TrainingImage,
    add_control_routes,
    asset_json,
    json_response,
    model_json,
    new_id,
    summarized,
    training_image_json,
)
from ingest.sim.state import IssuedAsset

PROVIDER = "scenario"
BASE_PATH = "/v1"
ASSET_BUCKET = "scenario-assets"
MAX_BATCH = 10
PRESETS = ("default", "style", "subject")
ALREADY_ATTACHED = "The provided assetId is already a training image of this model"
TOO_MANY = "Too many assetIds provided in a single request"
# A type the SDK's Model.type admits (scenario-sdk 2.4.0 types/model_retrieve_response.py).
MODEL_TYPE = "flux.1-lora"
NOT_READY = "The asset is not ready yet"  # invented: an attach before the import finished


# -- routes ----------------------------------------------------------------------


def add_routes(ctx: SimContext) -> None:
    """Register Scenario's routes (under ``/v1``) and its control routes."""
    settings = ctx.settings.scenario
    world = ScenarioWorld()
    ctx.app[WORLD] = world
    for model_id in sorted(settings.models):
        world.models[model_id] = Model(model_id, model_id, MODEL_TYPE, ctx.now())
    limit = settings.json_body_limit

    def authorized(request: web.Request) -> web.Response | None:
        # Basic base64(key:secret) [S14]; the SDK builds the same header (_client.py).
        creds = basic_credentials(request.headers.get("Authorization"))
        if creds is None or not creds[0] or not creds[1]:
            return error(401, "Unauthorized")
        key, secret = creds
        keys = ctx.settings.api_keys
        if keys is not None and f"{key}:{secret}" not in keys and key not in keys:
            return error(401, "Invalid API key or secret", reason="unauthorized")
        return None

    def api(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            response: web.StreamResponse | None = authorized(request)
            try:
                if response is None:
                    response = await handler(request)
            except BadRequest as refused:
                response = refused.response
            except ClientGone:
                # Quietly: a traceback per killed client floods the emulator's stderr.
                abort_connection(request)
                return web.Response(status=CLIENT_GONE)
            size = request.get(BODY_SIZE, 0)
            world.largest_json = max(world.largest_json, size)
            if response.status == 413 and size > limit:
                world.json_too_long += 1
            if settings.record_requests:
                world.requests.append(recorded(request, response))
            return response

        return checked

    def recorded(request: web.Request, response: web.StreamResponse) -> dict[str, Any]:
        """What the SDK tests compare: method, path, query, the headers that matter, bodies."""
        answer: Any = None
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            try:
                answer = orjson.loads(response.body)
            except orjson.JSONDecodeError:
                answer = None
        headers = {k.lower(): request.headers.get(k) for k in ("Authorization", "Content-Type")}
        return {
            "method": request.method,
            "path": request.path.removeprefix(BASE_PATH),
            "query": dict(request.query),
            "headers": {k: v for k, v in headers.items() if v},
            "json": summarized(request.get(BODY_JSON)),
            "status": response.status,
            "answer": answer,
        }

    def model_for(request: web.Request) -> Model:
        model_id = request.match_info["modelId"]
        model = world.models.get(model_id)
        if model is None and settings.auto_create_models:
            model = world.models[model_id] = Model(model_id, model_id, MODEL_TYPE, ctx.now())
        if model is None:
            raise BadRequest(error(404, f"Model not found: {model_id}", reason="not_found"))
        return model

    def record_asset(raw_size: int, sha256: str, mime: str, name: str, source: str) -> Asset:
        now = ctx.now()
        asset = Asset(new_id("asset"), name, mime, raw_size, sha256, source, now)
        world.assets[asset.id] = asset
        key = f"{ASSET_BUCKET}/{asset.id}"
        ctx.state.issue(IssuedAsset(asset.id, PROVIDER, key, now, now, mime))
        ctx.state.store(key, size=raw_size, sha256=sha256, content_type=mime)
        return asset

    async def create_model(request: web.Request) -> web.StreamResponse:
        # POST /models: name ≤ 64, type [S12]; the shell training images are added to [S16].
        body = await read_json(request, limit)
        name = body.get("name", "Untitled")
        if not isinstance(name, str) or len(name) > 64:
            raise bad("name: must be a string of at most 64 characters")
        kind = body.get("type", MODEL_TYPE)
        if not isinstance(kind, str):
            raise bad("type: must be a string")
        model = Model(new_id("model"), name, kind, ctx.now())
        world.models[model.id] = model
        return json_response(200, {"model": model_json(model, world, images=True)})

    async def get_model(request: web.Request) -> web.StreamResponse:
        # GET /models/{id}: every training image (the list has no route of its own) [S12][S13].
        return json_response(200, {"model": model_json(model_for(request), world, images=True)})

    async def add_training_images(request: web.Request) -> web.StreamResponse:
        # assetId | assetIds (≤ 10, alone) | data (a data URL) + name; preset [S12][S13][S17].
        model = model_for(request)
        body = await read_json(request, limit)
        preset = body.get("preset", "default")
        if preset not in PRESETS:
            raise bad(f"preset: must be one of {', '.join(PRESETS)}")
        if "assetIds" in body:
            if any(k in body for k in ("assetId", "data", "name")):
                raise bad("assetIds cannot be combined with assetId, data or name")
            ids = body["assetIds"]
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                raise bad("assetIds: must be a non-empty array of asset ids")
            if len(ids) > MAX_BATCH:
                raise bad(TOO_MANY)  # [S16]
            return await attach(request, model, list(dict.fromkeys(ids)), preset, batch=True)
        if "assetId" in body:
            asset_id = body["assetId"]
            if not isinstance(asset_id, str) or not asset_id:
                raise bad("assetId: must be an asset id")
            return await attach(request, model, [asset_id], preset, batch=False)
        if "data" in body:
            name = body.get("name", "image")
            if not isinstance(name, str):
                raise bad("name: must be a string")
            raw, declared = decode_image("data", body["data"], accept="data_url")
            mime = image_type("data", raw, declared)
            check_ceiling(model, 1)
            asset = record_asset(len(raw), await digest(raw), mime, name, "uploaded")
            return await attach(request, model, [asset.id], preset, batch=False)
        raise bad("one of assetId, assetIds or data is required")

    def check_ceiling(model: Model, adding: int) -> None:
        # The per-team dataset ceiling: a 429 whose details name the action [S16].
        limit = settings.training_image_limit
        if limit is not None and len(model.images) + adding > limit:
            raise BadRequest(
                error(
                    429,
                    f"You have reached the limit of {limit} training images for this model",
                    reason="limit_exceeded",
                    details={"actionName": "add-training-image", "actionLimit": limit},
                )
            )

    async def attach(
        request: web.Request, model: Model, ids: list[str], preset: str, *, batch: bool
    ) -> web.StreamResponse:
        for asset_id in ids:
            if asset_id not in world.assets:
                raise BadRequest(error(404, f"Asset not found: {asset_id}", reason="not_found"))
            if asset_id in world.pending_assets:
                raise bad(NOT_READY)
        if any(asset_id in model.images for asset_id in ids):
            raise bad(ALREADY_ATTACHED)  # [S16]
        check_ceiling(model, len(ids))
        now = ctx.now()
        added = []
        for asset_id in ids:
            image = TrainingImage(asset_id, world.assets[asset_id].name, preset, now)
            model.images[asset_id] = image
            added.append(training_image_json(image, world.description_of(asset_id)))
        if world.attach_fault != "none" and world.attach_fault_count > 0:
            world.attach_fault_count -= 1
            if world.attach_fault == "drop":
                world.dropped_attaches += 1
                abort_connection(request)
                return web.Response()
            world.held_attaches += 1
            await ctx.hold(request)
            return web.Response()
        # The documented answer is one trainingImage even for a batch (a gap: `batch_response`).
        if batch and settings.batch_response == "list":
            return json_response(200, {"trainingImages": added})
        return json_response(200, {"trainingImage": added[0]})

    async def create_asset(request: web.Request) -> web.StreamResponse:
        # POST /assets {name, image}: "base64 format string" [S12], sent as a data URL by
        # Scenario's client (blender-plugin scenario/core/api/assets.py::upload_image_base64).
        body = await read_json(request, limit)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise bad("name: the original file name is required")
        raw, declared = decode_image("image", body.get("image"), accept=settings.asset_image)
        mime = image_type("image", raw, declared)
        asset = record_asset(len(raw), await digest(raw), mime, name, "uploaded")
        return json_response(200, {"asset": asset_json(asset, world)})

    async def update_asset(request: web.Request) -> web.StreamResponse:
        # PUT /assets/{assetId} {description?, name?}: scenario-sdk resources/assets/assets.py
        # ::update ("description: The new description of the asset"; other fields ignored here).
        asset = world.assets.get(request.match_info["assetId"])
        if asset is None:
            raise BadRequest(error(404, "Asset not found", reason="not_found"))
        body = await read_json(request, limit)
        changes: dict[str, Any] = {}
        for key in ("description", "name"):
            if key in body:
                if not isinstance(body[key], str):
                    raise bad(f"{key}: must be a string")
                changes[key] = body[key]
        asset = dataclasses.replace(asset, **changes, updated=ctx.now())
        world.assets[asset.id] = asset
        return json_response(200, {"asset": asset_json(asset, world)})

    routes: list[tuple[str, str, Handler]] = [
        ("POST", "/models", create_model),
        ("GET", "/models/{modelId}", get_model),
        ("POST", "/models/{modelId}/training-images", add_training_images),
        ("POST", "/assets", create_asset),
        ("PUT", "/assets/{assetId}", update_asset),
    ]
    errors = injected_errors(settings.remaining_seconds_at, settings.should_retry)

    def route(method: str, path: str, handler: Handler) -> None:
        ctx.add_api_route(method, BASE_PATH + path, api(handler), provider=PROVIDER, errors=errors)

    for method, path, handler in routes:
        route(method, path, handler)
    add_upload_routes(ctx, world, route, record_asset)
    add_control_routes(ctx, world)
