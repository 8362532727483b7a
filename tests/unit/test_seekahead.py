"""The seek-ahead count (`ingest.manifest.seekahead`): what the reader will yield, counted early.

The count must equal the number of results `read_manifest` yields (one per
entry, bad entries included), in bounded memory, at any chunk boundary; and
it runs in a thread that can be given up.
"""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import ManifestError
from ingest.manifest import ManifestFormat, SeekAhead, WalkStats, count_entries, read_manifest


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def yielded(path: Path, fmt: ManifestFormat | None = None) -> int:
    return sum(1 for _ in read_manifest(path, fmt))


TRICKY: dict[str, bytes] = {
    "m.jsonl": (
        b'\xef\xbb\xbf{"path": "a.png"}\r\n\r\n   \n# note\n  # indented\n'
        b'{"path": "b.png"}\n{oops\n{"path": "a.png"}\n\t{"path": "c.png"}'  # no final newline
    ),
    "m.txt": b"\xef\xbb\xbf# header comment\na.png\n\n  b.png  \nc\xff.png\n#x\nd.png",
    "m.csv": (
        b'\n\npath;caption\na.png;one\n\nb.png;"two\nlines\n\nstill two"\n;\n'
        b'c.png;"say ""hi"""\nd.png;x;extra\n'
    ),
    "tab.csv": b"path\tid\na.png\t1\nb.png\t2\r\n\t\n",
}


# A CSV line longer than a chunk hides its later quotes (a documented limit): CSV chunks
# stay longer than its lines.
@pytest.mark.parametrize(
    ("name", "chunk"),
    [
        (name, chunk)
        for name in sorted(TRICKY)
        for chunk in ((64, 1 << 20) if name.endswith(".csv") else (1, 3, 7, 64, 1 << 20))
    ],
)
def test_count_equals_what_the_reader_yields(tmp_path: Path, name: str, chunk: int) -> None:
    path = write(tmp_path / name, TRICKY[name])
    assert count_entries(path, chunk=chunk) == yielded(path)


def test_an_overlong_line_counts_once(tmp_path: Path) -> None:
    path = write(tmp_path / "m.txt", b"a.png\n" + b" " * 50 + b"x" * 5_000 + b"\nb.png\n")
    assert count_entries(path, chunk=16) == 3


def test_a_million_lines_are_counted_exactly_in_bounded_memory(tmp_path: Path) -> None:
    lines = [b'{"path": "img/%07d.png"}\n' % i for i in range(1_000_000)]
    lines[10] = b"\n"  # a blank line and a comment are not entries
    lines[500_000] = b"# half way\n"
    path = write(tmp_path / "big.jsonl", b"".join(lines))
    del lines
    tracemalloc.start()
    try:
        count = count_entries(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 999_998
    assert peak < 8 << 20  # a chunk or two of a 26 MB file, never the file


def test_csv_records_not_lines(tmp_path: Path) -> None:
    text = b'path,caption\na.png,"one\ntwo\nthree"\nb.png,x\n'
    assert count_entries(write(tmp_path / "m.csv", text)) == 2


def test_folder_count_equals_the_walk(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for name in ("a.png", "sub/b.jpg", "sub/deep/c.webp", "notes.txt", ".hidden/x.png", "d.PNG"):
        write(root / name, b"x")
    (root / "sub" / "up").symlink_to(root, target_is_directory=True)  # a loop
    (root / "again").symlink_to(root / "sub", target_is_directory=True)  # walked again
    stats = WalkStats()
    assert count_entries(root, stats=stats) == yielded(root) == 6
    assert (stats.files, stats.loops) == (1, 2)  # `up` is met under sub/ and under again/


def test_empty_folder_counts_its_one_problem(tmp_path: Path) -> None:
    assert count_entries(tmp_path) == yielded(tmp_path) == 1


def test_the_thread_counts_in_the_background(tmp_path: Path) -> None:
    path = write(tmp_path / "m.txt", b"".join(b"%d.png\n" % i for i in range(1_000)))
    ahead = SeekAhead(path).wait()
    assert (ahead.count, ahead.counting) == (1_000, False)


def test_the_thread_gives_up_at_its_time_limit(tmp_path: Path) -> None:
    path = write(tmp_path / "m.txt", b"a.png\n")
    ahead = SeekAhead(path, limit_s=-1).wait()
    assert (ahead.count, ahead.counting) == (None, False)


def test_an_unreadable_manifest_leaves_the_count_unknown(tmp_path: Path) -> None:
    ahead = SeekAhead(tmp_path / "missing.jsonl").wait()
    assert (ahead.count, ahead.counting) == (None, False)
    with pytest.raises(ManifestError):
        count_entries(tmp_path / "missing.jsonl")


def test_a_folder_count_reports_what_it_skipped(tmp_path: Path) -> None:
    for name in ("a.png", "readme.txt", "Thumbs.db"):
        write(tmp_path / name, b"x")
    skipped = SeekAhead(tmp_path).wait().skipped
    assert skipped is not None
    assert skipped.describe() == "2 non-image files (Thumbs.db, readme.txt)"
    (tmp_path / "a.png").unlink()
    # Nothing found: the reader's one "no images found (skipped …)" says it, not a second note.
    assert SeekAhead(tmp_path).wait().skipped is None


# --- property: any mix of lines, any chunk size ---------------------------------------------

_line = st.sampled_from(
    [
        b"",
        b"   ",
        b"\t\r",
        b"# comment",
        b"  # indented comment",
        b'{"path": "a.png"}',
        b"  spaced.png  ",
        b"x",
        b"#",
        b" " * 20 + b"late.png",
        b"caf\xe9.png",
        b"y" * 40,
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(_line, max_size=30),
    ending=st.sampled_from([b"\n", b"\r\n"]),
    final=st.booleans(),
    bom=st.booleans(),
    chunk=st.integers(1, 48),
    suffix=st.sampled_from([".jsonl", ".txt"]),
)
def test_property_count_equals_reader(
    lines: list[bytes], ending: bytes, final: bool, bom: bool, chunk: int, suffix: str
) -> None:
    data = (b"\xef\xbb\xbf" if bom else b"") + ending.join(lines) + (ending if final else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / ("m" + suffix), data)
        assert count_entries(path, chunk=chunk) == yielded(path)
