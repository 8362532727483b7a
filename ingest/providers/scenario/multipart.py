"""Scenario's multipart uploads, for images too large to send as base64 in JSON.

API: https://docs.scenario.com/get-started/content/uploading-assets

How it works: `create` (the acquire step) asks ``POST /uploads`` for one
pre-signed PUT URL per part; the target's lease is the earliest part's
``expires``. `transfer` PUTs each byte range of the file to its part URL
(`storage.put_range`: exact Content-Length, the declared Content-Type, which
the URL may sign), completes the upload (``POST /uploads/{id}/action``) and
waits for the new asset's id. Where that id shows is a gap: Scenario's own
client polls the upload's job (``GET /jobs/{jobId}`` →
``job.metadata.output.entityId``; blender-plugin ``scenario/core/api/assets.py
::upload_multipart``, ``jobs.py::upload_entity_id``), the SDK types the
upload's ``entityId`` [S13]. So the job is polled while it answers; a job
that succeeded without naming the asset, or that cannot be found, hands over
to ``GET /uploads/{id}``, whose ``entityId`` counts once the upload is
``imported``/``complete`` (an ``entityId`` shown earlier is not trusted: the
asset may not be ready).

Parts are `PART_SIZE` (5 MiB, S3's minimum for every part but the last),
larger only when a file would need more than `MAX_PARTS` parts; the last
part holds the rest. Scenario's docs give no part-size rule.

Per upload this process created, the part URLs and the parts that landed are
kept, so a retried transfer sends only what is missing and a completed one
only polls again. An upload is forgotten when it succeeds, fails for good, or
is replaced by a re-sign; only one whose retries ran out stays behind (a few
hundred bytes each). The poll is the one wait in an adapter: the API offers
no completion event. It is bounded (about 23 s), then the transfer is
retried, which polls again rather than uploading again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import anyio

from ingest.errors import Action, TransferError
from ingest.http import Response, request
from ingest.item import Source
from ingest.lease import Lease
from ingest.providers.base import Target
from ingest.providers.context import Context
from ingest.providers.scenario.wire import PROVIDER, bad_response, id_of, object_of
from ingest.redact import redact
from ingest.storage import put_member, put_range

PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000
# Import polling after a complete: first wait, cap, attempts (~23 s in all).
POLL_FIRST_S, POLL_MAX_S, POLL_ATTEMPTS = 0.1, 2.0, 15
_DONE_STATUSES = frozenset({"imported", "complete"})
_JOB_FAILED = frozenset({"failure", "canceled"})  # the SDK's Job.status values that end badly
_poll_sleep = anyio.sleep  # tests replace it


def part_size_for(size: int) -> int:
    """The part size of a multipart upload of `size` bytes (at most `MAX_PARTS` parts)."""
    return max(PART_SIZE, math.ceil(size / MAX_PARTS))


@dataclass(slots=True)
class _Multipart:
    """A multipart upload this process created: its part URLs and what already landed."""

    key: str
    urls: tuple[str, ...] = field(repr=False)
    part_size: int
    job_id: str | None = None  # None: no job named, or it cannot tell the asset id
    landed: set[int] = field(default_factory=set)
    completed: bool = False


class MultipartUploads:
    """The multipart uploads of one adapter (see the module docstring)."""

    name = PROVIDER

    def __init__(self, ctx: Context, error: Callable[[Response, str], TransferError]) -> None:
        self._ctx = ctx
        self._error = error
        self._uploads: dict[str, _Multipart] = {}  # upload id -> state
        self._upload_of: dict[str, str] = {}  # item key -> its current upload id

    def __len__(self) -> int:
        """Uploads held in memory (created here, not yet finished or given up)."""
        return len(self._uploads)

    def current(self, key: str) -> str | None:
        """The id of the upload this process holds for item `key`, if any."""
        return self._upload_of.get(key)

    async def create(self, source: Source) -> Target:
        """Start the upload of `source` (acquire): a target leased by its parts' expiry."""
        part_size = part_size_for(source.size)
        parts = math.ceil(source.size / part_size)
        response = await request(
            self._ctx.api,
            "POST",
            "uploads",
            provider=self.name,
            op="acquire",
            json={
                "fileName": source.item.display_name,
                "fileSize": source.size,
                "contentType": source.content_type,
                "kind": "image",
                "parts": parts,
            },
            clock=self._ctx.clock,
        )
        if response.status != 200:
            raise self._error(response, "acquire")
        payload = response.json()
        upload_id = id_of(payload, "upload", op="acquire", status=response.status)
        upload = object_of(payload, "upload") or {}
        listed = upload.get("parts")
        numbered: dict[int, dict[str, Any]] = {}
        if isinstance(listed, list):
            numbered = {
                p["number"]: p
                for p in listed
                if isinstance(p, dict) and isinstance(p.get("number"), int)
            }
        if sorted(numbered) != list(range(1, parts + 1)) or not all(
            isinstance(p.get("url"), str) for p in numbered.values()
        ):
            raise bad_response(
                f"upload {upload_id} lists no URL for some of its {parts} parts",
                op="acquire",
                status=response.status,
            )
        urls = tuple(str(numbered[n]["url"]) for n in range(1, parts + 1))
        expires = [numbered[n].get("expires") for n in range(1, parts + 1)]
        lease = self._earliest_lease(response, urls, expires)
        key = source.item.key
        previous = self._upload_of.pop(key, None)
        if previous is not None:  # a re-sign: the old upload's URLs are dead to us
            self._uploads.pop(previous, None)
        job_id = upload.get("jobId")
        job = job_id if isinstance(job_id, str) and job_id else None
        self._uploads[upload_id] = _Multipart(key, urls, part_size, job)
        self._upload_of[key] = upload_id
        return Target(
            remote_id="",
            url=urls[0],
            content_type=source.content_type,
            lease=lease,
            extra={"upload_id": upload_id, "parts": str(parts)},
        )

    def _earliest_lease(
        self, response: Response, urls: Sequence[str], expires: Sequence[Any]
    ) -> Lease | None:
        earliest: Lease | None = None
        for url, when in zip(urls, expires, strict=True):
            lease = response.lease(
                url,
                expires_at=when if isinstance(when, str) else None,
                default_lifetime=None,
            )
            if lease is not None and (earliest is None or lease.expires_at < earliest.expires_at):
                earliest = lease
        return earliest

    async def transfer(self, source: Source, target: Target, upload_id: str) -> Target:
        """PUT the parts still missing, complete, and wait for the asset id."""
        state = self._uploads.get(upload_id)
        if state is None:
            raise TransferError(
                f"upload {upload_id} was not created by this process; it needs new part URLs",
                action=Action.RESIGN,
                code="unknown_upload",
                provider=self.name,
                op="transfer",
            )
        try:
            first: dict[str, Any] | None = None
            if not state.completed:
                await self._put_parts(source, target, state)
                first = await self._complete(upload_id)
                state.completed = True
            asset_id = await self._await_import(upload_id, state, first)
        except TransferError as err:
            if err.action is not Action.RETRY:  # this upload will not be tried again
                self._forget(upload_id)
            raise
        self._forget(upload_id)
        return dataclasses.replace(target, remote_id=asset_id)

    def _forget(self, upload_id: str) -> None:
        state = self._uploads.pop(upload_id, None)
        if state is not None and self._upload_of.get(state.key) == upload_id:
            del self._upload_of[state.key]

    async def _put_parts(self, source: Source, target: Target, state: _Multipart) -> None:
        for number, url in enumerate(state.urls, start=1):
            if number in state.landed:
                continue  # landed on an earlier attempt of this transfer
            offset = (number - 1) * state.part_size
            length = min(state.part_size, source.size - offset)
            if source.item.member is not None:  # a part of a shard's member
                await put_member(
                    self._ctx.storage,
                    url,
                    source.item.path,
                    source.item.member,
                    target.content_type,
                    provider=self.name,
                    allow_insecure_http=self._ctx.allow_insecure_http,
                    start=offset,
                    length=length,
                )
            else:
                await put_range(
                    self._ctx.storage,
                    url,
                    source.item.path,
                    offset,
                    length,
                    target.content_type,
                    provider=self.name,
                    allow_insecure_http=self._ctx.allow_insecure_http,
                )
            state.landed.add(number)

    async def _complete(self, upload_id: str) -> dict[str, Any]:
        response = await request(
            self._ctx.api,
            "POST",
            f"uploads/{quote(upload_id, safe='')}/action",
            provider=self.name,
            op="transfer",
            json={"action": "complete"},
            clock=self._ctx.clock,
        )
        if response.status != 200:
            raise self._error(response, "transfer")
        upload = object_of(response.json(), "upload")
        if upload is None:
            raise bad_response("answer lacks upload", op="transfer", status=200)
        return upload

    async def _await_import(
        self, upload_id: str, state: _Multipart, upload: dict[str, Any] | None
    ) -> str:
        """The asset id once the upload is imported; a bounded poll (the API has no event).

        `upload` is the complete's answer (None when the complete was made by
        an earlier attempt). Each round asks the job while it can tell, else
        the upload (see the module docstring).
        """
        for attempt in range(POLL_ATTEMPTS + 1):
            if upload is not None:
                entity = _entity_of_upload(upload)
                if entity is not None:
                    return entity
            if attempt == POLL_ATTEMPTS:
                break
            if attempt or upload is not None:
                await _poll_sleep(min(POLL_FIRST_S * 2**attempt, POLL_MAX_S))
            upload = None
            if state.job_id is not None:
                job = await self._get(f"jobs/{quote(state.job_id, safe='')}", "job", gone_ok=True)
                entity = _entity_of_job(job, upload_id) if job is not None else None
                if entity is not None:
                    return entity
                if job is not None and job.get("status") != "success":
                    continue  # still working: ask again after the next wait
                state.job_id = None  # gone, or done without naming the asset: ask the upload
            upload = await self._get(f"uploads/{quote(upload_id, safe='')}", "upload")
        raise TransferError(
            f"upload {upload_id} was not imported in time; it will be checked again",
            action=Action.RETRY,
            code="import_pending",
            provider=self.name,
            op="transfer",
        )

    async def _get(self, path: str, key: str, *, gone_ok: bool = False) -> dict[str, Any] | None:
        """``GET path`` → ``answer[key]``; with `gone_ok`, None for a 404."""
        response = await request(
            self._ctx.api, "GET", path, provider=self.name, op="transfer", clock=self._ctx.clock
        )
        if response.status == 404 and gone_ok:
            return None
        if response.status != 200:
            raise self._error(response, "transfer")
        found = object_of(response.json(), key)
        if found is None:
            raise bad_response(f"answer lacks {key}", op="transfer", status=200)
        return found


def _entity_of_upload(upload: dict[str, Any]) -> str | None:
    """The asset id an upload answer names once imported; a failed upload fails the item."""
    status, entity = upload.get("status"), upload.get("entityId")
    if status == "failed":
        raise _import_failed(upload.get("errorMessage"))
    if status in _DONE_STATUSES and isinstance(entity, str) and entity:
        return entity
    return None


def _entity_of_job(job: dict[str, Any], upload_id: str) -> str | None:
    """The asset id a succeeded upload job names (``metadata.output.entityId``)."""
    status = job.get("status")
    metadata = object_of(job, "metadata") or {}
    if status in _JOB_FAILED:
        raise _import_failed(metadata.get("error") or f"the job of upload {upload_id} {status}")
    output = metadata.get("output")
    entity = output.get("entityId") if isinstance(output, dict) else None
    if status == "success" and isinstance(entity, str) and entity:
        return entity
    return None


def _import_failed(message: object) -> TransferError:
    return TransferError(
        redact(str(message or "upload failed"))[:300],
        action=Action.FAIL_ITEM,
        code="upload_failed",
        provider=PROVIDER,
        op="transfer",
    )
