"""Parquet manifests (issue 15 part 1): one item per row of the image column, in the layout the
Hugging Face `datasets` Image feature writes (a ``{bytes, path}`` struct) or plain binary, read
by row group, with the ``text`` / ``caption`` column as caption and plain columns as metadata."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ingest
from ingest.api.wiring import sim_settings
from ingest.errors import ManifestError
from ingest.item import Item, Member, Source
from ingest.manifest import WalkStats, count_entries, read_manifest
from ingest.manifest.folder import Captions
from ingest.manifest.packed import parquet, parquetcache, parquetfile
from ingest.prefetch import Prefetch
from ingest.sniff import ImageType
from ingest.validate import Limits, check
from tests.images import image_bytes
from tests.results import journal_of

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets.Image's storage


def hf_parquet(path: Path, rows: int, *, group: int = 3) -> list[bytes]:
    """A file as `datasets` writes an image dataset: image structs, a text column, a label."""
    images = [image_bytes(("png", "jpeg", "webp")[i % 3], 1_500 + i, i) for i in range(rows)]
    table = pa.table(
        {
            "image": pa.array(
                [{"bytes": data, "path": f"img_{i}.png"} for i, data in enumerate(images)],
                type=IMAGE,
            ),
            "text": [f"caption {i}" if i % 2 == 0 else None for i in range(rows)],
            "label": list(range(rows)),
            "embedding": [[0.5, 0.25]] * rows,  # not a plain value: not metadata
        }
    )
    pq.write_table(table, path, row_group_size=group)
    return images


def test_rows_become_items_read_by_row_group(tmp_path: Path) -> None:
    source = tmp_path / "train-00000.parquet"
    hf_parquet(source, 7)
    stats = WalkStats()
    found = list(read_manifest(source, walk=stats))
    assert count_entries(source) == len(found) == 7
    items = [r for r in found if isinstance(r, Item)]
    first = items[0]
    assert (first.key, first.display_name, first.caption, first.metadata) == (
        "train-00000.parquet#row-0",
        "img_0.png",
        "caption 0",
        {"label": 0},
    )
    assert first.member is not None and first.member.row == (0, 0)
    assert items[4].member is not None and items[4].member.row == (1, 1)  # groups of 3
    assert items[1].caption is None and items[1].caption_from is None
    assert stats.captions == Captions(metadata=4, none=3, files=("column 'text'",))
    assert stats.captions.describe() == "captions: 4 from column 'text', 3 without a caption"


def test_a_parquet_file_uploads_every_row_once_with_its_caption(tmp_path: Path) -> None:
    source = tmp_path / "data.parquet"
    images = hf_parquet(source, 5, group=2)
    settings = sim_settings(store_dir=tmp_path / "store")
    result = ingest.upload_sync(source, provider="novita", sim=settings, put_concurrency=2)
    assert result.complete and result.done == 5
    stored = sorted(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (tmp_path / "store").rglob("*")
        if p.is_file()
    )
    assert stored == sorted(hashlib.sha256(data).hexdigest() for data in images)
    rows = {r["key"]: r.get("caption") for r in ingest.export(journal_of(result))}
    assert rows["data.parquet#row-2"] == "caption 2" and rows["data.parquet#row-3"] is None
    again = ingest.upload_sync(source, provider="novita", sim=settings)
    assert again.complete and again.this_run.skipped == 5


def test_plain_binary_columns_and_rows_without_bytes(tmp_path: Path) -> None:
    source = tmp_path / "raw.parquet"
    good = image_bytes("png", 800, 1)
    table = pa.table(
        {
            "id": ["a", "b", "c"],
            "picture": pa.array([good, None, b"plain text, not an image"], type=pa.binary()),
            "caption": ["one", "two", "three"],
        }
    )
    pq.write_table(table, source)
    found = list(read_manifest(source))
    assert isinstance(found[0], Item) and found[0].metadata == {"id": "a"}
    assert isinstance(found[1], ManifestError)
    assert found[1].reason == f"row 1 holds no image bytes: {source}#row-1"
    result = ingest.upload_sync(source, provider="novita", sim=True)
    assert (result.done, result.rejected) == (1, 2)
    reasons = sorted(f.reason for f in ingest.failures(journal_of(result)))
    assert reasons[0].startswith("not an image (content looks like text") and reasons[0].endswith(
        f"{source}#row-2"
    )


def test_a_parquet_file_without_an_image_column_is_refused_at_once(tmp_path: Path) -> None:
    source = tmp_path / "meta.parquet"
    pq.write_table(pa.table({"file_name": ["a.png"], "text": ["x"]}), source)
    with pytest.raises(ManifestError, match=r"no image column .*; columns: file_name, text"):
        read_manifest(source)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 but nothing else")
    with pytest.raises(ManifestError, match="not a readable Parquet file"):
        read_manifest(broken)


def test_without_pyarrow_a_parquet_manifest_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "data.parquet"
    hf_parquet(source, 1)
    monkeypatch.setattr(parquetfile, "_pq", lambda: None)  # as if `import pyarrow` failed
    with pytest.raises(
        ManifestError, match=r"needs pyarrow: pip install '\.\[parquet\]' in ingest's checkout"
    ):
        read_manifest(source)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of about 4 rows (the images are ~1.5 KB) and a cache of about 3 batches."""
    monkeypatch.setattr(parquetfile, "BATCH_BYTES", 7_000)
    monkeypatch.setattr(parquetcache, "CACHE_BYTES", 20_000)
    parquetcache.clear()


@pytest.mark.usefixtures("small_batches")
def test_rows_are_read_in_batches_from_a_budget_and_the_cache_stays_bounded(
    tmp_path: Path,
) -> None:
    source = tmp_path / "big-groups.parquet"
    images = hf_parquet(source, 40, group=20)
    pf = parquetfile.open_file(str(source), str(source))
    assert parquetfile.batch_rows(pf, 0, parquetfile.layout(pf, "").leaf) == 4
    items = []
    for item in read_manifest(source):
        assert isinstance(item, Item) and item.member is not None
        items.append(item)
        assert parquet.row_bytes(source, item.member) == images[len(items) - 1]  # as validated
    assert [i.member.row for i in items[18:22] if i.member] == [(0, 18), (0, 19), (1, 0), (1, 1)]
    assert items[21].key == "big-groups.parquet#row-21"
    assert len(parquetcache._batches) == 3  # of 10 batches read: never a row group, let alone two
    assert not parquetcache._cursors  # each row was in the cache when read


@pytest.mark.usefixtures("small_batches")
def test_a_row_no_longer_cached_is_read_again_by_a_cursor_moving_forward(tmp_path: Path) -> None:
    source = tmp_path / "again.parquet"
    images = hf_parquet(source, 40, group=20)
    items = [i for i in read_manifest(source) if isinstance(i, Item)]
    made = []
    real = parquetcache._Cursor

    def counted(
        group: int, batches: Iterator[tuple[int, Any]], fd: int, wanted: int
    ) -> parquetcache._Cursor:
        made.append(group)
        return real(group, batches, fd, wanted=wanted)

    parquetcache.clear()  # as if the reader had moved far ahead of the uploads
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parquetcache, "_Cursor", counted)
        # Uploads as they come: in file order but jittered (9 before 4-8), a retry of a
        # cached row (17), of one long gone (1), then the next row group.
        for index in [2, 3, 9, 5, 4, 6, 7, 8, *range(10, 20), 17, 1, *range(20, 24)]:
            member = items[index].member
            assert member is not None
            assert parquet.row_bytes(source, member) == images[index]
    # One cursor for group 0 read forward (keeping 4-8 as it passed them for 9), one more for
    # the retry of row 1, one for group 1; the cursors' cache stayed in its bytes.
    assert made == [0, 0, 1]
    assert 0 < parquetcache._totals[0] <= 20_000
    rewritten = tmp_path / "again.parquet"
    hf_parquet(rewritten, 3, group=3)
    member = items[30].member
    assert member is not None
    with pytest.raises(OSError, match=r"the Parquet file changed: no row 10 in group 1"):
        parquet.row_bytes(source, member)


@pytest.mark.usefixtures("small_batches")
def test_read_ahead_bytes_are_the_cached_rows_not_a_second_copy(tmp_path: Path) -> None:
    source = tmp_path / "shared.parquet"
    images = hf_parquet(source, 12, group=6)
    limits = Limits(frozenset({ImageType.PNG, ImageType.JPEG, ImageType.WEBP}), None)
    for index, item in enumerate(i for i in read_manifest(source) if isinstance(i, Item)):
        checked = check(item, limits, prefetch=Prefetch())
        assert isinstance(checked, Source) and checked.body == images[index]
        assert item.member is not None and parquet.row_bytes(source, item.member) is checked.body
    assert all(isinstance(r, list) for r in parquetcache._batches.values())  # no Arrow buffers


def test_reading_a_parquet_file_imports_only_pyarrows_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "one.parquet"
    hf_parquet(source, 2)
    for module in ("pyarrow.parquet", "pyarrow.fs"):  # imported, they would fail (ImportError)
        monkeypatch.setitem(sys.modules, module, None)
    rows = list(read_manifest(source))  # not pyarrow.fs and its cloud bindings: ~6 MiB
    last = rows[1]
    assert len(rows) == 2 and isinstance(last, Item) and last.member is not None
    assert len(parquet.row_bytes(source, last.member)) == 1_501


@pytest.mark.usefixtures("small_batches")
def test_rows_too_large_to_be_read_ahead_get_the_larger_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquetcache, "READ_AHEAD_MAX", 1_000)  # the ~1.5 KB images are "large"
    monkeypatch.setattr(parquetcache, "LARGE_CACHE_BYTES", 50_000)
    source = tmp_path / "large.parquet"
    hf_parquet(source, 40, group=20)
    assert sum(1 for r in read_manifest(source) if isinstance(r, Item)) == 40
    assert 20_000 < parquetcache._totals[0] <= 50_000  # past CACHE_BYTES: uploads read from here


def test_a_row_not_read_ahead_is_sent_as_its_bytes_not_copied_into_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import storage

    sent: list[object] = []
    real: Any = storage._send

    async def spy(*args: Any, **kwargs: Any) -> None:
        *head, body = args

        async def seen() -> Any:
            data = await body()
            sent.append(data)
            return data

        await real(*head, seen, **kwargs)

    monkeypatch.setattr(storage, "_send", spy)
    # no row read ahead (the images are ~1.5 KB): every upload reads its row, as a 1 MiB one does
    monkeypatch.setattr("ingest.engine.core.Prefetch", lambda budget: Prefetch(budget, 100))
    source = tmp_path / "data.parquet"
    images = hf_parquet(source, 4, group=2)
    settings = sim_settings(store_dir=tmp_path / "store")
    result = ingest.upload_sync(source, provider="novita", sim=settings)
    assert result.complete and result.done == 4
    assert all(isinstance(data, bytes) for data in sent)  # was a generator of 256 KiB copies
    assert sorted(sent) == sorted(images)  # type: ignore[type-var]


def test_a_triage_batch_ends_once_its_parquet_rows_hold_held_bytes(tmp_path: Path) -> None:
    from ingest.manifest.packed import held

    def row(n: int, length: int) -> Item:
        return Item(f"f#row-{n}", tmp_path, n, member=Member(f"row-{n}", 0, length, row=(0, n)))

    files = [Item(f"a{n}.png", tmp_path / f"a{n}.png", n) for n in range(3)]
    rows = iter([row(n, held.HELD_BYTES // 2) for n in range(5)])
    assert [i.key for i in held.triage_batch(rows, 128)] == ["f#row-0", "f#row-1"]
    assert next(rows).key == "f#row-2"  # nothing past the row that reached the bytes was read
    assert len(held.triage_batch(iter(files * 50), 128)) == 128  # files: their count alone
    one = held.triage_batch(iter([row(0, 10 * held.HELD_BYTES), row(1, 1)]), 128)
    assert [i.key for i in one] == ["f#row-0"]  # at least one entry, however large
    assert held.triage_batch(iter([]), 128) == []
    # The cache keeps a batch's rows with the reader's batches either side of them.
    assert parquetcache.CACHE_BYTES >= held.HELD_BYTES + 2 * parquetfile.BATCH_BYTES


@pytest.mark.usefixtures("small_batches")
def test_validation_finds_every_row_in_the_cache_no_row_group_read_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.manifest.packed import held

    monkeypatch.setattr(held, "HELD_BYTES", 20_000 - 2 * 7_000)  # the cache's, scaled down
    source = tmp_path / "window.parquet"
    images = hf_parquet(source, 90, group=30)
    made: list[int] = []
    real = parquetcache._new_cursor

    def counted(path: Path, group: int, row: int) -> Any:
        made.append(group)
        return real(path, group, row)

    monkeypatch.setattr(parquetcache, "_new_cursor", counted)
    settings = sim_settings(store_dir=tmp_path / "store")
    # Triage batches of 128 entries held ~130 KB of rows here, past the cache's 20 KB: the
    # rows it had dropped were read again, each by a cursor from its row group's start.
    result = ingest.upload_sync(source, provider="novita", sim=settings, put_concurrency=2)
    assert result.complete and result.done == 90
    assert made == []
    stored = sorted(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (tmp_path / "store").rglob("*")
        if p.is_file()
    )
    assert stored == sorted(hashlib.sha256(i).hexdigest() for i in images)
