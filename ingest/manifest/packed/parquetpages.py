"""The pages of a Parquet file's image column, as its page headers say: what reading it will hold.

Owns `largest_page` (the largest page of the image column among the first
row groups, read from the page headers alone) and what `validate` adds when
it is large and pyarrow reads the file (`page_note`; a streamed file holds
no page whole).

How it works: a column chunk is a run of pages, each a Thrift compact-protocol
``PageHeader`` (`parquetthrift`) followed by its compressed bytes. From the chunk's first page (the
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

from ingest.manifest.packed.parquetthrift import (
    DICTIONARY_PAGE,
    BadHeader,
    Buffer,
    Short,
    read_header,
)

GROUPS = 4  # row groups whose pages are walked (a file's layout is the same throughout)
PAGES = 2048  # page headers read at most
LARGE = 16 << 20  # a page this large is worth a note
_HEADER = 16 << 10  # bytes read for a header (statistics may make one a few KiB)


@dataclass(frozen=True, slots=True)
class Page:
    """The largest page seen: its uncompressed bytes, its values, its row group, its kind."""

    size: int
    values: int
    group: int
    dictionary: bool


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
                h = read_header(Buffer(os.pread(fd, _HEADER, at)))
            except (Short, BadHeader):
                return best
            if best is None or h.uncompressed > best.size:
                best = Page(h.uncompressed, h.values, group, h.kind == DICTIONARY_PAGE)
            at += h.length + h.compressed
    return best


def page_note(page: Page | None) -> str:
    """What `validate` adds of a `LARGE` page when pyarrow reads the file ("" if none is)."""
    if page is None or page.size < LARGE:
        return ""
    mib = page.size / 2**20
    kind = "a dictionary page" if page.dictionary else "a page"
    return (
        f"; it has pages of up to {mib:.1f} MiB ({kind} of {page.values:,} values in row group "
        f"{page.group}), which pyarrow reads and decompresses whole: about {2 * mib:.0f} MiB "
        "more memory than smaller pages would need"
    )
