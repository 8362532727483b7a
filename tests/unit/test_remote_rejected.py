"""A fetched source that a local file's check rejects is rejected in that check's words
(fixes10b): not an image (an HTML page served with 200), over the provider's size limit
(from its Content-Length, past the limit when it gives none, and a fetched file kept as it
is under --convert); the same sentence as the local file's, naming the URL."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import orjson
import pytest

from ingest.cli.main import main
from tests.loopback import serving
from tests.unit.test_remote import JPEG, PNG, Server

HTML = b"<!doctype html><html><body>Sign in to continue</body></html>"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()  # a.png: 3,000 bytes with a Content-Length; chunked/b.jpg: none
    yield srv
    srv.close()


def _run(capsys: pytest.CaptureFixture[str], folder: Path, lines: list[str], *flags: str) -> str:
    """`lines` run to Novita in the emulator under a 1.0 KiB limit: what the run said."""
    manifest = folder / "m.jsonl"
    manifest.write_bytes(b"".join(orjson.dumps({"path": p}) + b"\n" for p in lines))
    config = folder / "limit.toml"
    config.write_text("[providers.novita]\nmax_size_mb = 0.001\n")  # 1,048 bytes
    run = ["run", str(manifest), "--provider", "novita", "--sim", "--quiet"]
    assert main([*run, "--config", str(config), *flags]) == 1
    return capsys.readouterr().err


def _records(folder: Path) -> list[dict[str, object]]:
    [journal] = folder.glob("*.journal")
    return [orjson.loads(line) for line in journal.read_bytes().splitlines()[1:]]


def test_a_fetched_source_over_the_limit_is_rejected_in_the_local_files_words(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It failed (journaled `fail`, source_failed) as "source too large: 3,000 bytes, over
    # the limit" (its Content-Length), "source too large: over 1,048 bytes" (no length), or
    # with --convert as the local words but a failure: three sentences for one problem.
    local = tmp_path / "local.png"
    local.write_bytes(PNG)  # the same bytes as a.png
    said = _run(capsys, tmp_path, [str(local), server.url("a.png"), server.url("chunked/b.jpg")])
    words = "too large: 2.9 KiB, over novita's 1.0 KiB limit"
    assert f"rejected line 1: {words}: {local}" in said
    assert f"rejected line 2: {words}: {server.url('a.png')}" in said
    [chunked] = [line for line in said.splitlines() if line.startswith("rejected line 3: too")]
    assert chunked.endswith(
        ", over novita's 1.0 KiB limit (at least: the source did not say its length): "
        + server.url("chunked/b.jpg")
    )
    assert "0 failed, 3 rejected" in said
    assert server.hits["a.png"] == 1  # refused from its Content-Length: not tried again
    ended = [r for r in _records(tmp_path) if r["s"] in ("bad", "fail")]
    assert sorted((str(r["s"]), str(r["l"])) for r in ended) == [
        ("bad", "1"),
        ("bad", "2"),
        ("bad", "3"),
    ]
    # With --convert a URL is fetched without the limit (it might be converted); a PNG or
    # JPEG kept as it is is checked once fetched: its whole size is known, and said.
    again = _run(
        capsys,
        tmp_path,
        [str(local), server.url("a.png"), server.url("chunked/b.jpg")],
        "--convert",
    )
    assert f"rejected line 2: {words}: {server.url('a.png')}" in again
    assert (
        f"rejected line 3: too large: {len(JPEG) / 1024:.1f} KiB, over novita's 1.0 KiB limit: "
        + server.url("chunked/b.jpg")
    ) in again


def test_an_html_page_served_as_an_image_is_rejected_as_a_local_html_file_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It failed as "not an image (an HTML page …): URL", where the local file is rejected
    # with "not an image (content looks like an HTML page …): path". A 200 with a page where
    # an image was expected is a wrong URL: the manifest is what to fix, not a retry.
    def answer(request: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        return 200, HTML

    local = tmp_path / "login.png"
    local.write_bytes(HTML)
    with serving(answer) as base:
        said = _run(capsys, tmp_path, [str(local), f"{base}/cat.png"])
    words = (
        "not an image (content looks like an HTML page (an error or login page saved by mistake?))"
    )
    assert f"rejected line 1: {words}: {local}" in said
    assert f"rejected line 2: {words}: {base}/cat.png" in said
    # One problem row for both (the URL is taken out of the group as the path is).
    assert f"2  rejected/{words}" in said
