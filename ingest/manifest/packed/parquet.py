"""A Parquet file as a manifest: one item per row of its image column, read by row group.

Owns which column holds the images (`image_column`: one named ``image``, else
the first, that is binary or a ``{bytes, path}`` struct, the layout of the
Hugging Face `datasets` Image feature), which gives the caption (``caption``,
else ``text``, a string column), what else is metadata (the other columns of
plain values: strings, numbers, booleans), each row's key
(``<file name>#row-<n>``, n its 0-based row number in the file: stable while
the file is) and the name a provider sees (the struct's ``path`` when it has
one, else the key's row part with the sniffed type's extension left to the
provider), and how a row's bytes are read again (`row_bytes`).

How it works: needs pyarrow (``pip install 'ingest[parquet]'``). The file is
read one row group at a time (`pyarrow.parquet.ParquetFile.read_row_group`),
so memory holds one or two row groups' images, never the file: the reader
yields a group's items, then moves on. A row's bytes are not a byte range of
the file (Parquet pages are encoded and compressed), so an item names its
(row group, row) and `row_bytes` reads the group again when needed; the last
`_KEEP` groups read stay cached, keyed by path, size and mtime, so validating
and uploading items in file order reads each group about once.

Invariants: one result per row (a row with no bytes, only a path, is that
row's `ManifestError`), so the count ahead is the file's row count; a file
that is not Parquet, or has no image column, is refused before any row.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ingest.errors import ManifestError
from ingest.item import Item, Member
from ingest.manifest.folder import WalkStats, no_images
from ingest.manifest.metadata import CAPTION_COLUMNS

INSTALL = "reading Parquet needs pyarrow: pip install 'ingest[parquet]'"
_KEEP = 2
_groups: OrderedDict[tuple[str, int, int, int], Any] = OrderedDict()
_lock = threading.Lock()


def _pq() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    return pq


def _open(path: str, source: str) -> Any:
    pq = _pq()
    if pq is None:
        raise ManifestError(INSTALL, source=source)
    try:
        return pq.ParquetFile(path)
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


def _layout(pf: Any, source: str) -> tuple[str, bool, str | None, list[str]]:
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


def count_parquet(path: Path) -> int:
    pf = _open(str(path), str(path))
    return max(int(pf.metadata.num_rows), 1)


def read_parquet(
    path: Path, source: str, label: str, stats: WalkStats | None = None
) -> Generator[Item | ManifestError, None, None]:
    """The rows of the Parquet file at `path` as items, one row group at a time."""
    stats = stats if stats is not None else WalkStats()
    pf = _open(str(path), source)
    _, _, caption_column, meta_columns = _layout(pf, source)
    st = os.stat(path)
    counts = stats.caption_counts
    if caption_column:
        stats.tables.append(f"column {caption_column!r}")
    first = 0
    for group in range(pf.num_row_groups):
        images, names = _group(path, st, group, pf)
        side = pf.read_row_group(group, columns=[c for c in (caption_column, *meta_columns) if c])
        captions = side.column(caption_column).to_pylist() if caption_column else None
        metas = [side.column(c).to_pylist() for c in meta_columns]
        for row in range(len(images)):
            stats.found += 1
            number = first + row
            name = names[row].as_py() if names is not None else None
            if not images[row].is_valid:
                only = f" (only the path {name!r})" if name else ""
                yield ManifestError(
                    f"row {number} holds no image bytes{only}: {path}#row-{number}",
                    source=source,
                    line=stats.found,
                )
                continue
            caption = (captions[row] or "").strip() or None if captions else None
            counts[1 if caption else 2] += 1
            metadata = {
                c: m[row] for c, m in zip(meta_columns, metas, strict=True) if m[row] is not None
            }
            length = len(images[row].as_buffer())
            yield Item(
                key=f"{label}#row-{number}",
                path=path,
                line=stats.found,
                name=os.path.basename(name) if name else None,
                caption=caption,
                metadata=metadata or None,
                caption_from=f"column {caption_column!r}" if caption else None,
                member=Member(f"row-{number}", 0, length, row=(group, row)),
            )
        first += len(images)
    if stats.found == 0:
        yield no_images(source, stats.skipped)


def _group(path: Path, st: os.stat_result, group: int, pf: Any = None) -> tuple[Any, Any]:
    """(image bytes, their struct paths or None) of row group `group`, as arrow arrays, cached."""
    key = (str(path), st.st_size, st.st_mtime_ns, group)
    with _lock:
        found = _groups.get(key)
        if found is not None:
            _groups.move_to_end(key)
            return found  # type: ignore[no-any-return]
    where = str(path)
    pf = pf if pf is not None else _open(where, where)
    column, struct, _, _ = _layout(pf, where)
    values = pf.read_row_group(group, columns=[column]).column(0).combine_chunks()
    names = None
    if struct:
        kind = values.type
        names = values.field("path") if kind.get_field_index("path") >= 0 else None
        values = values.field("bytes")
    with _lock:
        _groups[key] = (values, names)
        while len(_groups) > _KEEP:
            _groups.popitem(last=False)
    return values, names


def row_bytes(path: Path, member: Member) -> bytes:
    """The image bytes of the Parquet row `member` names; `OSError` if they are not there."""
    assert member.row is not None
    group, row = member.row
    where = f"{path}#{member.name}"
    try:
        images, _ = _group(path, os.stat(path), group)
        value = images[row]
    except (IndexError, ValueError) as exc:
        raise OSError(f"the Parquet file changed: no row {row} in group {group}: {where}") from exc
    except ManifestError as exc:
        raise OSError(f"{exc.reason}: {where}") from None
    if not value.is_valid:
        raise OSError(f"row holds no image bytes: {where}")
    data: bytes = value.as_py()
    if len(data) != member.length:
        raise OSError(
            f"the Parquet file changed: row of {len(data)} bytes, not {member.length}: {where}"
        )
    return data
