"""Scenario's training-image API under ``/v1``, as its docs describe it.

API: https://docs.scenario.com/api/resources/models/subresources/training_images
Uploads: https://docs.scenario.com/get-started/content/uploading-assets

Owns the emulated models, assets and multipart uploads, and the routes:

    POST /v1/models                              {name?, type?} → {model}
    GET  /v1/models/{modelId}                    {model: {..., trainingImages: [every one]}}
    POST /v1/models/{modelId}/training-images    assetId | assetIds (≤ 10) | data + name; preset
    POST /v1/assets                              {image: base64 (or a data URL), name} → {asset}
    POST /v1/uploads                             {fileName, fileSize, contentType, kind, parts} → {upload}
    POST /v1/uploads/{uploadId}/action           {action: "complete"} → {upload}
    GET  /v1/uploads/{uploadId}                  {upload}

Auth is ``Basic base64(key:secret)``; a missing or wrong credential is a 401.
With `SimSettings.api_keys` set, ``key:secret`` or the key alone must be
listed (so ``--key KEY:SECRET`` checks both halves, ``--key KEY`` the key).
Errors use the JSON envelope ``{"message", "reason"?, "details"?}``; the
documented ones are reproduced: 400 "Too many assetIds provided in a single
request", 400 "The provided assetId is already a training image of this
model", and the dataset ceiling as a 429 whose ``details`` name
``actionName``/``actionLimit``. An attach is all or nothing.

Images under 6 MB (6,000,000 bytes) go to ``/assets`` or inline ``data``;
larger ones must use ``/uploads``, whose parts are pre-signed PUTs to the
shared storage route (``scenario-uploads/<upload id>/<n>``, Content-Type
signed). Completing an upload assembles the parts (every part but the last
at least `ScenarioSimSettings.min_part_size`, the sum equal to ``fileSize``)
into an asset. Every asset's bytes are recorded as a `StoredObject` under
``scenario-assets/<asset id>`` (SHA-256 of the decoded image or of the
assembled parts), so ``/_sim/objects`` shows them like any other upload.

The error envelope, credentials and body decoding live in
`ingest.sim.scenario_wire`; the records, their JSON shapes and the control
routes (``/_sim/scenario/…``) in `ingest.sim.scenario_world`. Its attach fault commits the next N
successful attaches, then holds the answer (until shutdown, so a test can
kill the client) or drops the connection: the client never learns that its
attach landed.
"""

from __future__ import annotations

import anyio
from aiohttp import web

from ingest.sim.context import Handler, SimContext, abort_connection
from ingest.sim.magic import identify
from ingest.sim.scenario_wire import (
    ACCEPTED,
    ACCEPTED_MIMES,
    CLIENT_GONE,
    BadRequest,
    ClientGone,
    bad,
    basic_credentials,
    decode_image,
    digest,
    error,
    image_type,
    injected_error,
    read_json,
    sha256_hex,
)
from ingest.sim.scenario_world import (
    WORLD,
    Asset,
    Model,
    ScenarioWorld,
    TrainingImage,
    Upload,
    add_control_routes,
    asset_json,
    iso,
    json_response,
    model_json,
    new_id,
    training_image_json,
    upload_json,
)
from ingest.sim.state import IssuedAsset

PROVIDER = "scenario"
BASE_PATH = "/v1"
ASSET_BUCKET = "scenario-assets"
UPLOAD_BUCKET = "scenario-uploads"
MAX_BATCH = 10
MAX_PARTS = 10_000
PRESETS = ("default", "style", "subject")
ALREADY_ATTACHED = "The provided assetId is already a training image of this model"
TOO_MANY = "Too many assetIds provided in a single request"


# -- routes ----------------------------------------------------------------------


def add_routes(ctx: SimContext) -> None:
    """Register Scenario's routes (under ``/v1``) and its control routes."""
    settings = ctx.settings.scenario
    world = ScenarioWorld()
    ctx.app[WORLD] = world
    for model_id in sorted(settings.models):
        world.models[model_id] = Model(model_id, model_id, "sd-xl-lora", ctx.now())

    def authorized(request: web.Request) -> web.Response | None:
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
            refused = authorized(request)
            if refused is not None:
                return refused
            try:
                return await handler(request)
            except BadRequest as bad:
                return bad.response
            except ClientGone:
                # Quietly: a traceback per killed client floods the emulator's stderr.
                abort_connection(request)
                return web.Response(status=CLIENT_GONE)

        return checked

    def model_for(request: web.Request) -> Model:
        model_id = request.match_info["modelId"]
        model = world.models.get(model_id)
        if model is None and settings.auto_create_models:
            model = world.models[model_id] = Model(model_id, model_id, "sd-xl-lora", ctx.now())
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
        body = await read_json(request)
        name = body.get("name", "Untitled")
        if not isinstance(name, str) or len(name) > 64:
            raise bad("name: must be a string of at most 64 characters")
        kind = body.get("type", "sd-xl-lora")
        if not isinstance(kind, str):
            raise bad("type: must be a string")
        model = Model(new_id("model"), name, kind, ctx.now())
        world.models[model.id] = model
        return json_response(200, {"model": model_json(model, images=True)})

    async def get_model(request: web.Request) -> web.StreamResponse:
        return json_response(200, {"model": model_json(model_for(request), images=True)})

    async def add_training_images(request: web.Request) -> web.StreamResponse:
        model = model_for(request)
        body = await read_json(request)
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
                raise bad(TOO_MANY)
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
            raw, declared = decode_image("data", body["data"], data_url=True)
            mime = image_type("data", raw, declared)
            check_ceiling(model, 1)
            asset = record_asset(len(raw), await digest(raw), mime, name, "uploaded")
            return await attach(request, model, [asset.id], preset, batch=False)
        raise bad("one of assetId, assetIds or data is required")

    def check_ceiling(model: Model, adding: int) -> None:
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
        if any(asset_id in model.images for asset_id in ids):
            raise bad(ALREADY_ATTACHED)
        check_ceiling(model, len(ids))
        now = ctx.now()
        added = []
        for asset_id in ids:
            image = TrainingImage(asset_id, world.assets[asset_id].name, preset, now)
            model.images[asset_id] = image
            added.append(training_image_json(image))
        if world.attach_fault != "none" and world.attach_fault_count > 0:
            world.attach_fault_count -= 1
            if world.attach_fault == "drop":
                world.dropped_attaches += 1
                abort_connection(request)
                return web.Response()
            world.held_attaches += 1
            await ctx.hold(request)
            return web.Response()
        if batch and settings.batch_response == "list":
            return json_response(200, {"trainingImages": added})
        return json_response(200, {"trainingImage": added[0]})

    async def create_asset(request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise bad("name: the original file name is required")
        raw, declared = decode_image("image", body.get("image"), data_url=False)
        mime = image_type("image", raw, declared)
        asset = record_asset(len(raw), await digest(raw), mime, name, "uploaded")
        return json_response(200, {"asset": asset_json(asset)})

    async def create_upload(request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        file_name, size = body.get("fileName"), body.get("fileSize")
        content_type, kind, parts = body.get("contentType"), body.get("kind"), body.get("parts")
        if not isinstance(file_name, str) or not file_name:
            raise bad("fileName: required")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise bad("fileSize: must be a positive integer")
        if not isinstance(content_type, str) or content_type not in ACCEPTED_MIMES:
            raise bad(f"contentType: unsupported image type {content_type!r}")
        if kind not in ("image", "asset"):
            raise bad("kind: must be image")
        if not isinstance(parts, int) or isinstance(parts, bool) or not 1 <= parts <= MAX_PARTS:
            raise bad(f"parts: must be an integer from 1 to {MAX_PARTS}")
        if (parts - 1) * settings.min_part_size >= size:
            raise bad(
                f"parts: {parts} parts of a {size}-byte file would be smaller than "
                f"{settings.min_part_size} bytes"
            )
        upload_id = new_id("upload")
        urls = []
        for number in range(1, parts + 1):
            remote_id = f"{upload_id}#{number}"
            url, _host = ctx.issue_upload(
                request,
                provider=PROVIDER,
                remote_id=remote_id,
                bucket=UPLOAD_BUCKET,
                object_key=f"{upload_id}/{number}",
                content_type=content_type,
                keep_body=True,
            )
            expires = ctx.state.assets[remote_id].expires
            urls.append({"number": number, "url": url, "expires": iso(expires)})
        upload = Upload(upload_id, file_name, size, content_type, parts, ctx.now(), urls)
        world.uploads[upload_id] = upload
        return json_response(200, {"upload": upload_json(upload)})

    def upload_for(request: web.Request) -> Upload:
        upload = world.uploads.get(request.match_info["uploadId"])
        if upload is None:
            raise BadRequest(error(404, "Upload not found", reason="not_found"))
        return upload

    async def upload_action(request: web.Request) -> web.StreamResponse:
        upload = upload_for(request)
        body = await read_json(request)
        if body.get("action") != "complete":
            raise bad("action: must be complete")
        if upload.status == "pending":
            await complete(upload)
        return json_response(200, {"upload": upload_json(upload)})

    async def complete(upload: Upload) -> None:
        state = ctx.state
        keys = [f"{UPLOAD_BUCKET}/{upload.id}/{n}" for n in range(1, upload.parts + 1)]
        for number, key in enumerate(keys, start=1):
            if key not in state.objects:
                raise bad(f"part {number} of {upload.parts} has not been uploaded")
        sizes = [state.objects[key].size for key in keys]
        small = [n for n, s in enumerate(sizes[:-1], 1) if s < settings.min_part_size]
        if small:
            raise bad(f"part {small[0]} is smaller than {settings.min_part_size} bytes")
        if sum(sizes) != upload.file_size:
            raise bad(f"the parts hold {sum(sizes)} bytes, not fileSize {upload.file_size}")
        bodies = [state.bodies.pop(key, b"") for key in keys]
        raw = b"".join(bodies)
        if len(raw) != upload.file_size:  # pragma: no cover - storage keeps every part body
            raise BadRequest(error(500, "part bodies went missing"))
        kind = identify(raw)
        if kind is None or kind not in ACCEPTED or kind.mime != upload.content_type:
            upload.status, upload.error = "failed", "the file is not a supported image"
            return
        upload.status = "validating"  # a complete arriving meanwhile just answers the upload
        sha256 = await anyio.to_thread.run_sync(sha256_hex, raw)
        asset = record_asset(len(raw), sha256, kind.mime, upload.file_name, "multipart")
        upload.entity_id = asset.id
        upload.polls_left = settings.pending_polls
        upload.status = "validating" if upload.polls_left else "imported"

    async def get_upload(request: web.Request) -> web.StreamResponse:
        upload = upload_for(request)
        if upload.status == "validating":
            if upload.polls_left > 0:
                upload.polls_left -= 1
            else:
                upload.status = "imported"
        return json_response(200, {"upload": upload_json(upload)})

    routes: list[tuple[str, str, Handler]] = [
        ("POST", "/models", create_model),
        ("GET", "/models/{modelId}", get_model),
        ("POST", "/models/{modelId}/training-images", add_training_images),
        ("POST", "/assets", create_asset),
        ("POST", "/uploads", create_upload),
        ("POST", "/uploads/{uploadId}/action", upload_action),
        ("GET", "/uploads/{uploadId}", get_upload),
    ]
    for method, path, handler in routes:
        ctx.add_api_route(
            method, BASE_PATH + path, api(handler), provider=PROVIDER, errors=injected_error
        )
    add_control_routes(ctx, world)
