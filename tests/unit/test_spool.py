"""Spool files have no name (issue 15 part 3): a fetched body or a converted image is readable
by its path while its item is in flight, yet a SIGKILLed run leaves nothing in its TMPDIR
(before, ``ingest-fetch-*`` and ``ingest-convert-*`` folders stayed behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from ingest.spool import Spool
from tests.unit.test_remote import PNG, Server

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="files without names need /proc/self/fd"
)


@pytest.fixture
def tmpdir_(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.mark.parametrize("tmpfile", [True, False], ids=["O_TMPFILE", "unlinked"])
def test_a_spool_file_is_read_by_its_path_and_has_no_name(tmpdir_: Path, tmpfile: bool) -> None:
    spool = Spool("ingest-test-")
    spool._tmpfile = tmpfile and spool._tmpfile  # without O_TMPFILE: made, then unlinked
    a = spool.write("a", b"first")
    fd, b = spool.create("b")
    os.write(fd, b"second")
    assert (a.read_bytes(), b.read_bytes(), len(spool)) == (b"first", b"second", 2)
    assert list(tmpdir_.iterdir()) == []  # readable, yet nothing in the folder
    spool.forget("a")
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(int(a.name))  # its descriptor is closed: the kernel frees the bytes
    spool.close()
    assert len(spool) == 0 and list(tmpdir_.iterdir()) == []


def test_without_proc_files_are_named_and_go_with_forget_and_close(tmpdir_: Path) -> None:
    spool = Spool("ingest-test-")
    spool.anonymous = False  # no /proc/self/fd (macOS): named files in a private folder
    a, b = spool.write("a", b"1"), spool.write("b", b"2")
    assert a.parent.name.startswith("ingest-test-") and a.parent.parent == tmpdir_
    spool.forget("a")
    assert not a.exists() and b.read_bytes() == b"2"
    spool.close()
    assert list(tmpdir_.iterdir()) == []


_HOLDER = """
import asyncio, sys
from pathlib import Path
from ingest import convert_pool
from ingest.convert import Converter
from ingest.http import Timeouts
from ingest.item import Item, Source
from ingest.remote import Fetcher
from ingest.retry import RetryPolicy
from ingest.sniff import ImageType

async def main() -> None:
    url, bmp = sys.argv[1], Path(sys.argv[2])
    fetcher = Fetcher(provider="novita", formats=frozenset(ImageType), timeouts=Timeouts(),
                      policy=RetryPolicy(1, 0, 0.01, 0.01, 0, 1), concurrency=1, max_size=None)
    remote = Item(key=url, path=Path("u"), line=1, url=url)
    fetched = await fetcher.fetch(Source(remote, 0, 0, ImageType.JPEG))
    converter = Converter(frozenset({ImageType.PNG, ImageType.JPEG}), provider="novita")
    local = Source(Item(key="scan.bmp", path=bmp, line=2), bmp.stat().st_size, 0, ImageType.BMP)
    converted = await converter.convert(local)
    print(fetched.item.path, converted.item.path, *convert_pool.pids(), flush=True)
    sys.stdin.read()  # both spool files held open until the test kills this process

asyncio.run(main())
"""


def test_a_sigkilled_run_leaves_no_spool_file(server: Server, tmp_path: Path) -> None:
    spool = tmp_path / "tmp"
    spool.mkdir()
    bmp = tmp_path / "scan.bmp"
    Image.new("RGB", (16, 8), (200, 10, 10)).save(bmp, "BMP")
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, server.url("a.png"), str(bmp)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(spool)},
    ) as child:
        try:
            assert child.stdout is not None
            held = child.stdout.readline().decode().split()  # both spooled, and still held
            assert len(held) == 3, "the child did not get as far as its spool files"
            held, converters = held[:2], [int(pid) for pid in held[2:]]
            for path in held:  # open in the child, in its TMPDIR, and without a name there
                link = os.readlink(f"/proc/{child.pid}/fd/{Path(path).name}")
                assert link.startswith(str(spool)) and link.endswith("(deleted)"), link
            assert list(spool.iterdir()) == []
            fetched = Path(f"/proc/{child.pid}/fd/{Path(held[0]).name}").read_bytes()
            assert fetched == PNG
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
    assert list(spool.iterdir()) == []
    deadline = time.monotonic() + 10  # its converter process sees its stdin end, and ends
    while not all(ended(pid) for pid in converters) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(ended(pid) for pid in converters)


def ended(pid: int) -> bool:
    """`pid` is gone or a zombie (its new parent may not have reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"
