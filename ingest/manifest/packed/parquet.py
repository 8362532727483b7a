"""A Parquet file as a manifest: one item per row of its image column, its bytes streamed.

Owns each row's item: its key (``<file name>#row-<n>``, n its 0-based row
number in the file: stable while the file is), the name a provider sees
(the struct's ``path`` when it has one, else the key's row part with the
sniffed type's extension left to the provider), its caption and metadata;
what `validate` is told of the file (`path_note`: which way its image bytes
are read and why), and a damaged row group's rows as problems.

How it works: `parquetfile` gives the layout and a row group's image bytes
in batches (streamed by `parquetcolumn` when the footer allows, else by
pyarrow); each batch is cached (`parquetcache.remember`) before its rows are
yielded, so validation's read-ahead and the uploads find them there
(`row_bytes`). The small columns (the struct's path, the caption, the
metadata) come from pyarrow, a record batch of `SMALL_ROWS` rows at a time.

Memory: streamed, about a batch of images plus the cache, whatever the size
of the row groups, pages or file; read by pyarrow, plus about twice the
largest page (`parquetpages`; `benchmarks/README.md`, Sources).

Invariants: one result per row (a row with no bytes, only a path, or with
an image over `parquetcolumn.ROW_BOUND`, this reader's bound, which is never read whole, is that
row's `ManifestError`; so is each row of a row group from where it is
damaged: the first names what is wrong, the rest say they were not read),
so the count ahead is the file's row count, and each problem names its row's
key (``file#row-N``: in a folder, not the folder); a file that is not Parquet, or
has no image column, is refused before any row.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from ingest.errors import ManifestError
from ingest.item import Item, Member
from ingest.manifest.folder import WalkStats, no_images
from ingest.manifest.packed.parquetcache import ident_of, remember, row_bytes
from ingest.manifest.packed.parquetcolumn import Oversized
from ingest.manifest.packed.parquetfile import (
    GroupDamaged,
    Layout,
    ParquetFile,
    group_batches,
    image_column,
    layout,
    open_file,
)
from ingest.manifest.packed.parquetpages import largest_page, page_note
from ingest.manifest.packed.parquetpieces import said
from ingest.manifest.sidecar import not_utf8

# How a row gets only a path: datasets' `Dataset.to_parquet` writes its table as it is
# (src/datasets/io/parquet.py), and an Image column loaded from files holds their paths;
# `push_to_hub` embeds the bytes (`embed_external_files`), through `embed_table_storage`.
PATH_ONLY = (
    ": datasets' to_parquet keeps images loaded from files as paths; embed them first "
    "with datasets.table.embed_table_storage, or list the files"
)

SMALL_ROWS = 4096  # rows of the small columns (path, caption, metadata) read at a time

__all__ = ["count_parquet", "image_column", "probe_parquet", "read_parquet", "row_bytes"]


def probe_parquet(path: Path, source: str) -> None:
    """Raise `ManifestError` now if `path` cannot be read as a Parquet manifest."""
    layout(open_file(str(path), source), source)


def count_parquet(path: Path, *, at_least: int = 1) -> int:
    pf = open_file(str(path), str(path))
    return max(int(pf.metadata.num_rows), at_least)


def path_note(pf: ParquetFile, lay: Layout, where: str) -> str:
    """What `validate` says of how the file's image bytes are read."""
    if lay.streamed:
        codecs = sorted({str(pf.metadata.row_group(g).column(lay.leaf).compression)
                         for g in range(min(pf.num_row_groups, 64))})  # fmt: skip
        return (
            f"{where}: image column {lay.column!r} streamed page by page "
            f"({', '.join(c.lower() for c in codecs) or 'no rows'}; memory about one image)"
        )
    page = page_note(largest_page(where, pf.metadata, lay.leaf))
    return f"{where}: image column {lay.column!r} read by pyarrow: {lay.why}{page}"


class _Small:
    """A row group's small columns (path, caption, metadata), row by row from pyarrow batches."""

    def __init__(self, pf: ParquetFile, lay: Layout, group: int) -> None:
        self._lay, self._group = lay, group
        self._path = False
        columns = [*([lay.caption] if lay.caption else []), *lay.metadata]
        self._binary = lay.caption if lay.caption_bytes else None
        if lay.struct and pf.schema_arrow.field(lay.column).type.get_field_index("path") >= 0:
            self._path = True
            columns.insert(0, f"{lay.column}.path")
        self._batches: Iterator[Any] = (
            pf.iter_batches(SMALL_ROWS, group, columns) if columns else iter(())
        )
        self._columns: dict[str, list[Any]] = {}
        self._bad: dict[int, str] = {}  # a batch's rows with a value that is not UTF-8
        self._at = self._size = 0

    def row(self) -> tuple[str | None, str | None, dict[str, Any] | None, str | None]:
        """The next row's (struct path, caption, metadata, what of it is not UTF-8)."""
        lay = self._lay
        if not self._batches_left():
            return None, None, None, None
        at = self._at
        self._at += 1
        cols = self._columns
        name = cols["\0path"][at] if self._path else None
        caption = cols[lay.caption][at] if lay.caption else None
        meta = {c: cols[c][at] for c in lay.metadata if cols[c][at] is not None}
        problem = self._bad.get(at) if self._bad else None
        return name, (caption or "").strip() or None, meta or None, problem

    def _batches_left(self) -> bool:
        while self._at >= self._size:
            try:
                batch = next(self._batches, None)
            except (OSError, ValueError) as exc:  # pyarrow's errors (ArrowInvalid: ValueError)
                raise GroupDamaged(self._group, f"pyarrow: {said(exc)}") from None
            if batch is None:
                return False
            lay, bad = self._lay, dict[int, str]()
            cols = {  # the struct itself is not read: its path is, below
                n: _texts(batch.column(n), self._what(n), bad, binary=n == self._binary)
                for n in batch.schema.names
                if n != lay.column
            }
            if self._path:
                path = batch.column(lay.column).flatten()[0]
                cols["\0path"] = _texts(path, f"path (column '{lay.column}.path')", bad)
            self._columns, self._bad, self._at, self._size = cols, bad, 0, batch.num_rows
        return True

    def _what(self, column: str) -> str:
        if column == self._lay.caption:
            return f"caption (column {column!r})"
        return f"value in column {column!r}"


def _texts(column: Any, what: str, bad: dict[int, str], *, binary: bool = False) -> list[Any]:
    """A batch's column as Python values (a `binary` one as strings: pyarrow checks its UTF-8
    as it casts). A string that is not UTF-8 (pyarrow reads a string column's bytes
    unchecked) is None, and its row's problem in `bad`; only a batch that holds one is
    decoded again here, a value at a time."""
    import pyarrow as pa

    values: list[Any]
    try:
        values = (column.cast(pa.large_string()) if binary else column).to_pylist()
        return values
    except (UnicodeDecodeError, ValueError):  # ValueError: pyarrow's ArrowInvalid (the cast)
        pass
    values = column.cast(pa.large_binary()).to_pylist()
    for at, data in enumerate(values):
        if data is not None:
            try:
                values[at] = data.decode()
            except UnicodeDecodeError as exc:
                values[at] = None
                bad.setdefault(at, f"{what} {not_utf8(data, exc)}")
    return values


def read_parquet(
    path: Path, source: str, label: str, stats: WalkStats | None = None, *, inside: bool = False
) -> Generator[Item | ManifestError, None, None]:
    """The rows of the Parquet file at `path` as items, one batch at a time (`inside`: a file
    of a folder's walk, which says "no images found" itself)."""
    stats = stats if stats is not None else WalkStats()
    pf = open_file(str(path), source)
    lay = layout(pf, source)
    ident = ident_of(path)
    stats.notes.append(path_note(pf, lay, str(path)))
    counts = stats.caption_counts
    caption_from = f"column {lay.caption!r}" if lay.caption else None
    if caption_from and caption_from not in stats.tables:
        stats.tables.append(caption_from)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    number = 0  # the row's number in the file
    try:
        for group in range(pf.num_row_groups):
            small = _Small(pf, lay, group)
            rows = int(pf.metadata.row_group(group).num_rows)
            done = 0
            try:
                for first, values in group_batches(pf, lay, group, fd):
                    remember((ident, group, first), values)
                    for row, value in enumerate(values, first):
                        name, caption, metadata, unreadable = small.row()
                        stats.found += 1
                        if value is None:
                            only = f" (only the path {name!r}{PATH_ONLY})" if name else ""
                            yield ManifestError(
                                f"row {number} holds no image bytes{only}: {path}#row-{number}",
                                source=source,
                                line=stats.found,
                                key=f"{label}#row-{number}",
                            )
                        elif isinstance(value, Oversized):
                            yield ManifestError(
                                f"row {number} (row group {group}) {_oversized(value)}: "
                                f"{path}#row-{number}",
                                source=source,
                                line=stats.found,
                                key=f"{label}#row-{number}",
                            )
                        elif unreadable is not None:  # rejected, as a tar's caption member
                            yield ManifestError(
                                f"row {number}: the {unreadable}: {path}#row-{number}",
                                source=source,
                                line=stats.found,
                                key=f"{label}#row-{number}",
                            )
                        else:
                            counts[1 if caption else 2] += 1
                            yield Item(
                                key=f"{label}#row-{number}",
                                path=path,
                                line=stats.found,
                                name=os.path.basename(name) if name else None,
                                caption=caption,
                                metadata=metadata,
                                caption_from=caption_from if caption else None,
                                member=Member(f"row-{number}", 0, len(value), row=(group, row)),
                            )
                        number += 1
                        done += 1
                    del values
            except GroupDamaged as exc:
                left = rows - done
                for error in _damaged(
                    path, source, label, stats, (group, number, left), exc.reason
                ):
                    number += 1
                    yield error
    finally:
        os.close(fd)
    if stats.found == 0 and not inside:
        yield no_images(source, stats.skipped)


def _oversized(value: Oversized) -> str:
    return (
        f"holds an image of {value.size:,} bytes, more than ingest reads from a Parquet row "
        f"({value.limit:,} bytes: a row is held whole in memory; as a file or a tar member "
        "it would be streamed); not read"
    )


def _damaged(
    path: Path, source: str, label: str, stats: WalkStats, at: tuple[int, int, int], reason: str
) -> Iterator[ManifestError]:
    """One problem for each row of row group `group` from row `number` on (`left` of them:
    `at`), each named by its key (in a folder, not by the folder)."""
    group, number, left = at
    for n in range(number, number + left):
        stats.found += 1
        what = (
            f"cannot be read: row group {group} is damaged ({reason})"
            if n == number
            else f"not read: row group {group} is damaged from row {number} on"
        )
        yield ManifestError(
            f"row {n} {what}: {path}#row-{n}",
            source=source,
            line=stats.found,
            key=f"{label}#row-{n}",
        )
