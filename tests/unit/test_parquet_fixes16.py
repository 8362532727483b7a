"""Newcomer 16's Parquet defects, each failing on the code before its fix: a string column
holding bytes that are not UTF-8 is that row's problem, not a traceback that stops the run; a
binary caption column is the caption, decoded as UTF-8, not silently "no caption"."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ingest
from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import WalkStats, read_manifest
from tests.images import image_bytes

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def strings(values: list[bytes]) -> pa.Array:
    """A string array over `values` as they are: pyarrow checks no UTF-8 this way."""
    offsets = [0]
    for value in values:
        offsets.append(offsets[-1] + len(value))
    buffers = [None, pa.array(offsets, pa.int32()).buffers()[1], pa.py_buffer(b"".join(values))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers)


def test_a_caption_that_is_not_utf8_is_its_rows_problem_and_the_other_rows_go_on(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    bad = folder / "a.parquet"
    images = [image_bytes("png", 900, i) for i in range(3)]
    texts = strings([b"one", b"caf\xe9 au lait", b"three"])
    pq.write_table(pa.table({"image": pa.array(images), "text": texts}), bad)
    pq.write_table(
        pa.table({"image": pa.array([image_bytes("png", 900, 8)])}), folder / "b.parquet"
    )
    found = list(read_manifest(bad))
    assert [type(r) for r in found] == [Item, ManifestError, Item]
    problem = found[1]
    assert isinstance(problem, ManifestError)
    assert problem.reason == (
        f"row 1: the caption (column 'text') is not UTF-8 (byte 3 is 0xe9): {bad}#row-1"
    )
    assert [r.caption for r in found if isinstance(r, Item)] == ["one", "three"]
    walked = list(read_manifest(folder))  # the good file beside it is read
    assert [r.key for r in walked if isinstance(r, Item)] == [
        "a.parquet#row-0",
        "a.parquet#row-2",
        "b.parquet#row-0",
    ]
    result = ingest.upload_sync(folder, provider="novita", sim=True)
    assert (result.done, result.rejected) == (3, 1)


def test_a_struct_path_or_metadata_value_that_is_not_utf8_is_named_too(tmp_path: Path) -> None:
    source = tmp_path / "s.parquet"
    images = pa.array([image_bytes("png", 900, i) for i in range(3)])
    paths = strings([b"a.png", b"b.png", b"\xffc.png"])
    image = pa.StructArray.from_arrays([images, paths], fields=list(IMAGE))
    table = pa.table({"image": image, "id": strings([b"x", b"y\xc3", b"z"])})
    pq.write_table(table, source)
    reasons = [r.reason for r in read_manifest(source) if isinstance(r, ManifestError)]
    assert reasons == [
        f"row 1: the value in column 'id' is not UTF-8 (byte 1 is 0xc3): {source}#row-1",
        f"row 2: the path (column 'image.path') is not UTF-8 (byte 0 is 0xff): {source}#row-2",
    ]


@pytest.mark.parametrize("dictionary", [False, True], ids=["binary", "dictionary"])
def test_a_binary_caption_column_is_the_caption_decoded_as_utf8(
    tmp_path: Path, dictionary: bool
) -> None:
    source = tmp_path / "b.parquet"
    texts = pa.array(["é one".encode(), b"", b"bad \xff", None], pa.binary())
    captions = texts.dictionary_encode() if dictionary else texts
    images = pa.array([image_bytes("png", 900, i) for i in range(4)])
    pq.write_table(pa.table({"image": images, "caption": captions}), source)
    stats = WalkStats()
    found = list(read_manifest(source, walk=stats))
    assert [r.caption if isinstance(r, Item) else r.reason for r in found] == [
        "é one",
        None,
        f"row 2: the caption (column 'caption') is not UTF-8 (byte 4 is 0xff): {source}#row-2",
        None,
    ]
    assert stats.captions.describe() == "captions: 1 from column 'caption', 2 without a caption"
