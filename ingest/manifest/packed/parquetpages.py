"""The pages of a Parquet file's image column, as its page headers say: what reading it will hold.

Owns `largest_page` (the largest page of the image column among the first
row groups, read from the page headers alone) and the note `validate` prints
when it is large (`page_note`).

How it works: a column chunk is a run of pages, each a Thrift compact-protocol
``PageHeader`` (`parquet.thrift` in apache/parquet-format: field 1 the page
type, 2 its uncompressed size, 3 its compressed size; a data page's or a
dictionary page's header, fields 5, 7 and 8, begins with its value count)
followed by that many compressed bytes. From the chunk's first page (the
dictionary page when there is one, as the footer says) each header is read
with one ``pread`` and the next page found past its bytes: no page's data is
read. Why it matters: pyarrow reads a page whole and decompresses it whole,
so reading a row group holds about twice its largest page (measured: 67 MiB
of pyarrow's pool for a 31 MiB dictionary page of 500 64 KiB images); and
pyarrow's writer checks a page's size only every 1,024 rows
(``write_batch_size``), so a row group of fewer rows of large images is one
page (`benchmarks/README.md`, Sources).

Invariants: reads at most `GROUPS` row groups and `PAGES` page headers, so a
huge file costs no more than a small one; a header it cannot parse ends the
walk with what it saw (the reader itself reports a damaged file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

GROUPS = 4  # row groups whose pages are walked (a file's layout is the same throughout)
PAGES = 2048  # page headers read at most
LARGE = 16 << 20  # a page this large is worth a note
_HEADER = 16 << 10  # bytes read for a header (statistics may make one a few KiB)
_DICTIONARY = 2  # PageType.DICTIONARY_PAGE


@dataclass(frozen=True, slots=True)
class Page:
    """The largest page seen: its uncompressed bytes, its values, its row group, its kind."""

    size: int
    values: int
    group: int
    dictionary: bool


class _Short(Exception):
    """The header runs past the bytes read."""


class _Compact:
    """Just enough of Thrift's compact protocol to read a PageHeader's fields and skip the rest."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise _Short
        self.at += 1
        return self.data[self.at - 1]

    def varint(self) -> int:
        shift = value = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def fields(self) -> Any:
        """(field id, type) of a struct's fields, in order; the caller reads or skips each."""
        last = 0
        while (head := self.byte()) != 0:
            delta, kind = head >> 4, head & 0x0F
            last = last + delta if delta else self.zigzag()
            yield last, kind

    def skip(self, kind: int) -> None:
        if kind in (1, 2):  # booleans: the value is the type
            return
        if kind == 3:
            self.byte()
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self._advance(8)
        elif kind == 8:
            self._advance(self.varint())
        elif kind in (9, 10):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(size):
                self._element(head & 0x0F)
        elif kind == 11:
            size = self.varint()
            types = self.byte() if size else 0
            for _ in range(size):
                self._element(types >> 4)
                self._element(types & 0x0F)
        elif kind == 12:
            for _, inner in self.fields():
                self.skip(inner)
        else:
            raise ValueError(f"unknown Thrift type {kind}")

    def _element(self, kind: int) -> None:
        if kind in (1, 2):  # a boolean in a list is a byte
            self.byte()
        else:
            self.skip(kind)

    def _advance(self, n: int) -> None:
        if self.at + n > len(self.data):
            raise _Short
        self.at += n


def _header(data: bytes) -> tuple[int, int, int, int, int]:
    """(page type, uncompressed size, compressed size, values, header length) of a PageHeader."""
    reader = _Compact(data)
    kind = uncompressed = compressed = values = 0
    for field, ftype in reader.fields():
        if field in (1, 2, 3) and ftype == 5:
            value = reader.zigzag()
            if field == 1:
                kind = value
            elif field == 2:
                uncompressed = value
            else:
                compressed = value
        elif field in (5, 7, 8) and ftype == 12:
            for inner, itype in reader.fields():
                if inner == 1 and itype == 5:
                    values = reader.zigzag()
                else:
                    reader.skip(itype)
        else:
            reader.skip(ftype)
    return kind, uncompressed, compressed, values, reader.at


def largest_page(path: str, metadata: Any, leaf: int) -> Page | None:
    """The largest page of leaf column `leaf` in the first `GROUPS` row groups, or None."""
    try:
        with open(path, "rb") as fh:
            return _walk(fh.fileno(), metadata, leaf)
    except OSError:  # gone or unreadable since the reader opened it: the reader will say so
        return None


def _walk(fd: int, metadata: Any, leaf: int) -> Page | None:
    """`largest_page` over the open file `fd`."""
    best: Page | None = None
    left = PAGES
    for group in range(min(GROUPS, metadata.num_row_groups)):
        chunk = metadata.row_group(group).column(leaf)
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page else None
        at = start if start is not None else chunk.data_page_offset
        end = at + chunk.total_compressed_size
        while at < end and left > 0:
            left -= 1
            try:
                kind, size, compressed, values, length = _header(os.pread(fd, _HEADER, at))
            except (_Short, ValueError):
                return best
            if best is None or size > best.size:
                best = Page(size, values, group, kind == _DICTIONARY)
            at += length + compressed
    return best


def page_note(page: Page | None, where: str) -> str | None:
    """What `validate` says of a large page (None if no page is `LARGE`)."""
    if page is None or page.size < LARGE:
        return None
    mib = page.size / 2**20
    kind = "a dictionary page" if page.dictionary else "a page"
    return (
        f"{where}: the image column has pages of up to {mib:.1f} MiB ({kind} of {page.values:,} "
        f"values in row group {page.group}); pyarrow reads and decompresses a page whole, so "
        f"reading this file needs about {2 * mib:.0f} MiB more memory than smaller pages "
        "would (pyarrow's writer: write_batch_size=16, or row groups of fewer rows)"
    )
