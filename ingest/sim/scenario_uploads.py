"""Scenario's multipart uploads and their jobs, the way to send images of any size.

Uploads: https://docs.scenario.com/get-started/content/uploading-assets

Owns these routes of `ingest.sim.scenario` (registered through its request
wrapper, so auth, faults and recording are the same):

    POST /v1/uploads                       {fileName, fileSize, contentType, kind, parts} → {upload}
    POST /v1/uploads/{uploadId}/action     {action: "complete"} → {upload}
    GET  /v1/uploads/{uploadId}            {upload}
    GET  /v1/jobs/{jobId}                  {job}: the upload's job

How it works: a new upload lists one pre-signed PUT per part (the shared
storage route, ``scenario-uploads/<upload id>/<n>``, Content-Type signed) and
names its job (``jobId``, as Scenario's Blender client reads it:
``scenario/core/api/assets.py::upload_multipart``). Completing it assembles the
parts (every part but the last at least `ScenarioSimSettings.min_part_size`,
the sum equal to ``fileSize``) into an asset; `pending_polls` answers (of
either route) then say ``validating`` / ``in-progress`` before ``imported`` /
``success``.

Where the new asset's id shows is a gap (docs/fidelity/scenario.md): the SDK
types the upload's ``entityId`` [S13], Scenario's client reads the job's
``metadata.output.entityId`` (``jobs.py::upload_entity_id``), and the SDK's
job model says ``output`` exists only for some custom models.
`entity_id_from` plays ``both``, only the ``job`` or only the ``upload``;
`entity_id_when` ``early`` shows the upload's ``entityId`` from the complete
on, while the asset is still pending (an attach of it is then refused until
the import ends).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from aiohttp import web

from ingest.sim.context import Handler, SimContext
from ingest.sim.magic import identify
from ingest.sim.scenario_wire import (
    ACCEPTED,
    ACCEPTED_MIMES,
    BadRequest,
    bad,
    error,
    read_json,
    sha256_hex,
)
from ingest.sim.scenario_world import (
    Asset,
    ScenarioWorld,
    Upload,
    iso,
    job_json,
    json_response,
    new_id,
    upload_json,
)

PROVIDER = "scenario"
UPLOAD_BUCKET = "scenario-uploads"
MAX_PARTS = 10_000  # parts: 1..10000 [S12]

Route = Callable[[str, str, Handler], None]
RecordAsset = Callable[[int, str, str, str, str], Asset]


def add_upload_routes(
    ctx: SimContext, world: ScenarioWorld, route: Route, record_asset: RecordAsset
) -> None:
    """Register the upload and job routes (see the module docstring)."""
    settings = ctx.settings.scenario
    limit = settings.json_body_limit

    def upload_shows_entity(upload: Upload) -> bool:
        if settings.entity_id_from == "job":
            return False
        return upload.status == "imported" or settings.entity_id_when == "early"

    async def create_upload(request: web.Request) -> web.StreamResponse:
        # Fields and their rules: [S12][S13] (scenario-sdk resources/uploads.py::create).
        body = await read_json(request, limit)
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
        # The part-size rule is not documented (a gap): S3's 5 MiB floor is assumed.
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
        now = ctx.now()
        upload = Upload(
            upload_id, new_id("job"), file_name, size, content_type, parts, now, urls, updated=now
        )
        world.uploads[upload_id] = upload
        world.jobs[upload.job_id] = upload_id
        return json_response(200, {"upload": upload_json(upload, world, entity=False)})

    def upload_for(request: web.Request) -> Upload:
        upload = world.uploads.get(request.match_info["uploadId"])
        if upload is None:
            raise BadRequest(error(404, "Upload not found", reason="not_found"))
        return upload

    async def upload_action(request: web.Request) -> web.StreamResponse:
        # {"action": "complete"} [S12]; the SDK's only action (resources/uploads.py::trigger_action).
        upload = upload_for(request)
        body = await read_json(request, limit)
        if body.get("action") != "complete":
            raise bad("action: must be complete")
        if upload.status == "pending":
            await complete(upload)
        answer = upload_json(upload, world, entity=upload_shows_entity(upload))
        return json_response(200, {"upload": answer})

    async def complete(upload: Upload) -> None:
        state = ctx.state
        keys = [f"{UPLOAD_BUCKET}/{upload.id}/{n}" for n in range(1, upload.parts + 1)]
        for number, key in enumerate(keys, start=1):
            # An external store is asked for each part's bytes (GET), to assemble the file.
            if await ctx.stored(key, body=True) is None:
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
            upload.error = "the file is not a supported image"
            upload.move("failed", ctx.now())
            return
        upload.move("validating", ctx.now())  # a complete arriving meanwhile just answers
        sha256 = await anyio.to_thread.run_sync(sha256_hex, raw)
        asset = record_asset(len(raw), sha256, kind.mime, upload.file_name, "multipart")
        upload.entity_id = asset.id
        upload.polls_left = settings.pending_polls
        if upload.polls_left:
            world.pending_assets.add(asset.id)
        else:
            upload.move("imported", ctx.now())

    def polled(upload: Upload) -> None:
        """One poll of the upload or its job: validating counts down to imported."""
        if upload.status != "validating":
            return
        if upload.polls_left > 0:
            upload.polls_left -= 1
            return
        upload.move("imported", ctx.now())
        if upload.entity_id is not None:
            world.pending_assets.discard(upload.entity_id)

    async def get_upload(request: web.Request) -> web.StreamResponse:
        # GET /uploads/{id} [S12]; entityId per `entity_id_from` / `entity_id_when` (a gap).
        upload = upload_for(request)
        polled(upload)
        answer = upload_json(upload, world, entity=upload_shows_entity(upload))
        return json_response(200, {"upload": answer})

    async def get_job(request: web.Request) -> web.StreamResponse:
        # GET /jobs/{jobId}: scenario-sdk resources/jobs.py::retrieve, types/job_retrieve_response.py;
        # metadata.output.entityId as blender-plugin scenario/core/api/jobs.py reads it.
        upload_id = world.jobs.get(request.match_info["jobId"])
        if upload_id is None:
            raise BadRequest(error(404, "Job not found", reason="not_found"))
        upload = world.uploads[upload_id]
        polled(upload)
        entity = settings.entity_id_from != "upload"
        return json_response(200, {"job": job_json(upload, world, entity=entity)})

    route("POST", "/uploads", create_upload)
    route("POST", "/uploads/{uploadId}/action", upload_action)
    route("GET", "/uploads/{uploadId}", get_upload)
    route("GET", "/jobs/{jobId}", get_job)
