"""What the emulated Scenario account holds, how it is rendered, and its control view.

Owns the records of `ingest.sim.scenario` (models and their training
images, assets, multipart uploads and their jobs, the attach fault, the
requests kept for the SDK tests), their JSON shapes as the API answers them,
and the loopback-only control routes (invented: they show a test what landed
and set the attach fault; no provider has them):

    GET /_sim/scenario/models        {"models": [{id, name, training_images: [...]}],
                                      "assets": N, "after_attach", "count",
                                      "held_attaches", "dropped_attaches",
                                      "json_too_long", "largest_json"}
    PUT /_sim/scenario/attach-fault  {"after_attach": "hold"|"drop"|"none", "count": N}

The answer shapes follow the SDK's response models (`scenario-sdk` 2.4.0
``types/upload_create_response.py``, ``types/job_retrieve_response.py``,
``types/asset_*``): every field those models require is present, which
``tests/sdk/test_scenario_sdk.py`` checks by validating recorded answers.

In process, `world_of(sim)` is the record itself and `attached_by_sha(sim)`
counts attachments per image SHA-256 (what the contract suite calls landed).
Everything runs on the event loop's thread; only the routes mutate it.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson
from aiohttp import web

from ingest.sim.context import Handler, SimContext, is_loopback

if TYPE_CHECKING:
    from ingest.sim.server import SimServer

_ALPHABET = string.ascii_letters + string.digits

AttachFault = Literal["none", "hold", "drop"]


@dataclass(frozen=True, slots=True)
class Asset:
    """An uploaded image: what Scenario would keep, and the SHA-256 of its bytes."""

    id: str
    name: str
    mime: str
    size: int
    sha256: str
    source: str  # "uploaded" (base64) or "multipart"
    created: float
    description: str = ""  # set with PUT /assets/{assetId}
    updated: float = 0.0


@dataclass(frozen=True, slots=True)
class TrainingImage:
    """An asset attached to a model (a training image's id is its asset id)."""

    asset_id: str
    name: str
    preset: str
    created: float


@dataclass(slots=True)
class Model:
    """A model shell and its training images, in attach order."""

    id: str
    name: str
    type: str
    created: float
    images: dict[str, TrainingImage] = field(default_factory=dict)  # asset id -> image


UploadStatus = Literal["pending", "validating", "imported", "failed"]
# The upload's job, as the SDK's Job.status names its states.
_JOB_STATUS: dict[UploadStatus, str] = {
    "pending": "pending",
    "validating": "in-progress",
    "imported": "success",
    "failed": "failure",
}


@dataclass(slots=True)
class Upload:
    """A multipart upload: pending → (validating →) imported, or failed; and its job."""

    id: str
    job_id: str
    file_name: str
    file_size: int
    content_type: str
    parts: int
    created: float
    urls: list[dict[str, Any]]
    status: UploadStatus = "pending"
    entity_id: str | None = None
    error: str | None = None
    polls_left: int = 0
    updated: float = 0.0
    history: list[tuple[float, UploadStatus]] = field(default_factory=list)

    def move(self, status: UploadStatus, now: float) -> None:
        """Change status, keeping the job's status history."""
        self.status, self.updated = status, now
        self.history.append((now, status))


@dataclass(slots=True)
class ScenarioWorld:
    """Everything the emulated Scenario account holds. Mutated only by the routes."""

    models: dict[str, Model] = field(default_factory=dict)
    assets: dict[str, Asset] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> upload id
    pending_assets: set[str] = field(default_factory=set)  # assets not yet imported
    attach_fault: AttachFault = "none"
    attach_fault_count: int = 0
    held_attaches: int = 0
    dropped_attaches: int = 0
    json_too_long: int = 0  # JSON bodies refused with 413 "Request Too Long"
    largest_json: int = 0  # bytes of the largest JSON body read
    requests: list[dict[str, Any]] = field(default_factory=list)  # with record_requests
    # The account's user and team, as the SDK's examples write them (authorId, ownerId).
    author_id: str = field(default_factory=lambda: secrets.token_hex(16))
    owner_id: str = field(default_factory=lambda: new_id("team"))

    def description_of(self, asset_id: str) -> str:
        asset = self.assets.get(asset_id)
        return asset.description if asset is not None else ""

    def attached_sha256(self) -> Counter[str]:
        """How many times each image's bytes are a training image, over all models."""
        counts: Counter[str] = Counter()
        for model in self.models.values():
            for asset_id in model.images:
                counts[self.assets[asset_id].sha256] += 1
        return counts


WORLD: web.AppKey[ScenarioWorld] = web.AppKey("ingest.sim.scenario", ScenarioWorld)


def world_of(sim: SimServer) -> ScenarioWorld:
    """The Scenario record of an in-process emulator (for tests)."""
    return sim._ctx.app[WORLD]


def attached_by_sha(sim: SimServer) -> Counter[str]:
    """Training-image attachments per image SHA-256 (the contract suite's `landed`)."""
    return world_of(sim).attached_sha256()


def new_id(prefix: str) -> str:
    """An id in Scenario's form: ``<prefix>_`` and 22 base62 characters."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def iso(epoch: float) -> str:
    """An ISO-8601 UTC time with milliseconds, as Scenario writes dates."""
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def json_response(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def summarized(value: Any) -> Any:
    """A JSON value with every string over 256 characters replaced by its length and SHA-256.

    Recorded requests keep the shape and small values of a body, not its
    megabytes of base64; the SDK tests summarize the SDK's bodies the same way.
    """
    if isinstance(value, str) and len(value) > 256:
        digest = hashlib.sha256(value.encode()).hexdigest()
        return {"head": value[:32], "length": len(value), "sha256": digest}
    if isinstance(value, dict):
        return {k: summarized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [summarized(v) for v in value]
    return value


def training_image_json(image: TrainingImage, description: str = "") -> dict[str, Any]:
    return {
        "id": image.asset_id,
        "name": image.name,
        "createdAt": iso(image.created),
        "downloadUrl": "",
        "automaticCaptioning": "",
        "description": description,
    }


def model_json(model: Model, world: ScenarioWorld, *, images: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": model.id,
        "name": model.name,
        "type": model.type,
        "status": "new",
        "trainingImagesNumber": len(model.images),
        "createdAt": iso(model.created),
        "updatedAt": iso(model.created),
        "authorId": world.author_id,
        "ownerId": world.owner_id,
        "capabilities": [],
        "collectionIds": [],
        "custom": True,
        "exampleAssetIds": [],
        "privacy": "private",
        "source": "scenario",
        "tags": [],
    }
    if images:
        body["trainingImages"] = [
            training_image_json(i, world.description_of(i.asset_id)) for i in model.images.values()
        ]
    return body


def asset_json(asset: Asset, world: ScenarioWorld) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": asset.id,
        "url": "",
        "mimeType": asset.mime,
        "kind": "image",
        "status": "pending" if asset.id in world.pending_assets else "success",
        "source": "uploaded",
        "privacy": "private",
        "properties": {"size": asset.size},
        "createdAt": iso(asset.created),
        "updatedAt": iso(asset.updated or asset.created),
        "authorId": world.author_id,
        "ownerId": world.owner_id,
        "tags": [],
        "collectionIds": [],
        "editCapabilities": [],
        "metadata": {"kind": "image", "type": "uploaded", "name": asset.name},
    }
    if asset.description:
        body["description"] = asset.description
    return body


def upload_json(upload: Upload, world: ScenarioWorld, *, entity: bool) -> dict[str, Any]:
    """The upload as ``/uploads`` answers it; `entity`: show ``entityId`` if it is set."""
    body: dict[str, Any] = {
        "id": upload.id,
        "jobId": upload.job_id,
        "authorId": world.author_id,
        "ownerId": world.owner_id,
        "status": upload.status,
        "parts": upload.urls if upload.status == "pending" else [],
        "partsCount": upload.parts,
        "fileName": upload.file_name,
        "originalFileName": upload.file_name,
        "fileSize": upload.file_size,
        "contentType": upload.content_type,
        "kind": "image",
        "source": "multipart",
        "createdAt": iso(upload.created),
        "updatedAt": iso(upload.updated or upload.created),
    }
    if entity and upload.entity_id is not None:
        body["entityId"] = upload.entity_id
    if upload.error is not None:
        body["errorMessage"] = upload.error
    return body


def job_json(upload: Upload, world: ScenarioWorld, *, entity: bool) -> dict[str, Any]:
    """The upload's job as ``GET /jobs/{jobId}`` answers it (Scenario's Blender client reads
    ``job.metadata.output.entityId``); `entity`: name the asset once the job succeeded."""
    status = _JOB_STATUS[upload.status]
    metadata: dict[str, Any] = {"input": {"uploadId": upload.id}}
    if entity and status == "success" and upload.entity_id is not None:
        metadata["output"] = {"entityId": upload.entity_id}
    if upload.error is not None:
        metadata["error"] = upload.error
    history = [(upload.created, "pending"), *upload.history]
    return {
        "jobId": upload.job_id,
        "jobType": "upload",
        "status": status,
        "progress": {"pending": 0.0, "in-progress": 0.5}.get(status, 1.0),
        "metadata": metadata,
        "statusHistory": [{"date": iso(t), "status": _JOB_STATUS[s]} for t, s in history],
        "createdAt": iso(upload.created),
        "updatedAt": iso(upload.updated or upload.created),
        "authorId": world.author_id,
        "ownerId": world.owner_id,
    }


def add_control_routes(ctx: SimContext, world: ScenarioWorld) -> None:
    """Register the ``/_sim/scenario`` routes (see the module docstring)."""

    def local(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not is_loopback(request):
                return json_response(403, {"error": "control routes answer loopback peers only"})
            return await handler(request)

        return guarded

    def fault_json() -> dict[str, Any]:
        return {
            "after_attach": world.attach_fault,
            "count": world.attach_fault_count,
            "held_attaches": world.held_attaches,
            "dropped_attaches": world.dropped_attaches,
            "json_too_long": world.json_too_long,
            "largest_json": world.largest_json,
        }

    @local
    async def models(request: web.Request) -> web.StreamResponse:
        listed = []
        for model in world.models.values():
            images = []
            for image in model.images.values():
                asset = world.assets[image.asset_id]
                images.append(
                    {
                        "id": image.asset_id,
                        "name": image.name,
                        "preset": image.preset,
                        "sha256": asset.sha256,
                        "size": asset.size,
                        "source": asset.source,
                        "description": asset.description,
                    }
                )
            listed.append({"id": model.id, "name": model.name, "training_images": images})
        return json_response(200, {"models": listed, "assets": len(world.assets), **fault_json()})

    @local
    async def set_attach_fault(request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return json_response(400, {"error": "body must be a JSON object"})
        mode, count = body.get("after_attach"), body.get("count", 1)
        if mode not in ("none", "hold", "drop"):
            return json_response(400, {"error": "after_attach must be none, hold or drop"})
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return json_response(400, {"error": "count must be an integer >= 0"})
        world.attach_fault, world.attach_fault_count = mode, count if mode != "none" else 0
        return json_response(200, fault_json())

    ctx.app.router.add_get("/_sim/scenario/models", models, allow_head=False)
    ctx.app.router.add_put("/_sim/scenario/attach-fault", set_attach_fault)
