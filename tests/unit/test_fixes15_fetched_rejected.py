"""A fetched source that arrived whole but is empty, or is a PNG or JPEG cut short, is rejected
as the same file on local disk is (fixes15, issue 15): journaled `bad`, counted rejected,
named in the local check's words. A body cut short of its Content-Length is a dropped
connection: retried, then failed. Until fixes15 the empty and the cut ones failed their
items (`fail_item/source_failed`, left for retry-failed), the empty one as "source is
empty (0 bytes)"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from ingest.cli.main import main
from ingest.sim.context import abort_connection
from tests.images import image_bytes
from tests.unit.test_remote import Server
from tests.unit.test_remote_stream import spooled  # noqa: F401 (a fixture)

CUT_PNG = image_bytes("png", 800_000, 151)[:-12]  # no IEND: several chunks, streamed
SMALL_CUT_PNG = image_bytes("png", 3_000, 152)[:-12]  # all of it in the fetch's first chunk
CUT_JPEG = image_bytes("jpeg", 3_000, 154)[:-2]  # no end-of-image marker (nor FF D9 by chance)
PNG_WORDS = "truncated PNG (no IEND chunk at its end: the file was cut short)"
JPEG_WORDS = "truncated JPEG (no end-of-image marker: the file was cut short)"
EMPTY_WORDS = "empty file (0 bytes)"


class Sources(Server):
    """Empty and cut bodies, with a Content-Length or chunked; one dropped part way."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] = self.hits.get(name, 0) + 1
        if name == "said/empty.png":
            return web.Response(body=b"")  # Content-Length: 0
        if name == "said/cut.png":
            return web.Response(body=CUT_PNG)
        if name == "said/small-cut.png":
            return web.Response(body=SMALL_CUT_PNG)
        response = web.StreamResponse()
        if name == "dropped.png":  # says 800,000 bytes, sends a third, then a reset
            response.content_length = len(CUT_PNG) + 12
            await response.prepare(request)
            await response.write(CUT_PNG[: len(CUT_PNG) // 3])
            abort_connection(request)
            return response
        response.enable_chunked_encoding()  # no length said
        await response.prepare(request)
        if name == "chunked/cut.jpg":
            await response.write(CUT_JPEG)
        elif name != "chunked/empty.png":
            abort_connection(request)
            return response
        await response.write_eof()
        return response


@pytest.fixture
def sources() -> Iterator[Sources]:
    srv = Sources()
    yield srv
    srv.close()


def test_a_whole_fetched_body_that_is_empty_or_cut_is_rejected_as_the_local_file_is(
    sources: Sources,
    spooled: list[str],  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert b"IEND" not in CUT_PNG[-4096:] and b"\xff\xd9" not in CUT_JPEG
    empty, cut_png, cut_jpeg = (tmp_path / n for n in ("empty.png", "cut.png", "cut.jpg"))
    empty.write_bytes(b"")
    cut_png.write_bytes(CUT_PNG)
    cut_jpeg.write_bytes(CUT_JPEG)
    urls = [
        sources.url(n)
        for n in (
            "said/empty.png",
            "chunked/empty.png",
            "said/cut.png",
            "said/small-cut.png",
            "chunked/cut.jpg",
            "dropped.png",
        )
    ]
    manifest = tmp_path / "m.jsonl"
    lines = [str(empty), str(cut_png), str(cut_jpeg), *urls]
    manifest.write_bytes(b"".join(orjson.dumps({"path": p}) + b"\n" for p in lines))
    run = ["run", str(manifest), "--provider", "novita", "--sim", "--quiet"]
    retries = ["--max-attempts", "2", "--retry-window-s", "0", "--backoff-base-s", "0.01"]
    assert main([*run, *retries]) == 1
    said = capsys.readouterr().err
    expected = {
        1: f"{EMPTY_WORDS}: {empty}",
        2: f"{PNG_WORDS}: {cut_png}",
        3: f"{JPEG_WORDS}: {cut_jpeg}",
        4: f"{EMPTY_WORDS}: {urls[0]}",
        5: f"{EMPTY_WORDS}: {urls[1]}",
        6: f"{PNG_WORDS}: {urls[2]}",
        7: f"{PNG_WORDS}: {urls[3]}",
        8: f"{JPEG_WORDS}: {urls[4]}",
    }
    for line, words in expected.items():
        assert f"rejected line {line}: {words}" in said
    assert "9 items not uploaded (1 failed, 8 rejected, 0 unfinished)" in said
    # said/cut.png was streamed (not spooled): its PUT had sent all but its last chunk when
    # the tail was found cut. That PUT was cut short (storage keeps nothing), the item rejected.
    assert spooled == ["cut.jpg"] and sources.hits["said/cut.png"] == 1
    [journal] = tmp_path.glob("*.journal")
    records = [orjson.loads(r) for r in journal.read_bytes().splitlines()[1:]]
    ends = {r["l"]: r for r in records if r["s"] in ("done", "bad", "fail")}
    assert {line: r["e"] for line, r in ends.items() if r["s"] == "bad"} == expected
    # Cut short of its Content-Length: the connection dropped, retried, then failed.
    dropped = ends[9]
    assert (dropped["s"], dropped["a"], dropped["c"]) == ("fail", "retry", "source_failed")
    assert sources.hits["dropped.png"] >= 2  # fetched again (by the fetch's or the PUT's retry)

    assert main(["status", str(journal), "--failed"]) == 0
    listed = capsys.readouterr().out.splitlines()
    for line, words in expected.items():
        assert f"line {line}: rejected: {words}" in listed
    assert [x for x in listed if x.startswith("line 9: retry/source_failed: ")]
