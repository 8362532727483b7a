"""ModelHunter's file-upload API, as its docs describe it.

Sources: docs.modelhunter.ai/api-reference/files/get-upload-url (the page this
project was started from), /api-reference/files/complete-upload,
/core-concepts/file-uploads, /core-concepts/error-handling, /authentication.
ModelHunter has no SDK. Each route and answer below names its page, or says
"invented" and why.

Owns three routes and ModelHunter's envelope ``{"success": false, "error":
{"code", "message", "details"?}}`` (error-handling):

    POST /api/v1/files/upload-url      {filename, contentType, sizeBytes}
        → {success, data: {upload_url, file_id, expires_at}}          (get-upload-url)
    POST /api/v1/files/{file_id}/complete   (no body)
        → {success, data: {id, url, filename, content_type, size_bytes, created_at}}
                                                                       (complete-upload)
    GET  /_sim/modelhunter/files       (inspection, loopback only, not faulted; invented)

Auth is ``Authorization: Bearer <key>`` (authentication): none → 401
``AUTH_REQUIRED``, another scheme or an unknown key → 401
``AUTH_INVALID_TOKEN`` (codes from error-handling). Validation: a missing
field → 400 ``MISSING_PARAMETER``, a wrong type → 400 ``INVALID_PARAMETER``
(error-handling's codes; which one the API picks is inferred), an unsupported
``contentType`` → 400 ``VALIDATION_ERROR`` (get-upload-url's example),
``sizeBytes`` over the limit → 422 ``FILE_TOO_LARGE`` (get-upload-url's
example): 100 MB for any file, 50 MB for an image (file-uploads), MB = 10^6.

The upload URL is a SigV4 PUT to ``/s3/modelhunter-uploads/uploads/<file_id>``
(the path is invented; the docs show storage.modelhunter.ai/uploads/<id>)
that signs ``content-type`` unless `ModelHunterSimSettings.sign_content_type`
is off (a gap: undocumented), so a PUT with another Content-Type fails with
403 SignatureDoesNotMatch. The URL lives ModelHunter's 15 minutes ("Valid
for 15 minutes", get-upload-url) unless ``--lifetime`` says otherwise. The bucket
answers expiry R2-style (403 ``ExpiredRequest``): file-uploads names
Cloudflare R2 as the storage.

Complete: an unknown file id, another key's, or one not completed before its
URL expired (`forget_expired`, on by default) answers 404 ``FILE_NOT_FOUND``
"File not found or upload URL has expired" (complete-upload). A file whose
bytes never landed answers the same 404 (inferred: the page's only error),
and bytes of another size than the declared ``sizeBytes`` 400
``VALIDATION_ERROR`` (invented: no page says what complete checks). A second
complete of a completed file answers the same data (`complete_repeat`
``same``) or 409 ``ALREADY_COMPLETED`` (``conflict``, invented: a gap). The
CDN url points at this emulator (``/cdn/files/<file_id>.<ext>``, the docs'
cdn.modelhunter.ai/files/<id>.<ext> shape), never at a real host.

Invented where the docs are silent: the 429 body (`throttle_body`; the code
``RATE_LIMIT_EXCEEDED`` follows the other codes' style), the 500/503 codes
``INTERNAL_ERROR`` / ``SERVICE_UNAVAILABLE``, ids ``file_<24 hex>``.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ingest.sim.context import SimContext, is_loopback
from ingest.sim.settings import ModelHunterSimSettings, ThrottleBody

if TYPE_CHECKING:
    from ingest.sim.server import SimServer

PROVIDER = "modelhunter"
BUCKET = "modelhunter-uploads"
UPLOAD_ROUTE = "/api/v1/files/upload-url"
COMPLETE_ROUTE = "/api/v1/files/{file_id}/complete"
FILES_ROUTE = "/_sim/modelhunter/files"
CDN_PREFIX = "/cdn/files"

# MIME types the upload-url route accepts (get-upload-url's examples, file-uploads' formats).
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
    expires: float  # when its upload URL expires (emulator clock)
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


def injected_error(status: int, throttle_body: ThrottleBody = "envelope") -> web.Response:
    """A fault-plan or rate-limit 429/500/503; a 429's body as `throttle_body` says (a gap)."""
    code, message = _INJECTED[status]
    if status == 429 and throttle_body == "text":
        return web.Response(status=429, text="Too Many Requests")
    if status == 429 and throttle_body == "empty":
        return web.Response(status=429)
    return error(status, code, message)


def _gone(file_id: str) -> web.Response:
    """Complete of a file the API does not know (any more): complete-upload's 404."""
    return error(404, "FILE_NOT_FOUND", f"File not found or upload URL has expired: {file_id}")


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


def _validate(body: bytes, options: ModelHunterSimSettings) -> tuple[str, str, int] | web.Response:
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
    is_image = content_type.lower().startswith("image/")
    max_size = options.max_size_bytes
    if is_image:
        max_size = min(max_size, options.image_max_bytes)
    if size > max_size:
        megabytes = max_size / 1_000_000
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
        checked = _validate(await request.read(), options)
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
            expires=asset.expires,
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
            return _gone(file_id)
        if record.completed is not None and options.complete_repeat == "conflict":
            return error(409, "ALREADY_COMPLETED", f"Upload of {file_id} is already completed")
        if record.completed is None:
            if options.forget_expired and ctx.now() > record.expires:
                return _gone(file_id)
            await ctx.landed(file_id)  # an external store is asked (HEAD), as R2 would be
            stored = ctx.state.object_for(file_id)
            if stored is None:
                return _gone(file_id)
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

    errors = functools.partial(injected_error, throttle_body=options.throttle_body)
    # docs.modelhunter.ai/api-reference/files/get-upload-url
    ctx.add_api_route("POST", UPLOAD_ROUTE, upload_url, provider=PROVIDER, errors=errors)
    # docs.modelhunter.ai/api-reference/files/complete-upload
    ctx.add_api_route("POST", COMPLETE_ROUTE, complete, provider=PROVIDER, errors=errors)
    # Invented: the emulator's record, for tests and `ingest sim` users (loopback only).
    ctx.app.router.add_get(FILES_ROUTE, list_files, allow_head=False)
