"""The upload call as Novita's own SDK makes it, against what the adapter sends (issue 12, part 3).

`novita-client` 0.7.1 (PyPI, a dev dependency; requests-based):
`NovitaClient.upload_training_assets` posts ``/v3/assets/training_dataset``
through its `requests.Session`, then PUTs the JPEG with a bare
`requests.put`. Both go through `requests.adapters.HTTPAdapter.send`, which
this test wraps with a recorder that forwards to the in-process emulator on
loopback (nothing else is reachable). The SDK runs in a worker thread, the
emulator in the test's event loop; the adapter's requests to the same
emulator are recorded with an aiohttp `TraceConfig`. The two are compared
field by field: method, path, the headers that matter, the body.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
import yarl

from ingest.item import Item, Source
from ingest.sim import SimServer
from ingest.sniff import ImageType
from ingest.transport.connection import Connection
from tests.contract.harness import HARNESSES, KEY, adapter, emulator

novita_client = pytest.importorskip("novita_client")
requests_adapters = pytest.importorskip("requests.adapters")
pil_image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Sent:
    method: str
    path: str  # the raw path and query, as sent
    headers: dict[str, str]  # names lower-cased
    body: bytes


class SdkRecorder:
    """Wraps `HTTPAdapter.send`: records each prepared request, then sends it as usual."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self._send = requests_adapters.HTTPAdapter.send

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def send(adapter_self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            url = yarl.URL(request.url, encoded=True)
            body = request.body
            body = body if isinstance(body, bytes) else (body or "").encode()
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.sent.append(Sent(request.method, url.raw_path_qs, headers, body))
            return self._send(adapter_self, request, *args, **kwargs)

        monkeypatch.setattr(requests_adapters.HTTPAdapter, "send", send)


@contextlib.contextmanager
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Sent]]:
    """Every request the adapter sends (aiohttp's traced, the lean transport's bytes), in order."""
    sent: list[Sent] = []
    bodies: dict[int, list[bytes]] = {}

    async def on_headers(_s: Any, ctx: SimpleNamespace, params: Any) -> None:
        ctx.request = (params.method, params.url, {k.lower(): v for k, v in params.headers.items()})
        bodies[id(ctx)] = []

    async def on_chunk(_s: Any, ctx: SimpleNamespace, params: Any) -> None:
        bodies.setdefault(id(ctx), []).append(bytes(params.chunk))

    async def on_end(_s: Any, ctx: SimpleNamespace, _params: Any) -> None:
        method, url, headers = ctx.request
        body = b"".join(bodies.pop(id(ctx), []))
        sent.append(Sent(method, yarl.URL(url).raw_path_qs, headers, body))

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers)
    trace.on_request_chunk_sent.append(on_chunk)
    trace.on_request_end.append(on_end)
    original = aiohttp.ClientSession.__init__

    def init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        kwargs["trace_configs"] = [*kwargs.get("trace_configs", []), trace]
        original(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", init)
    # The lean transport's PUTs (the default) are not aiohttp's: its bytes as written.
    wire: list[bytes] = []
    send_head, send_chunk = Connection.send_head, Connection.send_chunk

    def head(
        self: Connection, data: bytes, body: bytes = b"", deadline: float | None = None
    ) -> None:
        wire.append(data + body)
        send_head(self, data, body, deadline)

    async def chunk(self: Connection, data: bytes) -> bool:
        wire[-1] += data
        return await send_chunk(self, data)

    monkeypatch.setattr(Connection, "send_head", head)
    monkeypatch.setattr(Connection, "send_chunk", chunk)
    yield sent
    for request in wire:
        top, _, body = request.partition(b"\r\n\r\n")
        line, *fields = top.decode("latin-1").split("\r\n")
        method, target, _version = line.split(" ")
        headers = {k.strip().lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}
        sent.append(Sent(method, yarl.URL(target).raw_path_qs, headers, body))


def jpeg(tmp: Path) -> Source:
    """A real JPEG (the SDK decodes and re-encodes every image with PIL), as validation sees it."""
    path = tmp / "photo.jpg"
    pil_image.new("RGB", (48, 32), (200, 120, 40)).save(path, "JPEG")
    st = path.stat()
    return Source(Item(key="photo", path=path, line=1), st.st_size, st.st_mtime_ns, ImageType.JPEG)


def sdk_upload(sim: SimServer, image: Path) -> list[str]:
    """The SDK's upload of one image to the emulator (blocking: run it in a thread)."""
    client = novita_client.NovitaClient(KEY, base_url=sim.base_url)
    return list(client.upload_training_assets([str(image)], batch_size=1))


async def test_the_upload_url_call_and_put_match_the_sdks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    recorder = SdkRecorder()
    recorder.install(monkeypatch)
    source = jpeg(tmp_path)
    harness = HARNESSES["novita"]
    with traced(monkeypatch) as ours:
        async with emulator(harness) as sim, adapter(harness, sim) as provider:
            [assets_id] = await anyio.to_thread.run_sync(sdk_upload, sim, source.item.path)
            target = await provider.acquire(source)
            await provider.transfer(source, target)
            stored = {obj.remote_id for obj in sim.state.objects.values()}
    # Both uploads landed at the emulator, the SDK's under the id it returned.
    assert stored == {str(assets_id), target.remote_id}
    sdk_post, sdk_put = recorder.sent
    our_post, our_put = ours
    # The upload-URL call: method, path, auth, content type and body fields agree.
    assert (our_post.method, our_post.path) == (sdk_post.method, sdk_post.path)
    assert (sdk_post.method, sdk_post.path) == ("POST", "/v3/assets/training_dataset")
    for name in ("authorization", "content-type"):
        assert our_post.headers[name] == sdk_post.headers[name], name
    assert sdk_post.headers["authorization"] == f"Bearer {KEY}"
    assert orjson.loads(our_post.body) == orjson.loads(sdk_post.body) == {"file_extension": "jpeg"}
    # The PUT: to the URL as issued, the JPEG's type, no credentials, an exact length.
    assert our_put.method == sdk_put.method == "PUT"
    assert our_put.path.startswith("/s3/faas-training-dataset/sim/")
    assert sdk_put.path.startswith("/s3/faas-training-dataset/sim/")
    assert our_put.headers["content-type"].lower() == sdk_put.headers["content-type"].lower()
    assert "authorization" not in our_put.headers and "authorization" not in sdk_put.headers
    assert our_put.headers["content-length"] == str(source.size)
    assert sdk_put.headers["content-length"] == str(len(sdk_put.body))
    assert "transfer-encoding" not in our_put.headers
