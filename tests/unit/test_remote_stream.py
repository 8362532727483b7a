"""Remote sources of known length are streamed into their PUT, not spooled (issue 15 part 3):
the bytes storage keeps are the source's; a source that dies mid-stream is its item's retry
(fetched again), then its failure, classified and with its URL redacted; a length that does not
hold, or a PNG whose tail is cut (rejected, as a local one is), ends the PUT body short, so
storage keeps nothing."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp import web

import ingest
from ingest import storage
from ingest.api.wiring import sim_settings
from ingest.errors import Action, TransferError
from ingest.item import Item
from ingest.preparing import SourceRejected
from ingest.redact import url_key
from ingest.remote import Fetcher
from ingest.remote_body import Opened, checked
from ingest.sim.context import abort_connection
from ingest.sniff import ImageType
from tests.images import image_bytes
from tests.results import journal_of
from tests.unit.test_remote import Server, upload_urls

BIG = image_bytes("png", 1_500_000, 11)  # several chunks: most of it is read during the PUT
ONCE = image_bytes("jpeg", 900_000, 12)
CUT = image_bytes("png", 800_000, 13)[:-12]  # a PNG cut short: no IEND at its end
CHANGES = image_bytes("png", 700_000, 14)


class StreamServer(Server):
    """Bodies with a Content-Length; some die part way (a TCP reset), once or always.

    One that dies is reset only once the client's PUT of it has started (`puts`): the first
    chunk was read by then, so the death is the PUT's, never the fetch's.
    """

    puts: Counter[str]
    put_started: threading.Condition

    def _wait_for_put(self, name: str, count: int) -> None:
        with self.put_started:
            self.put_started.wait_for(lambda: self.puts[name] >= count, timeout=20)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        hits = self.hits[name] = self.hits.get(name, 0) + 1
        body = {"big.png": BIG, "once.jpg": ONCE, "dies.jpg": ONCE, "cut.png": CUT}.get(name)
        if name == "changes.png":  # dies the first time; fetched again, it is longer
            body = CHANGES if hits == 1 else CHANGES + b"\x00" * 10
        if name == "gzipped.png":  # encoded though the client asked for identity
            return web.Response(body=gzip.compress(BIG), headers={"Content-Encoding": "gzip"})
        if body is None:
            return web.Response(status=404)
        dies = name == "dies.jpg" or (hits == 1 and name in ("once.jpg", "changes.png"))
        response = web.StreamResponse()
        response.content_length = len(body)
        await response.prepare(request)
        half = len(body) // 2
        await response.write(body[:half])
        if dies:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._wait_for_put, name, hits)
            abort_connection(request)
            return response
        await response.write(body[half:])
        await response.write_eof()
        return response


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[StreamServer]:
    srv = StreamServer()
    srv.puts, srv.put_started = Counter(), threading.Condition()
    put_stream = storage.put_stream

    async def counted(*args: Any, where: str, **kwargs: Any) -> None:
        with srv.put_started:
            srv.puts[PurePosixPath(urlsplit(where).path).name] += 1
            srv.put_started.notify_all()
        await put_stream(*args, where=where, **kwargs)

    monkeypatch.setattr(storage, "put_stream", counted)
    yield srv
    srv.close()


@pytest.fixture
def spooled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The items whose bodies were spooled (written to a file) rather than streamed."""
    seen: list[str] = []
    spool_body = Fetcher._spool_body

    async def recording(self: Fetcher, item: Item, *args: Any) -> tuple[int, Path]:
        seen.append(PurePosixPath(item.where).name)
        return await spool_body(self, item, *args)

    monkeypatch.setattr(Fetcher, "_spool_body", recording)
    return seen


def _digests(store: Path) -> list[str]:
    return sorted(
        hashlib.sha256(p.read_bytes()).hexdigest() for p in store.rglob("*") if p.is_file()
    )


@pytest.mark.parametrize("transport", ["lean", "aiohttp"])  # their send errors differ
def test_known_lengths_stream_into_the_put_and_failures_keep_nothing(
    server: StreamServer, spooled: list[str], tmp_path: Path, transport: str
) -> None:
    secret = server.url("dies.jpg").replace("http://", "http://bob:s3cret@")
    secret += "?X-Amz-Signature=topsecretsig"
    lines = [server.url(n) for n in ("big.png", "once.jpg", "cut.png", "changes.png")] + [secret]
    manifest = tmp_path / "urls.txt"
    manifest.write_text("\n".join(lines) + "\n")
    store = tmp_path / "store"
    result = upload_urls(manifest, store, put_transport=transport)
    assert (result.done, result.failed, result.rejected) == (2, 2, 1)
    assert _digests(store) == sorted(hashlib.sha256(b).hexdigest() for b in (BIG, ONCE))
    assert spooled == []  # every body went from its source's socket into its PUT
    # once.jpg died part way through its first PUT: that PUT was retried, fetching it again.
    assert server.hits["once.jpg"] == 2 and server.hits["dies.jpg"] == 3
    assert server.hits["cut.png"] == 1 and server.hits["changes.png"] == 2
    journal = journal_of(result).read_text()
    assert "s3cret" not in journal and "topsecretsig" not in journal and "bob" not in journal
    records = [orjson.loads(line) for line in journal.splitlines()[1:]]
    failed = {r["k"]: r for r in records if r["s"] == "fail"}
    assert {r["c"] for r in failed.values()} == {"source_failed"}
    [cut] = [r for r in records if r["s"] == "bad"]  # as a local file cut short is
    assert cut["k"] == url_key(server.url("cut.png")) and cut["e"] == (
        "truncated PNG (no IEND chunk at its end: the file was cut short): " + server.url("cut.png")
    )
    changed = failed[url_key(server.url("changes.png"))]["e"]
    assert changed.startswith("source changed since it was first fetched (700,010 bytes, png;")
    dies = failed[url_key(secret)]
    assert dies["a"] == "retry" and dies["e"].startswith("source body cut short: ")
    assert dies["e"].endswith("/dies.jpg?X-Amz-Signature=REDACTED")
    assert "127.0.0.1" in dies["e"] and "bob" not in dies["e"]


def _item() -> Item:
    return Item(key="k", path=Path("u"), line=1, url="https://h.example/a.png")


def _fail(item: Item, why: str, action: Action) -> TransferError:
    return TransferError(why, action=action, code="source_failed", provider="p", op="fetch")


def _reject(item: Item, why: str, code: str) -> TransferError:
    return SourceRejected(why, item, provider="p", code=code)


def _too_large(item: Item, read: int) -> TransferError:
    why = f"too large: {read:,} read"
    return TransferError(why, action=Action.FAIL_ITEM, code="too_large", provider="p", op="fetch")


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _read(
    opened: Opened, kind: ImageType = ImageType.PNG, max_size: int | None = None
) -> tuple[list[bytes], str]:
    got: list[bytes] = []
    try:
        async for chunk in checked(
            _item(),
            opened,
            kind,
            max_size=max_size,
            fail=_fail,
            too_large=_too_large,
            reject=_reject,
        ):
            got.append(chunk)
    except TransferError as err:
        said = "rejected" if isinstance(err, SourceRejected) else err.action.value
        return got, f"{said}: {err.message}"
    return got, "ok"


@pytest.mark.parametrize(
    ("length", "head", "rest", "outcome"),
    [
        (len(BIG), BIG[:100], [BIG[100:]], "ok"),
        (len(BIG) - 1, BIG[:100], [BIG[100:]], "retry: source sent more than its 1,499,999 bytes"),
        (
            len(BIG) + 1,
            BIG[:100],
            [BIG[100:]],
            "retry: source body cut short: 1500000 of 1500001 bytes",
        ),
        (None, BIG[:100], [BIG[100:]], "ok"),  # a spool: checked at its end
        # A whole body that a local file's check rejects (fixes15: they failed their items).
        (len(BIG) - 8, BIG[:100], [BIG[100:-8]], "rejected: truncated PNG"),
        (None, BIG[:100], [BIG[100:-8]], "rejected: truncated PNG"),
        (0, b"", [], "rejected: empty file (0 bytes)"),
        (None, b"", [b""], "rejected: empty file (0 bytes)"),
        (5, b"", [], "retry: source body cut short: 0 of 5 bytes"),  # the connection dropped
    ],
    ids=[
        "whole",
        "more",
        "short",
        "spooled",
        "cut",
        "cut-spooled",
        "empty",
        "empty-spooled",
        "nothing-of-5",
    ],
)
def test_a_body_is_checked_as_it_is_read(
    length: int | None, head: bytes, rest: list[bytes], outcome: str
) -> None:
    opened = Opened(length, head, _chunks(*rest), lambda: None)
    got, said = asyncio.run(_read(opened))
    assert said.startswith(outcome)
    if outcome == "ok":
        assert b"".join(got) == BIG
    elif length:
        # The last chunk, or the one past the length, never went out: storage keeps nothing.
        assert sum(map(len, got)) < length


@pytest.mark.parametrize(
    ("length", "outcome"),
    [
        # No length said: rejected once past the limit, naming what was read, not read on.
        (None, "fail_item: too large: 1,000,100 read"),
        # A said length within the limit, then more sent: the length is what broke (it was
        # "source too large", a failure not retried, before the length was checked first).
        (999_999, "retry: source sent more than its 999,999 bytes"),
    ],
)
def test_a_body_past_the_limit_is_too_large_unless_it_broke_its_length_first(
    length: int | None, outcome: str
) -> None:
    opened = Opened(length, BIG[:100], _chunks(BIG[100:1_000_100], BIG[1_000_100:]), lambda: None)
    got, said = asyncio.run(_read(opened, max_size=999_999))
    assert said == outcome and sum(map(len, got)) == 100  # the chunk past it never went out


def test_a_provider_that_reads_a_file_gets_a_spooled_body(
    server: StreamServer, spooled: list[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "urls.txt"
    manifest.write_text(server.url("big.png") + "\n" + server.url("cut.png") + "\n")
    result = ingest.upload_sync(
        manifest, provider="scenario", sim=sim_settings(), model_id="model_r", max_attempts=1
    )
    # multipart parts, read from the spool; the cut one rejected, as a local one is
    assert (result.done, result.failed, result.rejected) == (1, 0, 1)
    assert spooled == ["big.png", "cut.png"]
    [cut] = [
        r
        for r in map(orjson.loads, journal_of(result).read_bytes().splitlines()[1:])
        if r["s"] == "bad"
    ]
    assert cut["e"].startswith("truncated PNG (no IEND chunk")


def test_an_encoded_body_is_decoded_and_spooled_not_streamed_with_the_encoded_length(
    server: StreamServer, spooled: list[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "urls.txt"
    manifest.write_text(server.url("gzipped.png") + "\n")
    store = tmp_path / "store"
    result = upload_urls(manifest, store)
    assert (result.done, result.failed) == (1, 0) and spooled == ["gzipped.png"]
    assert _digests(store) == [hashlib.sha256(BIG).hexdigest()]
