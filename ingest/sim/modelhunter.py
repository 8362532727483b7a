"""ModelHunter's file-upload API, as its docs describe it.

API: https://docs.modelhunter.ai/core-concepts/file-uploads

Owns three routes and ModelHunter's envelope ``{"success": false, "error":
{"code", "message", "details"?}}``:

    POST /api/v1/files/upload-url      {filename, contentType, sizeBytes}
        → {success, data: {upload_url, file_id, expires_at}}
    POST /api/v1/files/{file_id}/complete   (no body)
        → {success, data: {id, url, filename, content_type, size_bytes, created_at}}
    GET  /_sim/modelhunter/files       (inspection, loopback only, not faulted)

Auth is ``Authorization: Bearer <key>``: none → 401 ``AUTH_REQUIRED``, another
scheme or an unknown key → 401 ``AUTH_INVALID_TOKEN``. Validation: a missing
field → 400 ``MISSING_PARAMETER``, a wrong type → 400 ``INVALID_PARAMETER``,
an unsupported ``contentType`` → 400 ``VALIDATION_ERROR`` (the docs' example),
``sizeBytes`` over the limit → 422 ``FILE_TOO_LARGE``.

The upload URL is a SigV4 PUT to ``/s3/modelhunter-uploads/uploads/<file_id>``
that signs ``content-type`` (a `ModelHunterSimSettings` switch: whether the
real one does is undocumented), so a PUT with another Content-Type fails with
403 SignatureDoesNotMatch. The bucket answers expiry R2-style (403
``ExpiredRequest``): the docs name Cloudflare R2 as the storage.

Complete: the file must belong to the caller's key (else 404 ``NOT_FOUND``);
its bytes must have landed (else 409 ``UPLOAD_NOT_FOUND``) with exactly the
declared ``sizeBytes`` (else 400 ``VALIDATION_ERROR``); with
`ModelHunterSimSettings.complete_ttl_s` set, a file not completed that long
after its URL was issued is forgotten (410 ``UPLOAD_EXPIRED``). A completed
file stays completed: a second complete answers the same data (idempotent).
The CDN url points at this emulator (``/cdn/files/<file_id>.<ext>``), never
at a real host.

Choices where the docs are silent: the 429 code is
``RATE_LIMIT_EXCEEDED``; ids are ``file_<24 hex>``; the limit is 100 MiB.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ingest.sim.context import SimContext, is_loopback

if TYPE_CHECKING:
    from ingest.sim.server import SimServer

PROVIDER = "modelhunter"
BUCKET = "modelhunter-uploads"
UPLOAD_ROUTE = "/api/v1/files/upload-url"
COMPLETE_ROUTE = "/api/v1/files/{file_id}/complete"
FILES_ROUTE = "/_sim/modelhunter/files"
CDN_PREFIX = "/cdn/files"

# MIME types the upload-url route accepts (the docs' examples and its image formats).
SUPPORTED_TYPES: dict[str, str] = {
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "audio/mpeg": "mp3",
}

_INJECTED = {
    429: ("RATE_LIMIT_EXCEEDED", "Too many requests, please slow down"),
    500: ("INTERNAL_ERROR", "Internal server error"),
    503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable"),
}


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file id handed out by upload-url, and its completion if any."""

    file_id: str
    owner: str  # the API key that asked for it
    filename: str
    content_type: str
    size_bytes: int
    issued: float  # emulator clock
    completed: dict[str, Any] | None = None  # the `data` of the first successful complete
    completes: int = 0  # successful complete answers (the first and any repeats)
    sha256: str | None = None  # of the bytes it was completed with

    def to_json(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "filename": self.filename,
            "content_type": self.content_type,
            "size_bytes": self.size_bytes,
            "issued": self.issued,
            "completed": self.completed is not None,
            "completes": self.completes,
            "url": self.completed["url"] if self.completed else None,
        }


# The in-process record: file id -> file, for tests (out of process: FILES_ROUTE).
FILES: web.AppKey[dict[str, FileRecord]] = web.AppKey("ingest.sim.modelhunter", dict)


def files_of(sim: SimServer) -> dict[str, FileRecord]:
    """The ModelHunter files of an in-process emulator (for tests)."""
    return sim._ctx.app[FILES]


def completed_by_sha(sim: SimServer) -> Counter[str]:
    """Completed files per SHA-256 of their bytes: what a ModelHunter user ends up with."""
    return Counter(record.sha256 for record in files_of(sim).values() if record.sha256)


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def error(
    status: int, code: str, message: str, *, field: str | None = None, reason: str | None = None
) -> web.Response:
    """ModelHunter's error envelope; `field`/`reason` fill ``details``."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["details"] = {"field": field, "reason": reason or message}
    return _json(status, {"success": False, "error": body})


def injected_error(status: int) -> web.Response:
    """The envelope of a fault-plan 429/500/503."""
    code, message = _INJECTED[status]
    return error(status, code, message)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _caller(request: web.Request, ctx: SimContext) -> str | web.Response:
    """The caller's API key, or the 401 that says why there is none."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return error(401, "AUTH_REQUIRED", "Authentication required: send Authorization: Bearer")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not ctx.key_accepted(token):
        return error(401, "AUTH_INVALID_TOKEN", "Invalid or revoked API key")
    return token


def _validate(body: bytes, max_size: int) -> tuple[str, str, int] | web.Response:
    """``(filename, contentType, sizeBytes)``, or the error that explains what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error(400, "VALIDATION_ERROR", "Request body must be valid JSON")
    if not isinstance(data, dict):
        return error(400, "VALIDATION_ERROR", "Request body must be a JSON object")
    for name in ("filename", "contentType", "sizeBytes"):
        if data.get(name) is None:
            return error(
                400, "MISSING_PARAMETER", f"Missing required parameter: {name}", field=name
            )
    filename, content_type, size = data["filename"], data["contentType"], data["sizeBytes"]
    if not isinstance(filename, str) or not filename.strip():
        return error(
            400, "INVALID_PARAMETER", "filename must be a non-empty string", field="filename"
        )
    if not isinstance(content_type, str):
        return error(400, "INVALID_PARAMETER", "contentType must be a string", field="contentType")
    if content_type.lower() not in SUPPORTED_TYPES:
        return error(
            400,
            "VALIDATION_ERROR",
            "Invalid contentType: must be a supported MIME type",
            field="contentType",
            reason=f"{content_type!r} is not one of {', '.join(SUPPORTED_TYPES)}",
        )
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return error(
            400, "INVALID_PARAMETER", "sizeBytes must be a positive integer", field="sizeBytes"
        )
    if size > max_size:
        megabytes = max_size / (1024 * 1024)
        limit = f"{megabytes:g} MB" if megabytes >= 1 else f"{max_size} byte"
        return error(
            422,
            "FILE_TOO_LARGE",
            f"File size exceeds the {limit} limit",
            field="sizeBytes",
            reason=f"{size} bytes > {max_size}",
        )
    return filename, content_type.lower(), size


def add_routes(ctx: SimContext) -> None:
    """Register ModelHunter's routes on the emulator."""
    options = ctx.settings.modelhunter
    files: dict[str, FileRecord] = {}
    ctx.app[FILES] = files
    ctx.r2_buckets.add(BUCKET)

    async def upload_url(request: web.Request) -> web.StreamResponse:
        caller = _caller(request, ctx)
        if isinstance(caller, web.Response):
            return caller
        if request.content_type != "application/json":
            return error(400, "VALIDATION_ERROR", "Content-Type must be application/json")
        checked = _validate(await request.read(), options.max_size_bytes)
        if isinstance(checked, web.Response):
            return checked
        filename, content_type, size = checked
        file_id = f"file_{uuid.uuid4().hex[:24]}"
        url, _host = ctx.issue_upload(
            request,
            provider=PROVIDER,
            remote_id=file_id,
            bucket=BUCKET,
            object_key=f"uploads/{file_id}",
            content_type=content_type if options.sign_content_type else None,
        )
        asset = ctx.state.assets[file_id]
        files[file_id] = FileRecord(
            file_id=file_id,
            owner=caller,
            filename=filename,
            content_type=content_type,
            size_bytes=size,
            issued=asset.created,
        )
        return _json(
            200,
            {
                "success": True,
                "data": {"upload_url": url, "file_id": file_id, "expires_at": _iso(asset.expires)},
            },
        )

    async def complete(request: web.Request) -> web.StreamResponse:
        caller = _caller(request, ctx)
        if isinstance(caller, web.Response):
            return caller
        file_id = request.match_info["file_id"]
        record = files.get(file_id)
        if record is None or record.owner != caller:
            return error(404, "NOT_FOUND", f"File not found: {file_id}")
        if record.completed is None:
            ttl = options.complete_ttl_s
            if ttl is not None and ctx.now() > record.issued + ttl:
                return error(
                    410,
                    "UPLOAD_EXPIRED",
                    f"Upload of {file_id} was not completed within {ttl:g} s; "
                    "request a new upload URL",
                )
            stored = ctx.state.object_for(file_id)
            if stored is None:
                return error(
                    409,
                    "UPLOAD_NOT_FOUND",
                    f"No uploaded bytes found for {file_id}: PUT the file to its upload_url first",
                )
            if stored.size != record.size_bytes:
                return error(
                    400,
                    "VALIDATION_ERROR",
                    f"Uploaded size {stored.size} differs from the declared sizeBytes "
                    f"{record.size_bytes}",
                    field="sizeBytes",
                )
            ext = SUPPORTED_TYPES[record.content_type]
            record = dataclasses.replace(
                record,
                completed={
                    "id": file_id,
                    "url": f"http://{request.host}{CDN_PREFIX}/{file_id}.{ext}",
                    "filename": record.filename,
                    "content_type": record.content_type,
                    "size_bytes": stored.size,
                    "created_at": _iso(ctx.now()),
                },
                sha256=stored.sha256,
            )
        record = dataclasses.replace(record, completes=record.completes + 1)
        files[file_id] = record
        return _json(200, {"success": True, "data": record.completed})

    async def list_files(request: web.Request) -> web.StreamResponse:
        if not is_loopback(request):
            return _json(403, {"error": "control routes answer loopback peers only"})
        return _json(200, {"files": [record.to_json() for record in files.values()]})

    ctx.add_api_route("POST", UPLOAD_ROUTE, upload_url, provider=PROVIDER, errors=injected_error)
    ctx.add_api_route("POST", COMPLETE_ROUTE, complete, provider=PROVIDER, errors=injected_error)
    ctx.app.router.add_get(FILES_ROUTE, list_files, allow_head=False)
