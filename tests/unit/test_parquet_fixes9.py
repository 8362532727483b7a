"""Session 9's Parquet fixes (issue 15), each failing on the code before it: a damaged footer is
one printable line, a row's problem in a folder is named by its key, and the value cap is the
reader's bound, not a provider's limit (each provider's own limit refuses what it must)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.capabilities import MODELHUNTER_IMAGE_BYTES
from ingest.cli.wording import folder_reason, problem_where
from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import read_manifest
from ingest.manifest.packed import parquetcolumn
from ingest.sniff import ImageType
from ingest.validate import Limits, check
from tests.images import image_bytes

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def test_a_damaged_footer_is_one_printable_line(tmp_path: Path) -> None:
    source = tmp_path / "footer.parquet"
    pq.write_table(pa.table({"image": pa.array([image_bytes("png", 900, 0)])}), source)
    data = bytearray(source.read_bytes())
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    for at in range(footer + 5, footer + 40):  # pyarrow: "don't know what type: \x0f\n"
        data[at] ^= 0x5A
    source.write_bytes(data)
    with pytest.raises(ManifestError) as raised:
        list(read_manifest(source))
    reason = raised.value.reason
    assert reason.startswith("not a readable Parquet file (") and reason.isprintable()


def test_a_rows_problem_in_a_folder_is_named_by_its_key_not_the_folder(tmp_path: Path) -> None:
    rows = [{"bytes": image_bytes("png", 900, 0), "path": "a.png"}, {"bytes": None, "path": "b"}]
    pq.write_table(pa.table({"image": pa.array(rows, type=IMAGE)}), tmp_path / "t.parquet")
    found = list(read_manifest(tmp_path))
    problem = found[1]
    assert isinstance(found[0], Item) and isinstance(problem, ManifestError)
    assert problem.key == "t.parquet#row-1"
    where = problem_where(problem.line, problem.key, problem.reason, problem.source, folder=True)
    said = f"{where}: {folder_reason(problem.reason, problem.key)}"
    assert said == (  # and how to get the bytes in (datasets' to_parquet writes such rows)
        "t.parquet#row-1: row 1 holds no image bytes (only the path 'b': datasets' to_parquet "
        "keeps images loaded from files as paths; embed them first with "
        "datasets.table.embed_table_storage, or list the files)"
    )


def test_a_row_over_modelhunters_limit_is_read_and_refused_by_the_providers_limit_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parquetcolumn.ROW_BOUND > MODELHUNTER_IMAGE_BYTES  # no provider's documented limit
    monkeypatch.setattr(parquetcolumn, "ROW_BOUND", 2_000_000)  # a small bound: a fast test
    big = image_bytes("png", 1_500_000, 1)  # over a 1 MB limit, under the reader's bound
    huge = image_bytes("png", 2_500_000, 2)  # over the bound: read past
    source = tmp_path / "big.parquet"
    pq.write_table(pa.table({"image": pa.array([big, huge])}), source, compression="none")
    found = list(read_manifest(source))
    item, over = found
    assert isinstance(item, Item) and isinstance(over, ManifestError)
    assert "more than ingest reads from a Parquet row (2,000,000 bytes" in over.reason
    unlimited = Limits(frozenset({ImageType.PNG}), None, "novita")
    assert not isinstance(check(item, unlimited), ManifestError)  # a row as large as a file
    limited = check(item, Limits(frozenset({ImageType.PNG}), 1_000_000, "modelhunter"))
    assert isinstance(limited, ManifestError) and limited.reason.startswith("too large")
