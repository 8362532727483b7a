"""Hostile Parquet pages for the streamed image column: a few bytes of header or run must not
cost memory or time out of proportion (each test fails on the code before its fix)."""

from __future__ import annotations

import os
import tracemalloc
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from ingest.manifest.packed import parquetcolumn
from ingest.manifest.packed.parquetcolumn import Chunk, Oversized
from ingest.manifest.packed.parquetpieces import Damaged, Unstreamable, hybrid

_I32, _STRUCT = 5, 12
PLAIN, RLE, RLE_DICTIONARY = 0, 3, 8


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _struct(fields: Sequence[tuple[int, int | Sequence[tuple[int, int]]]]) -> bytes:
    """Thrift compact: i32 fields (zigzag varints) and nested structs of i32 fields."""
    out, last = bytearray(), 0
    for field, value in fields:
        kind = _I32 if isinstance(value, int) else _STRUCT
        out.append((field - last) << 4 | kind)
        out += _varint(value << 1) if isinstance(value, int) else _struct(value)
        last = field
    return bytes(out + b"\x00")


def _page(
    kind: int, body: bytes, uncompressed: int, inner: int, sub: list[tuple[int, int]]
) -> bytes:
    return _struct([(1, kind), (2, uncompressed), (3, len(body)), (inner, sub)]) + body


def _dictionary(entry: bytes) -> bytes:
    body = len(entry).to_bytes(4, "little") + entry
    return _page(2, body, len(body), 7, [(1, 1), (2, PLAIN)])


def _indices_page(body: bytes, values: int, uncompressed: int | None = None) -> bytes:
    size = len(body) if uncompressed is None else uncompressed
    return _page(0, body, size, 5, [(1, values), (2, RLE_DICTIONARY), (3, RLE), (4, RLE)])


def _read(path: Path, data: bytes, rows: int, codec: str = "UNCOMPRESSED") -> tuple[str, int]:
    """(how the chunk's reading ended, the peak bytes traced meanwhile)."""
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    tracemalloc.start()
    try:
        got = [v for v in parquetcolumn.values(fd, Chunk(0, len(data), codec, 0, rows))]
        ended = f"{len(got)} rows"
    except (Damaged, Unstreamable) as exc:
        ended = f"{type(exc).__name__}: {exc}"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        os.close(fd)
    return ended, peak


def test_a_bit_packed_run_longer_than_the_values_wanted_is_not_unpacked_past_them() -> None:
    run = _varint((1 << 16) << 1 | 1)  # 2^16 groups of 8 zero-width values: 3 bytes
    tracemalloc.start()
    try:
        assert hybrid(run, 0, 8) == [0] * 8
        assert hybrid(_varint(2 << 1 | 1) + b"\xff\x00", 1, 10) == [1] * 8 + [0] * 2
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_zero_width_bit_packed_run_in_a_page_costs_no_more_than_its_rows(tmp_path: Path) -> None:
    body = b"\x00" + _varint((1 << 16) << 1 | 1)  # bit width 0, then 2^16 groups
    data = _dictionary(b"img") + _indices_page(body, 8)
    ended, peak = _read(tmp_path / "f", data, 8)
    assert ended == "8 rows" and peak < 1 << 20


def test_a_page_claiming_more_values_than_the_row_group_has_is_damaged_before_it_costs(
    tmp_path: Path,
) -> None:
    body = b"\x00" + _varint((1 << 17) << 1)  # bit width 0, one RLE run of 2^17 zeros
    data = _dictionary(b"img") + _indices_page(body, 1 << 17)
    ended, peak = _read(tmp_path / "f", data, 8)
    assert ended.startswith("Damaged: pages of more values") and peak < 1 << 20


def test_a_page_whose_sizes_leave_no_indices_is_not_read_whole(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    # bit width 0, a run of one index, 4 MiB more
    stored = zstandard.ZstdCompressor().compress(b"\x00\x02" + b"\x00" * (4 << 20))
    data = _dictionary(b"img") + _indices_page(stored, 1, uncompressed=0)
    ended, peak = _read(tmp_path / "f", data, 1, "ZSTD")  # pyarrow is left to say what is wrong
    assert ended.startswith("Unstreamable") and peak < 2 << 20


def test_definition_levels_longer_than_any_encoding_of_the_page_values_are_damaged(
    tmp_path: Path,
) -> None:
    levels = b"\x02\x01" + b"\x00" * (4 << 20)  # a run of one 1, then padding
    stored = zlib.compress(len(levels).to_bytes(4, "little") + levels)
    page = _page(0, stored, 1 << 30, 5, [(1, 1), (2, PLAIN), (3, RLE), (4, RLE)])
    path = tmp_path / "f"
    path.write_bytes(page)
    fd = os.open(path, os.O_RDONLY)
    tracemalloc.start()
    try:
        with pytest.raises(Damaged, match="definition levels"):
            list(parquetcolumn.values(fd, Chunk(0, len(page), "GZIP", 1, 1)))
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        os.close(fd)
    assert peak < 2 << 20


def _plain_page(values: Sequence[bytes], compress: bool) -> bytes:
    raw = b"".join(len(v).to_bytes(4, "little") + v for v in values)
    stored = zlib.compress(raw) if compress else raw
    return _page(0, stored, len(raw), 5, [(1, len(values)), (2, PLAIN), (3, RLE), (4, RLE)])


def _gzip_values(path: Path, data: bytes, rows: int) -> tuple[list[parquetcolumn.Value], int]:
    """(the values of a gzip chunk of `rows` required rows, the peak bytes traced meanwhile)."""
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    tracemalloc.start()
    try:
        got = list(parquetcolumn.values(fd, Chunk(0, len(data), "GZIP", 0, rows)))
        return got, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        os.close(fd)


def test_a_value_over_the_largest_image_is_that_rows_oversized_never_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquetcolumn, "ROW_BOUND", 1 << 20)
    big = b"\x00" * (3 << 20)  # three times the cap: a few KiB gzipped
    data = _plain_page([b"a" * 10, big, b"b" * 10], compress=True)
    got, peak = _gzip_values(tmp_path / "f", data, 3)
    assert got == [b"a" * 10, Oversized(3 << 20, 1 << 20), b"b" * 10]
    assert peak < 1 << 20  # the old code held the 3 MiB value


def test_an_oversized_dictionary_entry_is_read_past_and_its_rows_each_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquetcolumn, "ROW_BOUND", 1 << 20)
    entries = b"".join(len(v).to_bytes(4, "little") + v for v in (b"\x00" * (3 << 20), b"img"))
    stored = zlib.compress(entries)
    dictionary = _page(2, stored, len(entries), 7, [(1, 2), (2, PLAIN)])
    indices = b"\x01" + _varint(1 << 1 | 1) + bytes([0b010])  # width 1, one group: 0, 1, 0
    data = dictionary + _indices_page(zlib.compress(indices), 3, uncompressed=len(indices))
    got, peak = _gzip_values(tmp_path / "f", data, 3)
    too_big = Oversized(3 << 20, 1 << 20)
    assert got == [too_big, b"img", too_big] and peak < 1 << 20


@pytest.mark.parametrize(
    ("compression", "dictionary"), [("snappy", True), ("none", False), ("lz4", False)]
)
def test_an_oversized_row_is_its_own_problem_naming_file_group_and_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str, dictionary: bool
) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from ingest.errors import ManifestError
    from ingest.item import Item
    from ingest.manifest.packed.parquet import read_parquet

    monkeypatch.setattr(parquetcolumn, "ROW_BOUND", 100_000)
    images = [os.urandom(1000), os.urandom(300_000), os.urandom(1000), os.urandom(1000)]
    path = tmp_path / "p.parquet"
    table = pa.table({"image": pa.array(images, pa.binary())})
    pq.write_table(
        table, path, row_group_size=2, compression=compression, use_dictionary=dictionary
    )
    got = list(read_parquet(path, str(path), "p.parquet"))
    assert [type(r) for r in got] == [Item, ManifestError, Item, Item]
    problem = got[1]
    assert isinstance(problem, ManifestError)
    assert problem.reason == (
        "row 1 (row group 0) holds an image of 300,000 bytes, more than ingest reads from a "
        "Parquet row (100,000 bytes: a row is held whole in memory; as a file or a tar member it "
        f"would be streamed); not read: {path}#row-1"
    )
