"""A Parquet column chunk of byte arrays, streamed: each row's value in turn, never a page held whole.

Owns `Chunk` (what the footer says of one column chunk: `chunk_of`),
`why_not` (why a file's image column is read by pyarrow instead, or None)
and `values` (a chunk's values in row order: bytes, or None for a null).

How it works: pyarrow parses the footer; this module reads the chunk's own
bytes (`parquetpieces.ChunkBytes`): each page's Thrift header
(`parquetthrift`), then its data decompressed as it is read
(`parquetpieces.page_body`): definition levels (RLE hybrid; a value is there
when its level is the column's maximum), then PLAIN values (a 4-byte
little-endian length, the bytes), each value read and handed on alone. A
chunk that starts with a dictionary page (pyarrow dictionary-encodes binary
columns until the dictionary passes 1 MiB, checked only every 1,024 rows,
so a row group of fewer rows of images is all dictionary) is read in two
passes: first the dictionary-encoded data pages after it, which hold only
levels and indices (small), to learn each entry's last use; then the
dictionary is read forward as the rows need its entries, an entry kept
only while a later row still needs it (`DICTIONARY_BUDGET` in all; past it
an entry is dropped and the dictionary read again from its start when
needed, at most `RESTARTS` times a chunk). Unique images (the usual case)
are indices 0, 1, 2...: nothing is kept. A value longer than `ROW_BOUND`
(this reader's bound, not a provider's limit: a row is held whole) is read
past a piece at a time and yielded as `Oversized`, its length alone.

Invariants: memory is about one value (at most `ROW_BOUND`) plus a few pieces of the chunk and
the indices of its dictionary-encoded pages, whatever the page sizes;
`Damaged` for wrong bytes and `Unstreamable` for what this reader does not
do (the caller reads the rest with pyarrow), raised when met, after the
values before it were yielded; a chunk yields exactly its row group's rows
or ends in `Damaged`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ingest.manifest.packed.parquetpieces import (
    PIECE,
    ChunkBytes,
    Damaged,
    Read,
    Unstreamable,
    codecs,
    hybrid,
    page_body,
)
from ingest.manifest.packed.parquetthrift import (
    DATA_PAGE_V2,
    DICTIONARY_PAGE,
    ENCODINGS,
    PLAIN,
    PLAIN_DICTIONARY,
    RLE,
    RLE_DICTIONARY,
    BadHeader,
    PageHeader,
    Short,
    read_header,
)

# The largest image a row may hold: a row is held whole (its page is encoded and compressed, not a
# byte range to stream), so a larger one is read past, never held. This reader's bound, not a
# provider's: Novita, Scenario and Autoenhance document no limit, and a provider that has one
# (ModelHunter's 50 MB, or a configured `max_size_mb`) refuses a row over it in validation, in
# its own words, as it does a folder's file. Twice ModelHunter's image limit (invented: memory).
ROW_BOUND = 100_000_000
DICTIONARY_BUDGET = 16 << 20  # dictionary entries kept for later rows, bytes
RESTARTS = 8  # times a chunk's dictionary may be read again from its start
INDICES_MAX = 16 << 20  # a dictionary-encoded page's indices, bytes (more: not streamed)
STREAMED = frozenset({"PLAIN", "RLE", "BIT_PACKED", "PLAIN_DICTIONARY", "RLE_DICTIONARY"})
_DICTIONARY_ENCODED = (PLAIN_DICTIONARY, RLE_DICTIONARY)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One column chunk: its byte range in the file, its codec, its maximum level, its rows."""

    start: int
    end: int
    codec: str
    max_def: int
    rows: int


@dataclass(frozen=True, slots=True)
class Oversized:
    """A value of `size` bytes, over `limit` (`ROW_BOUND`): read past, never held."""

    size: int
    limit: int


Value = bytes | Oversized | None  # a row's value (None: a null)


def _value(body: Read, n: int) -> bytes | Oversized:
    """The next `n` bytes of `body`, or, past `ROW_BOUND`, `Oversized` once they are
    read past a piece at a time."""
    limit = ROW_BOUND
    if n <= limit:
        return body(n)
    left = n
    while left > 0:
        left -= len(body(min(left, PIECE)))
    return Oversized(n, limit)


@dataclass(frozen=True, slots=True)
class _Page:
    header: PageHeader
    body: int  # where its data starts in the file


def chunk_of(metadata: Any, group: int, leaf: int) -> Chunk:
    """Row group `group`'s chunk of leaf column `leaf`, from the footer pyarrow parsed."""
    meta = metadata.row_group(group).column(leaf)
    start = int(meta.data_page_offset)
    if meta.has_dictionary_page and 0 < int(meta.dictionary_page_offset or 0) < start:
        start = int(meta.dictionary_page_offset)
    return Chunk(
        start,
        start + int(meta.total_compressed_size),
        str(meta.compression),
        int(metadata.schema.column(leaf).max_definition_level),
        int(metadata.row_group(group).num_rows),
    )


def why_not(metadata: Any, leaf: int) -> str | None:
    """Why leaf column `leaf` of a file is not streamed (None: it is), from the footer alone."""
    column = metadata.schema.column(leaf)
    if column.physical_type != "BYTE_ARRAY":
        return f"its physical type is {column.physical_type}"
    if column.max_repetition_level:
        return "it is inside a list"
    allowed = codecs()
    for group in range(metadata.num_row_groups):
        meta = metadata.row_group(group).column(leaf)
        if meta.compression not in allowed:
            extra = " without the zstandard package" if meta.compression == "ZSTD" else ""
            return f"row group {group} uses the {meta.compression} codec{extra}"
        other = set(meta.encodings) - STREAMED
        if other:
            return f"row group {group} uses the {', '.join(sorted(other))} encoding"
    return None


def _walk(src: ChunkBytes, at: int, end: int) -> Iterator[_Page]:
    """The pages from `at` to the chunk's end, their headers read from `src`."""
    while at < end:
        src.seek(at)
        try:
            header = read_header(src)
        except Short:
            raise Damaged(f"a page header runs past its column chunk (at byte {at})") from None
        except BadHeader as exc:
            raise Damaged(f"a bad page header at byte {at} ({exc})") from None
        body = at + header.length
        if body + header.compressed > end:
            raise Damaged(f"a page runs past its column chunk (at byte {at})")
        yield _Page(header, body)
        src.seek(body)
        at = body + header.compressed


def _open_page(src: ChunkBytes, h: PageHeader, chunk: Chunk) -> tuple[list[int] | None, Read, int]:
    """(definition levels or None, the values' bytes as they decompress, how many) of a data
    page whose data `src` is at."""
    width = chunk.max_def.bit_length()
    levels: list[int] | None = None
    if h.kind == DATA_PAGE_V2:
        if h.repetition_bytes:
            raise Unstreamable("repetition levels")
        try:
            stored = src.take(h.definition_bytes)
        except Short:
            raise Damaged("the file ends inside a page") from None
        levels = hybrid(stored, width, h.values) if chunk.max_def else None
        size, left = h.compressed - h.definition_bytes, h.uncompressed - h.definition_bytes
        body = page_body(src, size, chunk.codec if h.values_compressed else "UNCOMPRESSED", left)
    else:
        body, left = page_body(src, h.compressed, chunk.codec, h.uncompressed), h.uncompressed
        if chunk.max_def:
            if h.levels_encoding != RLE:
                raise Unstreamable(f"{ENCODINGS.get(h.levels_encoding, '?')} definition levels")
            n = int.from_bytes(body(4), "little")
            if n > left or n > 8 + h.values * (1 + (width + 7) // 8):  # a run of 1 a value
                raise Damaged(f"definition levels of {n} bytes for {h.values} values")
            levels = hybrid(body(n), width, h.values)
            left -= 4 + n
    return levels, body, left


def _present(levels: list[int] | None, h: PageHeader, max_def: int) -> int:
    return h.values if levels is None else sum(1 for level in levels if level == max_def)


def _indices(fd: int, chunk: Chunk, at: int) -> dict[int, list[int | None]]:
    """Pass one: each dictionary-encoded data page after the dictionary (by where its data
    starts) with its rows' entry indices (None: a null), up to the first page that is plain,
    brings the values past the row group's rows, or is damaged. Pass two (`values`) yields
    the planned pages' rows, then meets the page pass one stopped at: a plain one is read as
    plain; past the rows, or a damaged header, is `Damaged`; but a dictionary-encoded page
    whose levels or indices are damaged is not planned, so pass two raises `Unstreamable`
    ("after a plain one") and pyarrow reads the rest of the row group (and says what is
    wrong). Indices of more than `INDICES_MAX` bytes are `Unstreamable` here, before any
    row is yielded."""
    src = ChunkBytes(fd, at, chunk.end)
    found: dict[int, list[int | None]] = {}
    rows = 0
    try:
        for page in _walk(src, at, chunk.end):
            h = page.header
            if not h.data_page:
                continue
            rows += h.values
            if h.encoding not in _DICTIONARY_ENCODED or rows > chunk.rows:
                break  # more values than rows: pass two says so, nothing decoded here
            levels, body, left = _open_page(src, h, chunk)
            if left - 1 > INDICES_MAX:
                raise Unstreamable(f"a dictionary-encoded page of {left:,} bytes of indices")
            width = body(1)[0]
            if width > 32:
                raise Damaged(f"dictionary indices of {width} bits")
            present = _present(levels, h, chunk.max_def)
            indices = iter(hybrid(body(left - 1), width, present))
            if levels is None:
                found[page.body] = list(indices)
            else:
                found[page.body] = [next(indices) if lv == chunk.max_def else None for lv in levels]
    except Damaged:
        pass
    return found


class _Dictionary:
    """A dictionary page's entries, read forward as rows need them (see the module's doc)."""

    __slots__ = (
        *("_body", "_chunk", "_count", "_fd", "_held"),
        *("_held_bytes", "_last", "_next", "_page", "_restarts"),
    )

    def __init__(self, fd: int, chunk: Chunk, page: _Page, last: dict[int, int]) -> None:
        self._fd, self._chunk, self._page, self._last = fd, chunk, page, last
        self._count = page.header.values
        self._held: dict[int, bytes | Oversized] = {}
        self._held_bytes = self._restarts = self._next = 0
        self._body = self._open()

    def _open(self) -> Read:
        h = self._page.header
        src = ChunkBytes(self._fd, self._page.body, self._page.body + h.compressed)
        return page_body(src, h.compressed, self._chunk.codec, h.uncompressed)

    def get(self, k: int, row: int) -> bytes | Oversized:
        """Entry `k`, for row `row` (an entry no later row needs is let go)."""
        if k >= self._count:
            raise Damaged(f"dictionary index {k} of a dictionary of {self._count} entries")
        value = self._held.get(k)
        if value is not None:
            if self._last.get(k, -1) <= row:
                del self._held[k]
                self._held_bytes -= _cost(value)
            return value
        if k < self._next:
            self._restarts += 1
            if self._restarts > RESTARTS:
                raise Unstreamable("dictionary entries used out of order past the memory budget")
            self._body, self._next = self._open(), 0
        while True:
            j = self._next
            value = _value(self._body, int.from_bytes(self._body(4), "little"))
            self._next += 1
            if j == k:
                break
            if self._last.get(j, -1) > row:
                self._hold(j, value)
        if self._last.get(k, -1) > row:
            self._hold(k, value)
        return value

    def _hold(self, j: int, value: bytes | Oversized) -> None:
        if self._held_bytes + _cost(value) <= DICTIONARY_BUDGET:
            self._held[j] = value
            self._held_bytes += _cost(value)


def _cost(value: bytes | Oversized) -> int:
    return len(value) if isinstance(value, bytes) else 0


def _last_uses(planned: dict[int, list[int | None]], first: int) -> dict[int, int]:
    last: dict[int, int] = {}
    row = first
    for indices in planned.values():
        for index in indices:
            if index is not None:
                last[index] = row
            row += 1
    return last


def values(fd: int, chunk: Chunk) -> Iterator[Value]:
    """Each row's value of `chunk` in order (None: a null; `Oversized`: too long to hold), read
    from the open file `fd`."""
    src = ChunkBytes(fd, chunk.start, chunk.end)
    dictionary: _Dictionary | None = None
    planned: dict[int, list[int | None]] = {}
    row = 0
    for page in _walk(src, chunk.start, chunk.end):
        h = page.header
        if h.kind == DICTIONARY_PAGE:
            if dictionary is not None:
                raise Damaged("a second dictionary page in one column chunk")
            if h.encoding not in (PLAIN, PLAIN_DICTIONARY):
                raise Unstreamable(f"a {ENCODINGS.get(h.encoding, '?')} dictionary page")
            planned = _indices(fd, chunk, page.body + h.compressed)
            dictionary = _Dictionary(fd, chunk, page, _last_uses(planned, row))
            continue
        if not h.data_page:
            continue  # an index page
        if row + h.values > chunk.rows:
            raise Damaged(f"pages of more values than the row group's {chunk.rows} rows")
        if h.encoding in _DICTIONARY_ENCODED:
            if dictionary is None:
                raise Damaged("a dictionary-encoded page without a dictionary page")
            rows = planned.pop(page.body, None)
            if rows is None:
                raise Unstreamable("a dictionary-encoded page after a plain one")
            for index in rows:
                yield None if index is None else dictionary.get(index, row)
                row += 1
        elif h.encoding == PLAIN:
            levels, body, left = _open_page(src, h, chunk)
            for level in levels if levels is not None else range(h.values):
                if levels is not None and level != chunk.max_def:
                    yield None
                else:
                    n = int.from_bytes(body(4), "little")
                    left -= 4 + n
                    if left < 0:
                        raise Damaged(f"a value of {n:,} bytes runs past its page")
                    yield _value(body, n)
                row += 1
        else:
            raise Unstreamable(f"the {ENCODINGS.get(h.encoding, str(h.encoding))} encoding")
    if row != chunk.rows:
        raise Damaged(f"the column chunk ends after {row} of its {chunk.rows} rows")
