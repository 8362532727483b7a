"""The pages of a Parquet file's image column, read from their headers (what pyarrow will hold to
read it), and the note `ingest validate` prints for a file whose pages are large."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.cli.main import main
from ingest.manifest.packed import parquetfile, parquetpages
from ingest.manifest.packed.parquetpages import Page, largest_page
from tests.images import image_bytes

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def images_file(path: Path, rows: int, **options: Any) -> list[bytes]:
    images = [image_bytes(("png", "jpeg")[i % 2], 2_000 + i, i) for i in range(rows)]
    column = pa.array([{"bytes": d, "path": f"{i}.png"} for i, d in enumerate(images)], type=IMAGE)
    pq.write_table(pa.table({"image": column}), path, row_group_size=rows, **options)
    return images


def page_of(path: Path) -> Page | None:
    pf = parquetfile.open_file(str(path), str(path))
    return largest_page(str(path), pf.metadata, parquetfile.layout(pf, "").leaf)


def test_a_group_of_fewer_rows_than_a_write_batch_is_one_dictionary_page(tmp_path: Path) -> None:
    images = images_file(tmp_path / "one.parquet", 12)  # pyarrow's defaults: dictionary on
    page = page_of(tmp_path / "one.parquet")
    assert page is not None and (page.values, page.group, page.dictionary) == (12, 0, True)
    assert sum(map(len, images)) < page.size < sum(map(len, images)) + 12 * 8
    small = tmp_path / "small.parquet"
    images_file(small, 12, use_dictionary=False, write_batch_size=2, data_page_size=1)
    page = page_of(small)
    assert page is not None and (page.values, page.dictionary) == (2, False)  # 6 pages of 2 rows


def test_validate_tells_which_way_a_file_is_read_and_large_pages_only_for_pyarrows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquetpages, "LARGE", 20_000)  # the 12 rows' page is ~24 KB
    streamed, lz4 = tmp_path / "streamed.parquet", tmp_path / "lz4.parquet"
    images_file(streamed, 12)  # pyarrow's defaults: snappy, one dictionary page
    images_file(lz4, 12, compression="lz4")
    assert main(["validate", str(streamed), "--provider", "novita"]) == 0
    out = capsys.readouterr().out
    assert f"{streamed}: image column 'image' streamed page by page (snappy; memory " in out
    assert "MiB" not in out.split("streamed page by page")[1].split("\n")[0]
    assert main(["validate", str(lz4), "--provider", "novita", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["notes"] == [
        f"{lz4}: image column 'image' read by pyarrow: row group 0 uses the LZ4 codec; it "
        "has pages of up to 0.0 MiB (a dictionary page of 12 values in row group 0), which "
        "pyarrow reads and decompresses whole: about 0 MiB more memory than smaller pages "
        "would need"
    ]


def test_a_file_gone_since_it_was_opened_has_no_page_note(tmp_path: Path) -> None:
    source = tmp_path / "gone.parquet"
    images_file(source, 3)
    pf = parquetfile.open_file(str(source), str(source))
    leaf = parquetfile.layout(pf, "").leaf
    source.unlink()  # the reader has its metadata; the page walk finds no file
    assert largest_page(str(source), pf.metadata, leaf) is None
