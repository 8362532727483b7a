"""CSV manifests: a header row naming the columns, then one record per row (``*.csv``).

Owns that syntax: the delimiter (comma, tab or semicolon: the first that
gives a ``path`` column), the header (our field names, compared loosely; any
other named column goes into ``metadata``), quoted fields that span lines,
and a message for each way a header or a record can be wrong. A record with
fewer fields than the header leaves the missing columns empty, as long as it
reaches the ``path`` column. The header is read twice: once when the manifest
is opened (`probe`), once by the reader.

Records come from `ingest.manifest.csvrows` (shared with folder metadata
files), which owns the line tracking and the unreadable-record reasons.
"""

from __future__ import annotations

import csv
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import ManifestError
from ingest.manifest.csvrows import CsvFeed, csv_records, span
from ingest.manifest.dedupe import Entry
from ingest.manifest.entry import make_entry, normalize, suggest
from ingest.manifest.lines import clip, open_manifest, physical_lines
from ingest.manifest.seenkeys import KeyCheck

__all__ = ["CsvFeed", "CsvLayout", "csv_layout", "read_csv"]

_CSV_COLUMNS = ("path", "id", "name", "content_type", "caption")
_CSV_DELIMITERS = (",", "\t", ";")


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """Where each field sits in a CSV manifest's rows, read from its header."""

    delimiter: str
    header: tuple[str, ...]
    columns: dict[str, int]  # our field name → index
    extra: tuple[tuple[int, str], ...]  # metadata columns: (index, header as written)
    unnamed: tuple[int, ...]


def csv_layout(feed: CsvFeed, source: str) -> CsvLayout:
    """Read the header row from `feed` (skipping blank lines before it)."""

    def fail(reason: str) -> ManifestError:
        return ManifestError(reason, source=source, line=feed.lineno or None)

    first = next((text for text in feed if text.strip()), None)
    if first is None:
        raise fail("empty CSV manifest: it needs a header row with a 'path' column")
    if feed.bad:
        raise fail(f"the header row is unreadable: {feed.bad[0][1]}")

    def split(delimiter: str) -> list[str]:
        return next(csv.reader([first], delimiter=delimiter), [])

    delimiter = next(
        (d for d in _CSV_DELIMITERS if any(normalize(h) == "path" for h in split(d))), ","
    )
    header = tuple(name.strip() for name in split(delimiter))
    columns: dict[str, int] = {}
    extra: list[tuple[int, str]] = []
    unnamed: list[int] = []
    seen: dict[str, int] = {}
    for index, name in enumerate(header):
        if not name:
            unnamed.append(index)
            continue
        norm = normalize(name)
        if norm in seen:
            raise fail(
                f"the header names column {name!r} twice (columns {seen[norm] + 1} and {index + 1})"
            )
        seen[norm] = index
        if norm in _CSV_COLUMNS:
            columns[norm] = index
        else:
            extra.append((index, name))
    if "path" not in columns:
        shown = ", ".join(repr(clip(h, 40)) for h in header)
        hint = next(
            (f"; rename {h!r} to 'path'" for h in header if suggest(h, set(columns)) == "path"),
            "; the first row must be a header naming the columns, e.g. path,caption",
        )
        raise fail(f"no 'path' column in the CSV header (found {shown}){hint}")
    return CsvLayout(delimiter, header, columns, tuple(extra), tuple(unnamed))


def read_csv(path: Path, source: str, base: str, seen: KeyCheck) -> Generator[Entry, None, None]:
    with open_manifest(path, source) as fh:
        feed = CsvFeed(physical_lines(fh))
        layout = csv_layout(feed, source)
        for start, end, cells in csv_records(feed, layout.delimiter):
            if isinstance(cells, str):
                yield ManifestError(cells, source=source, line=start)
            else:
                yield _csv_entry(cells, layout, start, end, source, base, seen)


def _csv_entry(
    row: list[str],
    layout: CsvLayout,
    start: int,
    end: int,
    source: str,
    base: str,
    seen: KeyCheck,
) -> Entry:
    def fail(reason: str) -> ManifestError:
        return ManifestError(reason, source=source, line=start)

    path_at = layout.columns["path"]
    if len(row) > len(layout.header) or len(row) <= path_at:
        hint = " (is a quote left open?)" if end > start else ""
        header = clip(layout.delimiter.join(layout.header), 80)
        missing = " (no value for its 'path' column)" if len(row) <= path_at else ""
        return fail(
            f"record{span(start, end)} has {len(row)} fields, the header {header!r} "
            f"has {len(layout.header)}{missing}{hint}"
        )
    # A short row (a spreadsheet drops trailing empty cells) leaves the columns it lacks empty.
    row = row + [""] * (len(layout.header) - len(row))
    for index in layout.unnamed:
        if row[index].strip():
            return fail(f"a value in column {index + 1}, which has no name in the header")

    def optional(field: str) -> str | None:
        index = layout.columns.get(field)
        value = row[index].strip() if index is not None else ""
        return value or None

    metadata = {name: row[index] for index, name in layout.extra} if layout.extra else None
    return make_entry(
        written=row[layout.columns["path"]].strip(),
        id_=optional("id"),
        line=start,
        source=source,
        base=base,
        seen=seen,
        name=optional("name"),
        content_type=optional("content_type"),
        caption=optional("caption"),
        metadata=metadata,
    )
