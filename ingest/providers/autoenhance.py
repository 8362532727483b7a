"""Autoenhance.ai: create an image, then PUT its bytes.

API: https://docs.autoenhance.ai/images/managing-images/creating-and-uploading
(SDK: PyPI ``autoenhance`` 1.1.0; docs/fidelity/autoenhance.md has every source)

    acquire   POST /v3/images/ {image_name, content_type, order_id}
              → {image_id, order_id, upload_url | s3PutObjectUrl, status, ...}
    transfer  PUT the URL with Content-Type equal to the declared content_type

There is no finalize step: enhancement starts when the bytes land. Every
image of a run goes into one order: `run_params` binds ``order_id`` in the
journal header (the configured one, else the one an earlier run of this
journal recorded, else a new uuid4), so a resume keeps adding to it. Newer API
versions answer ``upload_url``, older accounts ``s3PutObjectUrl``: both are
read. ``api_version`` in the settings is sent as ``x-api-version``. The URL's
lifetime is undocumented: the lease comes from its ``X-Amz-*`` query (an
hour when it carries none).

Whether the API honours ``content_type`` is not known: the docs say the PUT
must send it, but SDK 1.1.0's create schema (``models/image_in.py``) has no
such field, and an API that ignores it signs the URL for
``application/octet-stream``. So a PUT refused with SignatureDoesNotMatch is
sent once more at once with the other type (octet-stream, or the declared one
when octet-stream went first), before the engine sees any refusal; the type
that worked goes first for the rest of the run.

An ``upload_url`` on the API's own origin that carries no signature of its
own is PUT with ``x-api-key`` (the HDR quickstart sends it); any other URL,
S3's included, never sees the key.

Errors (bodies ``{message, detail}``, ``detail`` an object: SDK
``models/http_error.py``), by status:

    STOP       401 (missing or bad key), 402, 403
    FAIL_ITEM  422 (``detail: {location: {field: [msgs]}}``, flattened into the
               message); a 429 of the identical-file-name rule (30 per hour:
               retrying within the hour cannot succeed); a create answered with
               ``status: "error"`` (e.g. the daily enhancement limit: the image
               exists but will never be processed); other 4xx
    RETRY      other 429s (300 requests/s: "resolves instantly"), 408, 5xx

Telling the two 429s apart: Autoenhance documents no body for them. A 429 is
the name rule when its message or detail says "same", "duplicate" or
"identical" together with "name" (the stable words of the documented rule,
"30 duplicate file names per hour"; "Duplicate filename …" too), or when this
adapter itself created 30 images with that name within the hour (it counts
them, re-signs included, so a bare "Too Many Requests" is told apart too; in
a coordinated run every worker's creates on the account: `Context.names`), or
when its Retry-After is a minute or more (the rate limit "resolves instantly";
so a name used up by an earlier run is told apart without words too). A
rate-limit 429 never mentions names.

A re-sign creates another image in the order (the API has no way to re-issue
a URL) and counts against the name rule, so `Capabilities.resign_limit` is 1:
a storage refusal other than expiry gets one new URL, never more. The image
a re-sign replaces got no bytes, and is deleted (``DELETE /v3/images/{id}``)
once its successor exists: a file makes at most two images, and its order
keeps one.

Resume of an item killed in flight (`recover`, journaled ``acq`` only): its
signed URL was never journaled (a secret), and no documented call re-issues
one for an image id (``GET /v3/images/{id}`` answers ``ImageOut``, which has no
URL), so the acquired image cannot be uploaded to again. It is asked about
instead:

    GET    /v3/images/{id}   status "waiting": its bytes never arrived ("Once
                             the image has been uploaded, our service will
                             start enhancing your image"); any other status:
                             they did, and the item is done under that id
    DELETE /v3/images/{id}   (204) a waiting image is removed before the item
                             is uploaded anew, so the order ends with one
                             image per file; 404: already gone

A status that lags behind a PUT would at worst delete an image whose bytes
had landed and upload the file again: never a loss.

An image whose create was answered as a kill came was never journaled; before
a resumed run starts any item (`tidy`), the journal's order is listed
(``GET /v3/orders/{id}``) and its waiting images are deleted, so those go too.
Only for an order the journal made itself: an order named with ``order_id``
may be shared, and another client's waiting image is its upload in progress.
The same listing gives the names its images were created with in the last hour (`names_used`): the run's name check counts them, so a
re-run within the hour holds back what the name rule would refuse.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

from ingest.capabilities import Capabilities
from ingest.errors import Action, Scope, TransferError
from ingest.http import Response, bad_response, http_error, request
from ingest.item import Source
from ingest.providers.autoenhance_wire import (
    NAME_RULE_WAIT_S,
    SAME_NAME_LIMIT,
    SAME_NAME_WINDOW_S,
    NameUses,
    flatten,
    is_same_name_429,
    needs_api_key,
)
from ingest.providers.base import Landed, Target
from ingest.providers.context import Context
from ingest.providers.settings import AutoenhanceSettings, ProviderSettings
from ingest.retry import parse_retry_after
from ingest.sniff import ImageType

__all__ = ["AutoenhanceProvider", "NameUses", "is_same_name_429", "needs_api_key"]

FALLBACK_LIFETIME_S = 3600.0  # only when a URL carries no expiry (boto3's default)
OCTET_STREAM = "application/octet-stream"  # what the URL signs when no content_type counted
_URL_FIELDS = ("upload_url", "s3PutObjectUrl")
UNSENT_KEPT = 4096  # items whose latest image is remembered (far above any concurrency)


class AutoenhanceProvider:
    """Adapter for Autoenhance's v3 image creation and upload."""

    name: ClassVar[str] = "autoenhance"
    key_envs: ClassVar[tuple[str, ...]] = AutoenhanceSettings.key_envs

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.caps = self.capabilities(ctx.settings)
        settings = AutoenhanceSettings.of(ctx.settings)
        self._headers = {"x-api-version": settings.api_version} if settings.api_version else {}
        self._names = NameUses()
        self._earlier: dict[str, list[float]] = {}  # name -> creates before this run (`tidy`)
        self._learnt = False  # `_earlier` is from the first listing (before its DELETEs)
        self._octet_first = False  # learnt: the API signs octet-stream whatever we declared
        # Item key -> the image its latest URL belongs to, until a PUT lands there (LRU:
        # only items in flight matter, and there are never more than a few hundred).
        self._unsent: collections.OrderedDict[str, str] = collections.OrderedDict()

    @staticmethod
    def capabilities(settings: ProviderSettings) -> Capabilities:
        # Formats: the emulator's choice for a real-estate photo service (inferred;
        # Autoenhance documents none); the API itself answers 422 for others.
        settings = AutoenhanceSettings.of(settings)
        return Capabilities(
            formats=frozenset(
                {ImageType.JPEG, ImageType.PNG, ImageType.WEBP, ImageType.HEIC, ImageType.TIFF}
            ),
            max_size=settings.max_size,
            url_lifetime_s=settings.url_lifetime_s or FALLBACK_LIFETIME_S,
            same_name_limit=SAME_NAME_LIMIT,
            resign_limit=1,  # each re-sign is a new image in the order (no re-issue call)
        )

    @staticmethod
    def auth_headers(secrets: Mapping[str, str]) -> dict[str, str]:
        return {"x-api-key": secrets["api_key_env"]}

    @staticmethod
    def run_params(settings: ProviderSettings, previous: Mapping[str, str]) -> dict[str, str]:
        named = AutoenhanceSettings.of(settings).order_id
        return {"order_id": named or previous.get("order_id") or str(uuid.uuid4())}

    @staticmethod
    def export_document(
        rows: Sequence[Mapping[str, object]], params: Mapping[str, str]
    ) -> Mapping[str, object]:
        """The run's order and its image ids (``{"orders": [...]}`` if rows span orders)."""
        orders: dict[str, list[str]] = {}
        for row in rows:
            order = str(row.get("order_id") or params.get("order_id") or "")
            orders.setdefault(order, []).append(str(row["remote_id"]))
        if len(orders) <= 1:
            order, ids = next(iter(orders.items()), (params.get("order_id", ""), []))
            return {"order_id": order, "image_ids": ids}
        return {"orders": [{"order_id": o, "image_ids": ids} for o, ids in orders.items()]}

    # -- errors ----------------------------------------------------------------

    def _error(
        self, response: Response, op: str, name: str | None = None, shared: int = 0
    ) -> TransferError:
        """The error of an answer; `name` is the image name a create asked for, `shared` the
        creates of it every worker of a coordinated run counted."""
        payload = response.json()
        status = response.status
        code = f"http_{status}"
        message = response.body[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
        if isinstance(payload, dict):
            head = str(payload.get("message") or "").strip()
            detail = flatten(payload.get("detail"))
            message = ": ".join(part for part in (head, detail) if part) or message
        action: Action | None = None
        scope: Scope | None = None
        if status == 422:
            code = "validation_error"
        elif status == 429 and (
            is_same_name_429(payload if isinstance(payload, dict) else message)
            or (name is not None and self._uses(name, shared) >= SAME_NAME_LIMIT)
            or (name is not None and (parse_retry_after(response.headers) or 0) >= NAME_RULE_WAIT_S)
        ):
            # About this file name, not the pace: its Retry-After (up to an hour) must
            # never pause the other items.
            code, action, scope = "same_name_limit", Action.FAIL_ITEM, Scope.ITEM
            message = (
                f"{message} (Autoenhance accepts at most {SAME_NAME_LIMIT} images with one "
                "file name per hour: give the item another name, or retry it after the hour "
                "with --retry-failed)"
            )
        elif status == 429:
            code = "rate_limited"
        elif status == 401:
            code = "unauthorized"
        return http_error(
            response,
            provider=self.name,
            op=op,
            code=code,
            message=message,
            action=action,
            scope=scope,
        )

    def _uses(self, name: str, shared: int) -> int:
        """Creates of `name` within the hour known here: this process's, or every worker's."""
        return max(shared, self._names.count(name, self._ctx.clock()))

    def _bad_response(self, response: Response, op: str, what: str) -> TransferError:
        return bad_response(response, provider=self.name, op=op, what=what)

    # -- steps -------------------------------------------------------------------

    async def acquire(self, source: Source) -> Target:
        name = source.item.display_name
        body = {"image_name": name, "content_type": source.content_type}
        order_id = self._ctx.params.get("order_id")
        if order_id:
            body["order_id"] = order_id
        response = await request(
            self._ctx.api,
            "POST",
            "v3/images/",
            provider=self.name,
            op="acquire",
            json=body,
            headers=self._headers,
            clock=self._ctx.clock,
        )
        shared = self._ctx.names
        if response.status not in (200, 201):
            counted = await shared.count(name) if shared and response.status == 429 else 0
            raise self._error(response, "acquire", name, counted)
        self._names.add(name, self._ctx.clock())
        if shared is not None:  # every worker on the account sees it (a coordinated run)
            await shared.add(name)
        payload: Any = response.json()
        if not isinstance(payload, dict):
            payload = {}
        image_id = payload.get("image_id")
        url = next((payload[f] for f in _URL_FIELDS if isinstance(payload.get(f), str)), None)
        if not isinstance(image_id, str) or not image_id or url is None:
            raise self._bad_response(response, "acquire", "image_id or upload_url/s3PutObjectUrl")
        if payload.get("status") == "error":
            raise TransferError(
                f"image {image_id} was created in the error state: "
                f"{payload.get('status_reason') or 'no reason given'}",
                action=Action.FAIL_ITEM,
                code="image_error",
                provider=self.name,
                op="acquire",
                status=response.status,
            )
        lease = response.lease(
            url,
            expires_at=None,
            default_lifetime=self.caps.url_lifetime_s,
        )
        await self._replaces(source.item.key, image_id)
        order = str(payload.get("order_id") or order_id or "")
        return Target(
            remote_id=image_id,
            url=url,
            content_type=source.content_type,
            lease=lease,
            extra={"order_id": order} if order else {},
        )

    async def _replaces(self, key: str, image_id: str) -> None:
        """`image_id` is now `key`'s; the image of its earlier URL (a re-sign) is deleted.

        No PUT landed there, or the engine would not have asked again, so
        the order keeps one image per file however often a URL is renewed
        (expiry included). Best effort: a failed delete leaves a waiting
        image, as it did before, for a resumed run's `tidy`.
        """
        previous = self._unsent.pop(key, None)
        self._unsent[key] = image_id
        if len(self._unsent) > UNSENT_KEPT:
            self._unsent.popitem(last=False)
        if previous is not None:
            with contextlib.suppress(TransferError):
                await self._call("DELETE", f"v3/images/{quote(previous, safe='')}", op="acquire")

    async def recover(self, source: Source, acquired: Target) -> Landed | None:
        """Done if the acquired image's bytes arrived; else delete the empty image, None."""
        path = f"v3/images/{quote(acquired.remote_id, safe='')}"
        response = await self._call("GET", path)
        if response.status == 404:
            return None
        if response.status != 200:
            raise self._error(response, "recover")
        payload: Any = response.json()
        status = payload.get("status") if isinstance(payload, dict) else None
        if not isinstance(status, str):
            raise self._bad_response(response, "recover", "the image's status")
        if status != "waiting":
            order = str(payload.get("order_id") or acquired.extra.get("order_id") or "")
            return Landed(remote_id=acquired.remote_id, extra={"order_id": order} if order else {})
        response = await self._call("DELETE", path)
        if response.status not in (200, 204, 404):
            raise self._error(response, "recover")
        return None

    async def tidy(self) -> int:
        """Learn the order's file names, delete its waiting images (see above); how many."""
        order_id = self._ctx.params.get("order_id")
        if not order_id or AutoenhanceSettings.of(self._ctx.settings).order_id:
            # A named order may be shared (another client's waiting image is its upload in
            # progress) and any size: not listed; its names are told by the 429s alone.
            return 0
        response = await self._call("GET", f"v3/orders/{quote(order_id, safe='')}")
        if response.status == 404:
            return 0  # no image was ever created in it
        if response.status != 200:
            raise self._error(response, "recover")
        payload: Any = response.json()
        images = payload.get("images") if isinstance(payload, dict) else None
        if not isinstance(images, list):
            raise self._bad_response(response, "recover", "the order's images")
        listed = [image for image in images if isinstance(image, dict)]
        if not self._learnt:  # `tidy` retried whole (a DELETE's 503): its names are known
            self._learnt = True
            self._learn_names(listed)
        waiting = [
            image["image_id"]
            for image in listed
            if image.get("status") == "waiting" and isinstance(image.get("image_id"), str)
        ]
        for image_id in waiting:
            response = await self._call("DELETE", f"v3/images/{quote(image_id, safe='')}")
            if response.status not in (200, 204, 404):
                raise self._error(response, "recover")
        return len(waiting)

    def _learn_names(self, images: list[dict[str, Any]]) -> None:
        """The order's creates within the name rule's window, counted as this run's own are.

        Each listed image (waiting ones too: a create counts whether or not its
        bytes came) by its ``image_name`` and ``date_added`` (``ImageOut``, SDK
        1.1.0 ``models/image_out.py``: an int, whose unit no source gives; read as
        milliseconds when it is past 10^11, as the emulator's, else seconds:
        inferred). A lower bound of the API's count (an image a re-sign deleted is
        no longer listed), so a 429 beyond it is still told apart as before.
        """
        since = self._ctx.clock() - SAME_NAME_WINDOW_S
        uses: list[tuple[float, str]] = []
        for image in images:
            name, added = image.get("image_name"), image.get("date_added")
            if not isinstance(name, str) or not isinstance(added, int | float):
                continue
            when = added / 1000 if added > 1e11 else float(added)
            if when > since:
                uses.append((when, name))
        for when, name in sorted(uses):
            self._earlier.setdefault(name, []).append(when)
            self._names.add(name, when)

    def names_used(self, name: str) -> Sequence[float]:
        """Creates of `name` an earlier run made within the hour, as `tidy` found them."""
        return self._earlier.get(name, ())

    async def _call(self, method: str, path: str, *, op: str = "recover") -> Response:
        return await request(
            self._ctx.api,
            method,
            path,
            provider=self.name,
            op=op,
            headers=self._headers,
            clock=self._ctx.clock,
        )

    async def transfer(self, source: Source, target: Target) -> Target:
        """PUT the bytes; on SignatureDoesNotMatch, once more with the other Content-Type."""
        declared = target.content_type
        first, second = (OCTET_STREAM, declared) if self._octet_first else (declared, OCTET_STREAM)
        try:
            await self._put(source, target, first)
            sent = first
        except TransferError as err:
            if err.code != "SignatureDoesNotMatch" or first == second:
                raise
            await self._put(source, target, second)
            sent = second
            self._octet_first = sent == OCTET_STREAM
        self._unsent.pop(source.item.key, None)
        return target if sent == declared else dataclasses.replace(target, content_type=sent)

    async def _put(self, source: Source, target: Target, content_type: str) -> None:
        ctx = self._ctx
        key = ctx.api.headers.get("x-api-key")  # the API session's credential
        headers = None
        if key and target.url and needs_api_key(target.url, ctx.settings.base_url):
            headers = {"x-api-key": key}
        await ctx.put(
            self.name,
            source,
            dataclasses.replace(target, content_type=content_type),
            headers=headers,
        )

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        raise NotImplementedError("autoenhance has no finalize step")

    def landed(self, source: Source, target: Target) -> Landed:
        return Landed(remote_id=target.remote_id, extra=dict(target.extra))
