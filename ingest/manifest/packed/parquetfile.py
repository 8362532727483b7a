"""A Parquet file open to read: its layout and a row group's image bytes, in batches, streamed or by pyarrow.

Owns which column holds the images (`image_column`: one named ``image``, else
the first, that is binary or a ``{bytes, path}`` struct, the layout of the
Hugging Face `datasets` Image feature), which gives the caption (``caption``,
else ``text``, a string column, dictionary-encoded or not; else a binary one, decoded as UTF-8) and what else is
metadata (`Layout`), which way the image bytes are read (`Layout.streamed`,
`Layout.why`), and `group_batches`: a row group's image bytes as lists of
Python bytes of about `BATCH_BYTES` each.

How it works: needs pyarrow (``pip install '.[parquet]'``) for the
footer and the small columns. The image bytes are streamed by
`parquetcolumn` (memory: about one image, whatever the page sizes) when the
footer shows nothing it does not stream (`parquetcolumn.why_not`: a codec
other than none, snappy, gzip and zstd, an encoding other than plain and
dictionary); otherwise pyarrow reads them in record batches
(`iter_batches`, one thread, no pre-buffering, a 1 MiB buffer), which holds
about twice a page (`parquetpages`). A stream that meets what it does not
stream part way (`Unstreamable`) reads the rest of that row group with
pyarrow; wrong bytes (`Damaged`, or pyarrow's error) end the row group with
`GroupDamaged` after the rows before them.

Invariants: a batch holds at least one row; the rows of a row group come in
order, each once, or `GroupDamaged` says from which row on they do not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ingest.errors import ManifestError, install_hint
from ingest.manifest.metadata import CAPTION_COLUMNS
from ingest.manifest.packed import parquetcolumn
from ingest.manifest.packed.parquetcolumn import Oversized, Value
from ingest.manifest.packed.parquetpieces import Damaged, Unstreamable, said

INSTALL = f"reading Parquet needs pyarrow: {install_hint('parquet')}"
BATCH_BYTES = 2 << 20  # images a batch holds, about (its rows: `batch_rows`)
_BUFFER = 1 << 20  # pyarrow reads a column chunk through this buffer, page by page

Rows = list[Value]  # a batch's image bytes, one per row (None: a row without; `Oversized`)


class GroupDamaged(Exception):
    """The rest of row group `group` (after the rows already yielded) cannot be read: `reason`."""

    def __init__(self, group: int, reason: str) -> None:
        super().__init__(reason)
        self.group, self.reason = group, reason


def _pq() -> Any:
    """pyarrow's Parquet reader class, or None without pyarrow.

    `pyarrow._parquet.ParquetReader` is what `pyarrow.parquet.ParquetFile`
    wraps; importing it alone leaves out what `pyarrow.parquet` imports for
    datasets and filesystems (`pyarrow.fs` with its S3, GCS, Azure and HDFS
    bindings): ~6 MiB less RSS and a faster start (`benchmarks/README.md`,
    Sources). It has kept this interface (`open`, `iter_batches` and
    `read_row_group` by column index, `metadata`, `schema_arrow`,
    `column_paths`) from pyarrow 14 on.
    """
    try:
        from pyarrow._parquet import ParquetReader
    except ImportError:
        return None
    return ParquetReader


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a file's images, caption and metadata are, and how its image bytes are read."""

    column: str
    struct: bool  # a {bytes, path} struct
    caption: str | None
    metadata: tuple[str, ...]
    leaf: int  # the image bytes' leaf column in the footer
    why: str | None  # why pyarrow reads the image bytes (None: streamed)
    caption_bytes: bool = False  # the caption column is binary: each row's decoded as UTF-8

    @property
    def streamed(self) -> bool:
        return self.why is None


class ParquetFile:
    """A Parquet file open to read: its footer, Arrow schema, batches and small columns."""

    __slots__ = ("_paths", "_reader", "metadata", "num_row_groups", "path", "schema_arrow")

    def __init__(self, reader: Any, path: str) -> None:
        self._reader, self.path = reader, path
        self.metadata = reader.metadata
        self.schema_arrow = reader.schema_arrow
        self.num_row_groups = int(reader.num_row_groups)
        self._paths: list[list[str]] = reader.column_paths

    def _indices(self, columns: list[str]) -> list[int]:
        """The leaf columns of `columns` (a top-level name, or a dotted leaf path)."""
        wanted = set(columns)
        return [
            i for i, path in enumerate(self._paths) if path[0] in wanted or ".".join(path) in wanted
        ]

    def iter_batches(self, size: int, group: int, columns: list[str]) -> Iterator[Any]:
        """Record batches of row group `group` with the top-level `columns` (file order)."""
        batches: Iterator[Any] = self._reader.iter_batches(
            size, [group], column_indices=self._indices(columns), use_threads=False
        )
        return batches

    def read_group(self, group: int, columns: list[str]) -> Any:
        """Row group `group`'s `columns` (names or dotted leaf paths) as a table."""
        return self._reader.read_row_group(
            group, column_indices=self._indices(columns), use_threads=False
        )


def open_file(path: str, source: str) -> ParquetFile:
    reader = _pq()
    if reader is None:
        raise ManifestError(INSTALL, source=source)
    try:
        opened = reader()
        opened.open(path, pre_buffer=False, buffer_size=_BUFFER)
        return ParquetFile(opened, path)
    except FileNotFoundError:
        raise ManifestError("manifest not found (no such file)", source=source) from None
    except Exception as exc:  # OSError, pyarrow.ArrowInvalid and kin: damaged or not Parquet
        raise ManifestError(f"not a readable Parquet file ({said(exc)})", source=source) from None


def _value_type(kind: Any) -> Any:
    """A dictionary-encoded column's value type (a category column of strings: strings)."""
    import pyarrow as pa

    return kind.value_type if pa.types.is_dictionary(kind) else kind


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


def _is_string(kind: Any) -> bool:
    import pyarrow as pa

    kind = _value_type(kind)
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _plain(kind: Any) -> bool:
    import pyarrow as pa

    kind = _value_type(kind)
    return bool(
        _is_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
    )


def layout(pf: ParquetFile, source: str) -> Layout:
    """The file's `Layout`; `ManifestError` if it has no image column."""
    schema = pf.schema_arrow
    found = image_column(schema)
    if found is None:
        raise ManifestError(
            "no image column (a binary column, or a {bytes, path} struct as datasets' Image "
            f"feature writes); columns: {', '.join(schema.names)}",
            source=source,
        )
    # A string caption (else text) column; else a binary one (datasets write text as bytes too).
    names = [c for c in CAPTION_COLUMNS if c in schema.names and c != found[0]]
    caption = next((c for c in names if _is_string(schema.field(c).type)), None)
    binary = False
    if caption is None:
        caption = next((c for c in names if _is_binary(_value_type(schema.field(c).type))), None)
        binary = caption is not None
    metadata = tuple(
        n for n in schema.names if n not in (found[0], caption) and _plain(schema.field(n).type)
    )
    want = f"{found[0]}.bytes" if found[1] else found[0]
    footer = pf.metadata.schema
    leaf = next(i for i in range(len(footer)) if footer.column(i).path == want)
    why = parquetcolumn.why_not(pf.metadata, leaf)
    return Layout(found[0], found[1], caption, metadata, leaf, why, binary)


def batch_rows(pf: ParquetFile, group: int, leaf: int) -> int:
    """Rows a batch of row group `group` holds at most: `BATCH_BYTES` over its average image."""
    meta = pf.metadata.row_group(group)
    rows = int(meta.num_rows)
    average = max(1, int(meta.column(leaf).total_uncompressed_size) // max(rows, 1))
    return max(1, min(rows, BATCH_BYTES // average))


def arrow_rows(column: Any, struct: bool) -> Rows:
    """A batch's image column's bytes as Python values (made once a batch: the read-ahead's
    `Source.body` is the cached object, not a copy); one over `parquetcolumn.ROW_BOUND` is
    `Oversized`, as the stream makes it."""
    limit = parquetcolumn.ROW_BOUND
    if struct:  # flatten: a null struct's fields are null (`field` would ignore its validity)
        column = column.flatten()[column.type.get_field_index("bytes")]
    values: Rows = column.to_pylist()
    for i, value in enumerate(values):
        if isinstance(value, bytes) and len(value) > limit:
            values[i] = Oversized(len(value), limit)
    return values


def _arrow(pf: ParquetFile, lay: Layout, group: int, skip: int) -> Iterator[tuple[int, Rows]]:
    """(first row, bytes) batches of row group `group` read by pyarrow, from row `skip` on."""
    first = 0
    size = batch_rows(pf, group, lay.leaf)
    for batch in pf.iter_batches(size, group, [lay.column]):
        end = first + batch.num_rows
        if end > skip:
            values = arrow_rows(batch.column(lay.column), lay.struct)
            yield max(first, skip), values[max(0, skip - first) :]
        first = end


def _streamed(pf: ParquetFile, lay: Layout, group: int, fd: int) -> Iterator[tuple[int, Rows]]:
    """(first row, bytes) batches of row group `group` streamed, pyarrow for what is not."""
    size, limit = batch_rows(pf, group, lay.leaf), BATCH_BYTES
    first, held, values = 0, 0, []
    try:
        for value in parquetcolumn.values(fd, parquetcolumn.chunk_of(pf.metadata, group, lay.leaf)):
            values.append(value)
            held += len(value) if isinstance(value, bytes) else 0
            if len(values) >= size or held >= limit:
                yield first, values
                first, held, values = first + len(values), 0, []
    except Unstreamable:  # valid, but not ours to stream: pyarrow reads the rest
        if values:
            yield first, values
        yield from _arrow(pf, lay, group, first + len(values))
        return
    except Damaged as exc:
        if values:
            yield first, values
        raise GroupDamaged(group, str(exc)) from None
    if values:
        yield first, values


def group_batches(pf: ParquetFile, lay: Layout, group: int, fd: int) -> Iterator[tuple[int, Rows]]:
    """Row group `group`'s image bytes in batches: (the batch's first row in the group, its
    rows' bytes); `fd` the file open to read (for the streamed path)."""
    try:
        if lay.streamed:
            yield from _streamed(pf, lay, group, fd)
        else:
            yield from _arrow(pf, lay, group, 0)
    except GroupDamaged:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's errors (ArrowInvalid is a ValueError)
        raise GroupDamaged(group, f"pyarrow: {said(exc)}") from None
