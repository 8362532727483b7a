"""The streamed Parquet image column (issue 15): our page reader against pyarrow's, its memory, its
fallback to pyarrow, damaged pages named by row, the Snappy stream, and two reader fixes (a cut
image in a row is checked as a tar member is; a dictionary-encoded caption column is a caption)."""

from __future__ import annotations

import os
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import WalkStats, read_manifest
from ingest.manifest.packed import (
    parquetcache,
    parquetcolumn,
    parquetfile,
    parquetpieces,
    snappystream,
)
from ingest.manifest.packed.parquetcolumn import Value
from ingest.manifest.packed.parquetpieces import Unstreamable
from ingest.manifest.packed.snappystream import WINDOW, Pieces, SnappyError, SnappyReader, TooFar
from ingest.sniff import ImageType
from ingest.validate import Limits, check
from tests.images import image_bytes

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
Values = list[Value]


def _column(values: Values, struct: bool, null_structs: bool) -> pa.Array:
    if not struct:
        return pa.array(values, type=pa.binary())
    rows = [
        None if v is None and null_structs and i % 2 else {"bytes": v, "path": f"{i}.png"}
        for i, v in enumerate(values)
    ]
    return pa.array(rows, type=IMAGE)


def _pyarrows(path: Path, group: int, struct: bool) -> Values:
    column = pq.ParquetFile(path).read_row_group(group).column("image").combine_chunks()
    if struct:
        column = column.flatten()[0]  # a null struct's bytes are null
    values: Values = column.to_pylist()
    return values


def _ours(path: Path, group: int) -> Values:
    metadata = pq.ParquetFile(path).metadata
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(parquetcolumn.values(fd, parquetcolumn.chunk_of(metadata, group, 0)))
    finally:
        os.close(fd)


_value = st.one_of(
    st.none(),
    st.binary(max_size=600),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=40), st.integers(1, 300)),
)


@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(_value, min_size=1, max_size=40),
    repeats=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=6),
    struct=st.booleans(),
    null_structs=st.booleans(),
    compression=st.sampled_from(["none", "snappy", "gzip", "zstd"]),
    dictionary=st.booleans(),
    version=st.sampled_from(["1.0", "2.0"]),
    page=st.sampled_from([1, 200, 1 << 20]),
    batch=st.sampled_from([1, 4, 1024]),
    dictionary_limit=st.sampled_from([1, 2000, 1 << 20]),
    group=st.integers(1, 25),
)
def test_streamed_values_are_pyarrows_for_any_page_layout(
    tmp_path_factory: pytest.TempPathFactory,
    values: Values,
    repeats: list[tuple[int, int]],
    struct: bool,
    null_structs: bool,
    compression: str,
    dictionary: bool,
    version: str,
    page: int,
    batch: int,
    dictionary_limit: int,
    group: int,
) -> None:
    for to, origin in repeats:  # the same image twice: one dictionary entry, used out of order
        if to < len(values) and origin < len(values):
            values[to] = values[origin]
    path = tmp_path_factory.mktemp("pq") / "drawn.parquet"
    options: dict[str, Any] = dict(
        compression=compression, use_dictionary=dictionary, data_page_version=version,
        data_page_size=page, write_batch_size=batch, dictionary_pagesize_limit=dictionary_limit,
    )  # fmt: skip
    table = pa.table({"image": _column(values, struct, null_structs)})
    pq.write_table(table, path, row_group_size=group, **options)
    metadata = pq.ParquetFile(path).metadata
    assert parquetcolumn.why_not(metadata, 0) is None
    for g in range(metadata.num_row_groups):
        assert _ours(path, g) == _pyarrows(path, g, struct)


def _images_file(path: Path, rows: int, size: int, group: int, **options: Any) -> list[bytes]:
    images = [image_bytes(("png", "jpeg")[i % 2], size + i, i) for i in range(rows)]
    column = pa.array([{"bytes": d, "path": f"{i}.png"} for i, d in enumerate(images)], type=IMAGE)
    pq.write_table(pa.table({"image": column}), path, row_group_size=group, **options)
    return images


def test_a_one_page_row_group_is_read_holding_about_one_image(tmp_path: Path) -> None:
    source = tmp_path / "one-page.parquet"
    images = _images_file(source, 80, 50_000, 80)  # pyarrow's defaults: one 4 MB dictionary page
    metadata = pq.ParquetFile(source).metadata
    chunk = parquetcolumn.chunk_of(metadata, 0, 0)
    fd = os.open(source, os.O_RDONLY)
    tracemalloc.start()
    try:
        seen = [len(v) if isinstance(v, bytes) else -1 for v in parquetcolumn.values(fd, chunk)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        os.close(fd)
    assert seen == [len(i) for i in images]
    assert peak < 1_200_000  # pieces of the chunk, the Snappy window, an image: not the page


def test_what_is_not_streamed_is_read_by_pyarrow_and_validate_says_why(tmp_path: Path) -> None:
    source = tmp_path / "delta.parquet"
    images = _images_file(
        source,
        6,
        900,
        3,
        use_dictionary=False,
        column_encoding={"image.bytes": "DELTA_LENGTH_BYTE_ARRAY"},
    )
    stats = WalkStats()
    items = [r for r in read_manifest(source, walk=stats) if isinstance(r, Item)]
    assert [parquetcache.row_bytes(source, i.member) for i in items if i.member] == images
    assert stats.notes == [
        f"{source}: image column 'image' read by pyarrow: row group 0 uses the "
        "DELTA_LENGTH_BYTE_ARRAY encoding"
    ]


def _group(source: Path) -> Values:
    pf = parquetfile.open_file(str(source), "")
    lay = parquetfile.layout(pf, "")
    fd = os.open(source, os.O_RDONLY)
    try:
        return [v for _, batch in parquetfile.group_batches(pf, lay, 0, fd) for v in batch]
    finally:
        os.close(fd)


def test_a_compressible_snappy_page_is_decompressed_whole_up_to_a_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "bitmaps.parquet"
    rows = [image_bytes("png", 200, i)[:60] + bytes(5_000) for i in range(10)]  # BMP-like
    table = pa.table({"image": pa.array(rows, type=pa.binary())})
    pq.write_table(table, source, use_dictionary=False)  # one plain page of 50 KB, 10 images
    decoded: list[int] = []
    real = snappystream.SnappyReader

    def counted(source: Any) -> Any:
        decoded.append(1)
        return real(source)

    monkeypatch.setattr(parquetpieces, "SnappyReader", counted)
    assert _ours(source, 0) == rows and not decoded  # pyarrow's native snappy: not ours
    monkeypatch.setattr(parquetpieces, "HELD", 1_000)  # the page is over the budget:
    with pytest.raises(Unstreamable, match=r"a compressible snappy page of 0\.0 MiB"):
        _ours(source, 0)
    assert _group(source) == rows  # pyarrow reads the row group


def test_a_row_group_the_stream_cannot_finish_is_finished_by_pyarrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "reversed.parquet"
    images = [image_bytes("png", 700 + i, i) for i in range(8)]
    rows = images + images[::-1]  # each entry used again after all the others
    pq.write_table(pa.table({"image": pa.array(rows, type=pa.binary())}), source)
    monkeypatch.setattr(parquetcolumn, "DICTIONARY_BUDGET", 0)  # nothing can be kept...
    monkeypatch.setattr(parquetcolumn, "RESTARTS", 2)  # ...nor read again more than twice
    with pytest.raises(Unstreamable):
        _ours(source, 0)
    assert _group(source) == rows


def test_a_damaged_page_is_its_rows_problem_and_the_other_row_groups_go_on(tmp_path: Path) -> None:
    source = tmp_path / "damaged.parquet"
    _images_file(source, 9, 1_000, 3, use_dictionary=False)
    metadata = pq.ParquetFile(source).metadata
    at = metadata.row_group(1).column(0).data_page_offset
    with open(source, "r+b") as fh:  # row group 1's first page header: not Thrift
        fh.seek(at)
        fh.write(b"\x0f" * 8)
    found = list(read_manifest(source))
    assert len(found) == 9
    assert all(isinstance(r, Item) for r in found[:3] + found[6:])
    reasons = [r.reason for r in found[3:6] if isinstance(r, ManifestError)]
    assert reasons[0].startswith("row 3 cannot be read: row group 1 is damaged (a bad page header")
    assert reasons[0].endswith(f"{source}#row-3")
    assert reasons[1:] == [
        f"row {n} not read: row group 1 is damaged from row 3 on: {source}#row-{n}" for n in (4, 5)
    ]


def test_snappy_streamed_in_small_reads_is_the_block(tmp_path: Path) -> None:
    data = b"".join(image_bytes("png", 3_000, i)[:100] * 30 for i in range(60)) + bytes(200_000)
    block = pa.compress(data, codec="snappy", asbytes=True)
    pieces = iter(block[i : i + 7] for i in range(0, len(block), 7))
    reader = SnappyReader(Pieces(lambda n: next(pieces, b"")))
    out = b"".join(iter(lambda: reader.read(5_001), b""))
    assert reader.total == len(data) and out == data


def _image_like(rng: random.Random, size: int) -> bytes:
    """Mostly incompressible bytes with a few repeats from up to 40 KB back (Snappy copies
    across the reader's pieces) and a short run (an overlapping copy)."""
    data = bytearray(rng.randbytes(size))
    for _ in range(size // 20_000):
        at, back = rng.randrange(size), rng.randrange(1, 40_000)
        if back <= at:
            data[at : at + 64] = data[at - back : at - back + 64]
    at = rng.randrange(size + 1)
    data[at : at + 300] = bytes(300)
    return bytes(data[:size])


@pytest.mark.parametrize("dictionary", [True, False])
def test_large_mostly_incompressible_rows_are_read_as_pyarrow_reads_them(
    tmp_path: Path, dictionary: bool
) -> None:
    rng = random.Random(15)
    sizes = [70_000, 65_536, 3, 200_000, 16_384, 16_383, 0, 131_072, 90_001, 5_000]
    images = [_image_like(rng, n) for n in sizes]
    rows: Values = [None if n == 0 else image for n, image in zip(sizes, images, strict=True)]
    source = tmp_path / "large.parquet"
    pq.write_table(
        pa.table({"image": pa.array(rows, type=pa.binary())}),
        source,
        use_dictionary=dictionary,
        data_page_size=150_000,
    )
    assert _ours(source, 0) == rows
    block = pa.compress(b"".join(images), codec="snappy", asbytes=True)
    pieces = iter(block[i : i + 50_000] for i in range(0, len(block), 50_000))
    reader = SnappyReader(Pieces(lambda n: next(pieces, b"")))
    assert [reader.read(len(image)) for image in images] == images


def _literal(data: bytes) -> bytes:
    return bytes([(len(data) - 1) << 2]) + data


def test_a_snappy_stream_that_overruns_or_reaches_too_far_is_said_so() -> None:
    def reader(block: bytes) -> SnappyReader:
        pieces = iter([block])
        return SnappyReader(Pieces(lambda n: next(pieces, b"")))

    with pytest.raises(SnappyError, match="runs past the block's length"):
        reader(b"\x03" + _literal(b"abcd")).read(10)  # 3 bytes said, 4 given
    with pytest.raises(SnappyError, match="ends in the middle of a literal"):
        reader(b"\x08" + _literal(b"abcdefgh")[:5]).read(10)
    with pytest.raises(SnappyError, match="ends in the middle of an element"):
        reader(b"\x08" + _literal(b"abcd") + bytes([(4 - 1) << 2 | 3, 4, 0])).read(10)
    with pytest.raises(SnappyError, match="a copy from offset 9 of 4 bytes"):
        reader(b"\x08" + _literal(b"abcd") + bytes([(4 - 1) << 2 | 2, 9, 0])).read(10)
    far = WINDOW * 8  # a copy from further back than the window keeps: valid, not streamed
    literal = bytes([63 << 2]) + (far - 1).to_bytes(4, "little")
    copy = bytes([(4 - 1) << 2 | 3])
    size = 2 * far + 4
    head = bytes([0x80 | size & 0x7F, 0x80 | size >> 7 & 0x7F, size >> 14])
    stream = reader(
        head + literal + bytes(far) + literal + b"\x01" * far + copy + (far).to_bytes(4, "little")
    )
    assert stream.read(far) == bytes(far) and stream.read(far) == b"\x01" * far
    assert stream.read(4) == b"\x01" * 4  # the last literal is kept whole: `far` back is in it
    stream = reader(
        head
        + literal
        + bytes(far)
        + literal
        + b"\x01" * far
        + copy
        + (2 * far).to_bytes(4, "little")
    )
    assert stream.read(far) == bytes(far) and stream.read(far) == b"\x01" * far
    with pytest.raises(TooFar):  # the first literal is past the window: not kept
        stream.read(4)


def test_a_cut_image_in_a_large_row_is_found_as_in_a_tar_member(tmp_path: Path) -> None:
    source = tmp_path / "cut.parquet"
    whole = image_bytes("png", 300_000, 1)  # past the read-ahead: validation reads head and tail
    table = pa.table({"image": pa.array([whole, whole[:-5_000]], type=pa.binary())})
    pq.write_table(table, source)
    limits = Limits(frozenset({ImageType.PNG}), None)
    results = [check(i, limits) for i in read_manifest(source) if isinstance(i, Item)]
    assert not isinstance(results[0], ManifestError)
    assert isinstance(results[1], ManifestError) and results[1].reason == (
        f"truncated PNG (no IEND chunk at its end: the file was cut short): {source}#row-1"
    )


def test_a_dictionary_encoded_caption_column_gives_the_captions(tmp_path: Path) -> None:
    source = tmp_path / "categories.parquet"
    images = [image_bytes("png", 900, i) for i in range(3)]
    text = pa.array(["a cat", "a dog", "a cat"]).dictionary_encode()  # pandas' category dtype
    pq.write_table(pa.table({"image": pa.array(images, pa.binary()), "text": text}), source)
    assert pq.ParquetFile(source).schema_arrow.field("text").type.value_type == pa.string()
    items = [r for r in read_manifest(source) if isinstance(r, Item)]
    assert [(i.caption, i.caption_from) for i in items] == [
        ("a cat", "column 'text'"),
        ("a dog", "column 'text'"),
        ("a cat", "column 'text'"),
    ]


def test_a_damaged_caption_column_is_its_rows_problem_too(tmp_path: Path) -> None:
    source = tmp_path / "captions.parquet"
    images = [image_bytes("png", 900, i) for i in range(6)]
    table = pa.table({"image": pa.array(images, pa.binary()), "text": [f"c{i}" for i in range(6)]})
    pq.write_table(table, source, row_group_size=3, use_dictionary=False, compression="none")
    at = pq.ParquetFile(source).metadata.row_group(0).column(1).data_page_offset
    with open(source, "r+b") as fh:  # the captions' page of row group 0: pyarrow reads them
        fh.seek(at)
        fh.write(b"\x0f" * 8)
    found = list(read_manifest(source))
    assert [type(r) for r in found] == [ManifestError] * 3 + [Item] * 3
    first = found[0]
    assert isinstance(first, ManifestError)
    assert first.reason.startswith("row 0 cannot be read: row group 0 is damaged (pyarrow: ")
    assert [r.line for r in found] == [1, 2, 3, 4, 5, 6]
