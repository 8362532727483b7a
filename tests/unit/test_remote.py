"""Remote sources (issue 15 part 3): ``https://``/``http://`` URLs in a manifest are fetched with
aiohttp from a loopback server (never the internet), spooled, sniffed and uploaded through the
in-process emulator; a failing source is its item's failure, retried when the failure is; URLs
never show their userinfo or signed query."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

import ingest
from ingest.api.wiring import sim_settings
from ingest.redact import shown_url, url_key
from ingest.retry import RetryPolicy
from tests.images import image_bytes
from tests.results import journal_of

PNG = image_bytes("png", 3_000, 1)
JPEG = image_bytes("jpeg", 300_000, 2)  # over the read-ahead size, sent chunked without a length
SIGNED = image_bytes("png", 2_000, 3)
FLAKY = image_bytes("png", 3_000, 4)
BIG = image_bytes("jpeg", 1_200_000, 5)
FAILING = (
    "missing.png",
    "page.png",
    "scan.bmp",
    "busy.png",
)  # failed and rejected items: fetched again by a re-run


class Server:
    """A loopback aiohttp server in a thread of its own (the run has its own loop)."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/{name:.*}", self.handle)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.runner = runner
        ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] = self.hits.get(name, 0) + 1
        if name == "a.png":
            return web.Response(body=PNG)  # Content-Length known
        if name == "chunked/b.jpg":  # no Content-Length: chunked
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(JPEG), 65_536):
                await response.write(JPEG[start : start + 65_536])
            await response.write_eof()
            return response
        if name == "flaky.png":  # one 503, then the image
            if self.hits[name] == 1:
                return web.Response(status=503, text="busy")
            return web.Response(body=FLAKY)
        if name == "signed/c.png":
            return web.Response(body=SIGNED)
        if name == "busy.png":  # always 503: retried, then failed
            return web.Response(status=503, text="busy")
        if name == "scan.bmp":
            return web.Response(body=b"BM" + bytes(200))
        if name == "page.png":
            return web.Response(text="<html><body>log in</body></html>", content_type="text/html")
        return web.Response(status=404, text="no such image")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def upload_urls(manifest: Path, store: Path, **settings: Any) -> ingest.Result:
    """`manifest` uploaded to Novita through the emulator, retried quickly (3 tries)."""
    return ingest.upload_sync(
        manifest,
        provider="novita",
        sim=sim_settings(store_dir=store),
        retry_window_s=0,
        max_attempts=3,
        backoff_base_s=0.01,
        **settings,
    )


def test_urls_show_and_key_without_userinfo_or_signature() -> None:
    url = "https://user:hunter2@cdn.example.com:8443/x/c.png?X-Amz-Signature=abc123&e=9"
    assert (
        shown_url(url) == "https://cdn.example.com:8443/x/c.png?X-Amz-Signature=REDACTED&e=REDACTED"
    )
    key = url_key(url)
    assert key.startswith("https://cdn.example.com:8443/x/c.png?") and "abc123" not in key
    assert "hunter2" not in key and url_key(url.replace("abc123", "zzz")) != key


def test_urls_are_fetched_uploaded_once_and_failures_are_their_items(
    server: Server, tmp_path: Path
) -> None:
    secret_url = server.url("signed/c.png").replace("http://", "http://bob:s3cret@")
    secret_url += "?X-Amz-Signature=topsecretsig&X-Amz-Expires=60"
    lines = [
        {"path": server.url("a.png"), "caption": "a"},
        {"path": server.url("chunked/b.jpg")},
        {"path": server.url("flaky.png")},
        {"path": secret_url, "id": "signed"},
        {"path": server.url("missing.png")},
        {"path": server.url("page.png")},
        {"path": server.url("scan.bmp")},
        {"path": server.url("busy.png")},
    ]
    manifest = tmp_path / "urls.jsonl"
    manifest.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    store = tmp_path / "store"

    def run() -> ingest.Result:
        return upload_urls(manifest, store)

    result = run()
    # scan.bmp and page.png are rejected, as a local BMP or HTML file is (fixes10,
    # fixes10b): a re-run checks them again.
    assert (result.done, result.failed, result.rejected) == (4, 2, 2)
    bodies = sorted(
        hashlib.sha256(p.read_bytes()).hexdigest() for p in store.rglob("*") if p.is_file()
    )
    sent = [PNG, JPEG, FLAKY, SIGNED]
    assert bodies == sorted(hashlib.sha256(b).hexdigest() for b in sent)
    assert server.hits["flaky.png"] == 2 and server.hits["missing.png"] == 1  # 404: not retried
    assert result.this_run.retries == 1 + 2  # flaky's and busy's, counted as other retries are
    journal = journal_of(result).read_text()
    assert "s3cret" not in journal and "topsecretsig" not in journal and "bob" not in journal
    ended = [r for r in map(orjson.loads, journal.splitlines()[1:]) if r["s"] in ("fail", "bad")]
    failed = {r.get("k"): r for r in ended}
    missing = failed[url_key(server.url("missing.png"))]
    assert missing["c"] == "source_failed" and missing["e"] == (
        f"source answered HTTP 404: {server.url('missing.png')}"
    )
    # Newcomer finding: the URL was named twice ('…: URL (after 3 tries): URL').
    busy = failed[url_key(server.url("busy.png"))]["e"]
    assert busy == f"source answered HTTP 503 (after 3 tries): {server.url('busy.png')}"
    page = failed[url_key(server.url("page.png"))]
    assert page["s"] == "bad" and page["e"] == (  # validate's words for a local one
        "not an image (content looks like an HTML page (an error or login page saved by "
        f"mistake?)): {server.url('page.png')}"
    )
    bmp = failed[url_key(server.url("scan.bmp"))]
    assert bmp["s"] == "bad" and bmp["e"].startswith(
        "unsupported image type bmp (novita accepts jpeg, png, webp; --convert"
    )
    rows = {r["key"]: r for r in ingest.export(journal_of(result))}
    assert rows[url_key(server.url("a.png"))]["caption"] == "a"
    hits = dict(server.hits)
    again = run()
    assert again.this_run.skipped == 4 and again.this_run.done == 0
    assert {k: v for k, v in server.hits.items() if k not in FAILING} == {
        k: v for k, v in hits.items() if k not in FAILING
    }  # done items are not fetched again


def test_s3_objects_are_fetched_through_boto3_from_an_in_process_moto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    s3_server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3_server.start()
    try:
        host, port = s3_server.get_host_and_port()
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        }.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket="data")
        client.put_object(Bucket="data", Key="cats/a.png", Body=PNG)
        client.put_object(Bucket="data", Key="cats/big.jpg", Body=BIG)  # streamed, many chunks
        manifest = tmp_path / "s3.txt"
        manifest.write_text(
            "s3://data/cats/a.png\ns3://data/cats/none.png\ns3://data/cats/big.jpg\n"
        )
        store = tmp_path / "store"
        result = ingest.upload_sync(
            manifest, provider="novita", sim=sim_settings(store_dir=store), max_attempts=1
        )
    finally:
        s3_server.stop()
    assert (result.done, result.failed) == (2, 1)
    stored = sorted(p.read_bytes() for p in store.rglob("*") if p.is_file())
    assert stored == sorted([PNG, BIG])
    failed = [orjson.loads(line) for line in journal_of(result).read_bytes().splitlines()[1:]]
    [missing] = [r for r in failed if r["s"] == "fail"]
    assert missing["e"] == "source answered NoSuchKey (HTTP 404): s3://data/cats/none.png"


def test_a_source_host_that_refuses_is_said_as_an_api_host_is(tmp_path: Path) -> None:
    """A URL source on a port nothing listens on said 'cannot fetch the source
    (ClientConnectorError: Cannot connect to host 127.0.0.1:N ssl:default [Connect call
    failed ('127.0.0.1', N)])'; an API or storage host in that state is 'cannot reach …:
    connection refused'."""
    import socket

    # Bound but not listening, for the whole run: a connect to it is refused, and no other
    # process (another test's server) can take the port, nor can a connect of ours pick it
    # as its own source port (a TCP self-connect, which succeeds). A port closed before
    # the run, as this test had it, is free for either while the run's 3 tries go on.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/x.png"
        manifest = tmp_path / "urls.jsonl"
        manifest.write_bytes(orjson.dumps({"path": url}) + b"\n")
        result = upload_urls(manifest, tmp_path / "store")
    assert result.failed == 1
    (failure,) = ingest.failures(journal_of(result))
    assert failure.reason == f"cannot reach the source: connection refused (after 3 tries): {url}"


def test_each_s3_source_client_reads_the_credentials_of_its_own_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """boto3.client() took the process's default session, which keeps the credentials its
    first client found: a second run in the process (a notebook, the next test) signed
    with the first run's AWS_ACCESS_KEY_ID. Each run's client has a session of its own."""
    pytest.importorskip("boto3")
    from http.server import BaseHTTPRequestHandler

    from ingest.remote import _s3_client
    from tests.loopback import serving

    signed: list[str] = []

    def answer(request: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        signed.append(request.headers.get("Authorization", ""))
        return 404, b""

    with serving(answer) as base:
        monkeypatch.setenv("AWS_ENDPOINT_URL", base)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for key in ("AKIDFIRSTRUN", "AKIDSECONDRUN"):
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", f"secret-of-{key}")
            with pytest.raises(Exception, match="404"):
                _s3_client().get_object(Bucket="b", Key="k.png")
    assert [auth.split("Credential=")[1].split("/")[0] for auth in signed] == [
        "AKIDFIRSTRUN",
        "AKIDSECONDRUN",
    ]


async def fetch_error(
    url: str,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]],
    now: Callable[[], float] = time.monotonic,
) -> ingest.TransferError:
    """What fetching `url` (a PNG for Novita, spooled) raised, each wait through `sleep`."""
    from ingest.http import Timeouts
    from ingest.item import Item, Source
    from ingest.remote import Fetcher
    from ingest.sniff import ImageType

    fetcher = Fetcher(
        provider="novita",
        formats=frozenset({ImageType.PNG}),
        policy=policy,
        timeouts=Timeouts(connect=5, read=5),
        concurrency=1,
        max_size=None,
        sleep=sleep,
        now=now,
    )
    item = Item(key=url, path=Path(url), line=1, url=url)
    try:
        with pytest.raises(ingest.TransferError) as info:
            await fetcher.fetch(Source(item=item, size=0, mtime_ns=0, image_type=ImageType.PNG))
    finally:
        await fetcher.aclose()
    return info.value


def test_a_refused_source_gets_three_short_tries_whatever_the_retry_window() -> None:
    """A URL on a host that refuses connections kept its item (and the run's ETA) going for
    ~1 min 48 s: the run's 90-s retry window, 12 tries. Now three tries, each retry after at
    most half a second, as curl and wget leave a refusal alone; the policy is the default's."""
    import socket

    from ingest.config import RunSettings
    from ingest.engine.settings import EngineSettings
    from ingest.errors import Action

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    policy = EngineSettings(RunSettings()).retry  # 8 tries, at least 90 s
    with socket.socket() as sock:  # bound, not listening: refused (see the test above)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/x.png"
        err = asyncio.run(fetch_error(url, policy, sleep, lambda: sum(slept)))
    assert err.action is Action.FAIL_ITEM and err.code == "source_failed"
    assert err.message == f"cannot reach the source: connection refused (after 3 tries): {url}"
    assert len(slept) == 2 and sum(slept) <= 1.0
