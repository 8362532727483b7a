"""A Parquet file as a manifest: one item per row of its image column, read in bounded batches.

Owns which column holds the images (`image_column`: one named ``image``, else
the first, that is binary or a ``{bytes, path}`` struct, the layout of the
Hugging Face `datasets` Image feature), which gives the caption (``caption``,
else ``text``, a string column), what else is metadata (the other columns of
plain values: strings, numbers, booleans), each row's key
(``<file name>#row-<n>``, n its 0-based row number in the file: stable while
the file is) and the name a provider sees (the struct's ``path`` when it has
one, else the key's row part with the sniffed type's extension left to the
provider), and how a row's bytes are read again (`row_bytes`).

How it works: needs pyarrow (``pip install 'ingest[parquet]'``). Each row
group is read in record batches (`ParquetFile.iter_batches`, one thread, the
file opened without pre-buffering and read through a 1 MiB buffer) of about
`BATCH_BYTES` of images: the batch's row count is that budget over the image
column's average value size in the row group's metadata (`batch_rows`, the
same for every reader of the file). A row's bytes are not a byte range of
the file (Parquet pages are encoded and compressed), so an item names its
(row group, row), and `row_bytes` finds them in a cache of batches (keyed
by path, size, mtime, row group and the batch's first row) of at most
`CACHE_BYTES` of images (`LARGE_CACHE_BYTES` of rows too large to be read
ahead) and `CACHE_ROWS` rows. A batch's images become
Python bytes once, as it is read (`_rows`), and its Arrow buffers go at
once; `row_bytes` hands out the cached object itself, so a small image's
read-ahead bytes (`Source.body`, `ingest.prefetch`: read by validation right
after the reader yields the row) are the cache's, not a second copy, and
the cache need only bridge the reader and validation, plus the rows read at
upload (those past the read-ahead's budget).
A row the cache no longer holds is read by an upload-side cursor, a second
`iter_batches` over its row group that moves forward as the uploads do
(they come in file order, a little jittered: the batches it passes between
two rows asked for are kept). A row behind the cursor and no longer cached
(a retry, a re-sign long after) starts a new cursor at its row group: read
again, never lost.

Memory: a few batches, whatever the size of the row groups or of the file,
plus what pyarrow holds to decode a page (its pool is not released after a
row group: that cost ~50 us a 64 KiB row in page faults and lowered no
peak): a page is read and decompressed whole, and pyarrow's writer checks a page's size only every 1,024 rows, so a
row group of fewer rows is written as one page (500 rows of 64 KiB: 32 MiB,
held twice while it is decompressed). That part follows the file's layout,
not ingest (`benchmarks/README.md`, Sources).

Invariants: one result per row (a row with no bytes, only a path, is that
row's `ManifestError`), so the count ahead is the file's row count; a file
that is not Parquet, or has no image column, is refused before any row; the
cache keeps at least the two batches last used, however large.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.errors import ManifestError
from ingest.item import Item, Member
from ingest.manifest.folder import WalkStats, no_images
from ingest.manifest.metadata import CAPTION_COLUMNS
from ingest.manifest.packed.parquetpages import largest_page, page_note

INSTALL = "reading Parquet needs pyarrow: pip install 'ingest[parquet]'"
BATCH_BYTES = 2 << 20  # images a record batch holds, about (its rows: `batch_rows`)
CACHE_BYTES = 4 << 20  # images the cache keeps of rows the read-ahead carries (`_remember`)
LARGE_CACHE_BYTES = 16 << 20  # and of larger rows, which uploads read from here
READ_AHEAD_MAX = 256 << 10  # `ingest.prefetch.Prefetch.max_file`: a larger row is not read ahead
CACHE_ROWS = 1024  # and rows: the in-flight window (read batch + 2 x put_concurrency + lookahead)
_BUFFER = 1 << 20  # a column chunk is read through this buffer, page by page
_CURSORS = 2  # files with an upload-side cursor open

Ident = tuple[str, int, int]  # path, size, mtime: a rewritten file is another file
BatchKey = tuple[Ident, int, int]  # the file, the row group, the batch's first row in it
_batches: OrderedDict[BatchKey, Any] = OrderedDict()  # the reader's and the cursors' batches
_cached_bytes = 0  # their images' bytes, at most `CACHE_BYTES` (or two batches)
_cached_rows = 0  # their rows, at most `CACHE_ROWS` (or two batches)
_lock = threading.Lock()  # the cache
_cursors: OrderedDict[Ident, _Cursor] = OrderedDict()
_cursors_lock = threading.Lock()  # one cursor moves at a time (misses are the rare case)


def _pq() -> Any:
    """pyarrow's Parquet reader class, or None without pyarrow.

    `pyarrow._parquet.ParquetReader` is what `pyarrow.parquet.ParquetFile`
    wraps; importing it alone leaves out what `pyarrow.parquet` imports for
    datasets and filesystems (`pyarrow.fs` with its S3, GCS, Azure and HDFS
    bindings): ~6 MiB less RSS and a faster start (`benchmarks/README.md`,
    Sources). It has kept this interface (`open`, `iter_batches` by column
    index, `metadata`, `schema_arrow`, `column_paths`) from pyarrow 14 on.
    """
    try:
        from pyarrow._parquet import ParquetReader
    except ImportError:
        return None
    return ParquetReader


class _File:
    """A Parquet file open to read: its metadata, Arrow schema and record batches."""

    __slots__ = ("_paths", "_reader", "metadata", "num_row_groups", "schema_arrow")

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self.metadata = reader.metadata
        self.schema_arrow = reader.schema_arrow
        self.num_row_groups = int(reader.num_row_groups)
        self._paths: list[list[str]] = reader.column_paths

    def iter_batches(self, size: int, group: int, columns: list[str]) -> Iterator[Any]:
        """Record batches of row group `group` with the top-level `columns` (file order)."""
        wanted = set(columns)
        indices = [i for i, path in enumerate(self._paths) if path[0] in wanted]
        batches: Iterator[Any] = self._reader.iter_batches(
            size, [group], column_indices=indices, use_threads=False
        )
        return batches


def _open(path: str, source: str) -> _File:
    reader = _pq()
    if reader is None:
        raise ManifestError(INSTALL, source=source)
    try:
        opened = reader()
        opened.open(path, pre_buffer=False, buffer_size=_BUFFER)
        return _File(opened)
    except FileNotFoundError:
        raise ManifestError("manifest not found (no such file)", source=source) from None
    except OSError as exc:
        raise ManifestError(f"not a readable Parquet file ({exc})", source=source) from None
    except Exception as exc:  # pyarrow.ArrowInvalid and kin: a damaged or non-Parquet file
        raise ManifestError(f"not a readable Parquet file ({exc})", source=source) from None


def _is_binary(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_binary(kind) or pa.types.is_large_binary(kind))


def image_column(schema: Any) -> tuple[str, bool] | None:
    """(the image column's name, whether it is a {bytes, path} struct), or None."""
    import pyarrow as pa

    def fits(kind: Any) -> bool | None:
        if _is_binary(kind):
            return False
        if pa.types.is_struct(kind):
            index = kind.get_field_index("bytes")
            if index >= 0 and _is_binary(kind.field(index).type):
                return True
        return None

    names = ["image", *(n for n in schema.names if n != "image")]
    for name in names:
        if name not in schema.names:
            continue
        struct = fits(schema.field(name).type)
        if struct is not None:
            return name, struct
    return None


def _plain(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
    )


def probe_parquet(path: Path, source: str) -> None:
    """Raise `ManifestError` now if `path` cannot be read as a Parquet manifest."""
    _layout(_open(str(path), source), source)


def _layout(pf: _File, source: str) -> tuple[str, bool, str | None, list[str]]:
    import pyarrow as pa

    schema = pf.schema_arrow
    found = image_column(schema)
    if found is None:
        raise ManifestError(
            "no image column (a binary column, or a {bytes, path} struct as datasets' Image "
            f"feature writes); columns: {', '.join(schema.names)}",
            source=source,
        )
    caption = next(
        (
            c
            for c in CAPTION_COLUMNS
            if c in schema.names
            and (
                pa.types.is_string(schema.field(c).type)
                or pa.types.is_large_string(schema.field(c).type)
            )
        ),
        None,
    )
    metadata = [
        n for n in schema.names if n not in (found[0], caption) and _plain(schema.field(n).type)
    ]
    return found[0], found[1], caption, metadata


def count_parquet(path: Path, *, at_least: int = 1) -> int:
    pf = _open(str(path), str(path))
    return max(int(pf.metadata.num_rows), at_least)


def _leaf(pf: _File, column: str, struct: bool) -> int:
    """The index of the image bytes' leaf column in the file's metadata."""
    want = f"{column}.bytes" if struct else column
    schema = pf.metadata.schema
    return next(i for i in range(len(schema)) if schema.column(i).path == want)


def batch_rows(pf: _File, group: int, leaf: int) -> int:
    """Rows a batch of row group `group` holds: `BATCH_BYTES` over its average image size."""
    meta = pf.metadata.row_group(group)
    rows = int(meta.num_rows)
    average = max(1, int(meta.column(leaf).total_uncompressed_size) // max(rows, 1))
    return max(1, min(rows, BATCH_BYTES // average))


Rows = list[bytes | None]  # a batch's image bytes, one per row (None: a row without)


def _rows(column: Any, struct: bool) -> tuple[Rows, list[str | None] | None]:
    """(image bytes, their struct paths or None) of a batch's image column, as Python values:
    made once a batch, so the read-ahead's `Source.body` is the cached object, not a copy."""
    if not struct:
        return column.to_pylist(), None
    names = column.field("path").to_pylist() if column.type.get_field_index("path") >= 0 else None
    return column.field("bytes").to_pylist(), names


def _batches_of(pf: _File, group: int, columns: list[str], leaf: int) -> Iterator[tuple[int, Any]]:
    """(first row in the group, record batch) of row group `group`, in order."""
    first = 0
    size = batch_rows(pf, group, leaf)
    for batch in pf.iter_batches(size, group, columns):
        yield first, batch
        first += batch.num_rows


def read_parquet(
    path: Path, source: str, label: str, stats: WalkStats | None = None, *, inside: bool = False
) -> Generator[Item | ManifestError, None, None]:
    """The rows of the Parquet file at `path` as items, one record batch at a time (`inside`:
    a file of a folder's walk, which says "no images found" itself)."""
    stats = stats if stats is not None else WalkStats()
    pf = _open(str(path), source)
    column, struct, caption_column, meta_columns = _layout(pf, source)
    leaf = _leaf(pf, column, struct)
    st = os.stat(path)
    ident = (str(path), st.st_size, st.st_mtime_ns)
    note = page_note(largest_page(str(path), pf.metadata, leaf), str(path))
    if note is not None:
        stats.notes.append(note)
    counts = stats.caption_counts
    if caption_column and f"column {caption_column!r}" not in stats.tables:
        stats.tables.append(f"column {caption_column!r}")
    columns = [c for c in (column, caption_column, *meta_columns) if c]
    number = 0  # the row's number in the file
    for group in range(pf.num_row_groups):
        for first, batch in _batches_of(pf, group, columns, leaf):
            values, names = _rows(batch.column(column), struct)
            _remember((ident, group, first), values)
            captions = batch.column(caption_column).to_pylist() if caption_column else None
            metas = [batch.column(c).to_pylist() for c in meta_columns]
            del batch  # its Arrow buffers: the rows are Python values from here on
            for row, value in enumerate(values):
                stats.found += 1
                name = names[row] if names is not None else None
                if value is None:
                    only = f" (only the path {name!r})" if name else ""
                    yield ManifestError(
                        f"row {number} holds no image bytes{only}: {path}#row-{number}",
                        source=source,
                        line=stats.found,
                    )
                    number += 1
                    continue
                caption = (captions[row] or "").strip() or None if captions else None
                counts[1 if caption else 2] += 1
                metadata = {
                    c: m[row]
                    for c, m in zip(meta_columns, metas, strict=True)
                    if m[row] is not None
                }
                yield Item(
                    key=f"{label}#row-{number}",
                    path=path,
                    line=stats.found,
                    name=os.path.basename(name) if name else None,
                    caption=caption,
                    metadata=metadata or None,
                    caption_from=f"column {caption_column!r}" if caption else None,
                    member=Member(f"row-{number}", 0, len(value), row=(group, first + row)),
                )
                number += 1
            del values, names
    if stats.found == 0 and not inside:
        yield no_images(source, stats.skipped)


def _remember(key: BatchKey, values: Rows) -> None:
    """Cache a batch's images; the oldest go past `CACHE_BYTES` (`LARGE_CACHE_BYTES` for a batch
    of rows too large to be read ahead: each upload reads its row from here, and a miss reads
    the row group again) or `CACHE_ROWS` (the last two always stay)."""
    global _cached_bytes, _cached_rows
    with _lock:
        if key in _batches:
            _batches.move_to_end(key)
            return
        _batches[key] = values
        size = _size(values)
        _cached_bytes += size
        _cached_rows += len(values)
        large = size > READ_AHEAD_MAX * len(values)
        limit = LARGE_CACHE_BYTES if large else CACHE_BYTES
        while (_cached_bytes > limit or _cached_rows > CACHE_ROWS) and len(_batches) > 2:
            gone = _batches.popitem(last=False)[1]
            _cached_bytes -= _size(gone)
            _cached_rows -= len(gone)


def _size(values: Rows) -> int:
    return sum(len(v) for v in values if v is not None)


def _cached(ident: Ident, group: int, row: int) -> tuple[Rows, int] | None:
    """The cached batch holding `row` (of row group `group`) and its index there, or None."""
    with _lock:
        for key, values in reversed(_batches.items()):
            file, at, first = key
            if file == ident and at == group and first <= row < first + len(values):
                _batches.move_to_end(key)
                return values, row - first
    return None


@dataclass(slots=True)
class _Cursor:
    """An upload-side reader of one row group's image column, moving forward."""

    group: int
    batches: Iterator[tuple[int, Rows]]
    next_row: int = 0  # of the next batch
    wanted: int = 0  # the row last asked for: batches before it are passed over, not kept
    # (a forward move keeps those between two rows asked for: other uploads of the window)


def _from_cursor(path: Path, ident: Ident, group: int, row: int) -> tuple[Rows, int]:
    """`row`'s value read by the file's cursor (a new one if it is past the row or elsewhere)."""
    with _cursors_lock:
        found = _cached(ident, group, row)  # another thread's move may have read it
        if found is not None:
            return found
        cursor = _cursors.get(ident)
        if cursor is None or cursor.group != group or cursor.next_row > row:
            where = str(path)
            pf = _open(where, where)
            column, struct, _, _ = _layout(pf, where)
            if group >= pf.num_row_groups:
                raise IndexError(group)
            batches = _batches_of(pf, group, [column], _leaf(pf, column, struct))
            columns = ((f, _rows(b.column(column), struct)[0]) for f, b in batches)
            cursor = _Cursor(group, columns, wanted=row)
            _cursors[ident] = cursor
            while len(_cursors) > _CURSORS:
                _cursors.popitem(last=False)
        _cursors.move_to_end(ident)
        for first, values in cursor.batches:
            cursor.next_row = first + len(values)
            if cursor.next_row > cursor.wanted:  # passed over: kept if the uploads are there
                _remember((ident, group, first), values)
            if row < cursor.next_row:
                cursor.wanted = row
                return values, row - first
        raise IndexError(row)


def row_bytes(path: Path, member: Member) -> bytes:
    """The image bytes of the Parquet row `member` names (the cached object itself, not a
    copy); `OSError` if they are not there."""
    assert member.row is not None
    group, row = member.row
    where = f"{path}#{member.name}"
    try:
        st = os.stat(path)
        ident = (str(path), st.st_size, st.st_mtime_ns)
        values, index = _cached(ident, group, row) or _from_cursor(path, ident, group, row)
    except (IndexError, ValueError) as exc:
        raise OSError(f"the Parquet file changed: no row {row} in group {group}: {where}") from exc
    except ManifestError as exc:
        raise OSError(f"{exc.reason}: {where}") from None
    data = values[index]
    if data is None:
        raise OSError(f"row holds no image bytes: {where}")
    if len(data) != member.length:
        raise OSError(
            f"the Parquet file changed: row of {len(data)} bytes, not {member.length}: {where}"
        )
    return data
