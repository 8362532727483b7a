"""Scenario images sent as base64 inside JSON: ``POST /assets`` and inline training images.

Sources: ``POST /assets`` takes ``{name, image}``, ``image`` "in base64 format
string" (scenario-sdk 2.4.0 ``resources/assets/assets.py::upload``); Scenario's
own client sends it as a data URL ``data:<mime>;base64,…`` and only for images
up to 3,500,000 bytes (blender-plugin ``scenario/core/api/assets.py``:
``BASE64_LIMIT``, ``upload_image_base64``). Inline training images take
``{data: <data URL>, name, preset}`` [S12][S17].

How it works: the body is streamed from disk, the file encoded on the fly
with an exact Content-Length, never built in memory, and at most half of the
API connections carry one at a time so acquires and attaches are never
starved of a connection. Whether ``/assets`` also takes bare base64, or only
bare base64, is a gap: the image goes as a data URL; if that is refused with
a 400 and the same image as bare base64 is accepted, every later asset goes
bare (learned once per run). A 413 (the body over the API's cap) is the
caller's to handle: it sends the image through ``/uploads`` instead.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import orjson

from ingest.errors import Action, TransferError
from ingest.http import Response, map_errors
from ingest.item import Source
from ingest.providers.context import Context
from ingest.providers.scenario.wire import PROVIDER, b64_length, id_of, json_with_b64, object_of
from ingest.storage import FileChanged, closing_body


class JsonUploads:
    """Base64-in-JSON uploads of one adapter (see the module docstring)."""

    name = PROVIDER

    def __init__(
        self,
        ctx: Context,
        error: Callable[[Response, str], TransferError],
        model_path: str,
        preset: str,
    ) -> None:
        self._ctx = ctx
        self._error = error
        self._model_path = model_path
        self._preset = preset
        self.bare_base64 = False  # learned: this API refuses data URLs in /assets
        connections = ctx.api.limit or 8
        self._bodies = anyio.CapacityLimiter(max(1, connections // 2))

    async def training_image(self, source: Source) -> str:
        """POST the image inline to the model (a data URL); the training image's id."""
        head = b'{"data":"' + _data_url_prefix(source)
        tail = (
            b'","name":'
            + orjson.dumps(source.item.display_name)
            + b',"preset":'
            + orjson.dumps(self._preset)
            + b"}"
        )
        response = await self._post(f"{self._model_path}/training-images", head, source, tail)
        if response.status != 200:
            raise self._error(response, "transfer")
        return id_of(response.json(), "trainingImage", op="transfer", status=200)

    async def asset(self, source: Source) -> str:
        """POST the image to ``/assets``; the new asset's id."""
        response = await self._post_asset(source, bare=self.bare_base64)
        if response.status == 400 and not self.bare_base64:
            refused = self._error(response, "transfer")
            bare = await self._post_asset(source, bare=True)
            if bare.status != 200:
                raise refused
            self.bare_base64, response = True, bare
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
        return asset_id

    async def _post_asset(self, source: Source, *, bare: bool) -> Response:
        head = b'{"name":' + orjson.dumps(source.item.display_name) + b',"image":"'
        if not bare:
            head += _data_url_prefix(source)
        return await self._post("assets", head, source, b'"}')

    async def _post(self, path: str, head: bytes, source: Source, tail: bytes) -> Response:
        """POST JSON whose middle is the file in base64, streamed with an exact length."""
        length = len(head) + b64_length(source.size) + len(tail)
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


def _data_url_prefix(source: Source) -> bytes:
    return b"data:" + source.content_type.encode("ascii") + b";base64,"
