"""The physical CSV record loop shared by CSV manifests and folder metadata files.

Owns how CSV text is fed to `csv.reader` line by line and what one record is:
`CsvFeed` decodes physical lines (from `ingest.manifest.lines.physical_lines`,
which strips a BOM and cuts over-long lines), remembering their numbers and
the lines that are not UTF-8 or too long; `csv_records` yields each non-blank
record with the physical lines it spans and its cells, or the one-line reason
it cannot be read.

How it works: a line that cannot be decoded is handed on escaped, so the CSV
structure around it survives, and the record it belongs to becomes a
problem; the reader is strict, so a stray or unclosed quote is a problem of
its record (with a hint when it swallowed lines), not a guess.

Invariants: every record that is not blank comes out exactly once, as cells
or as a problem; line numbers are physical (a quoted field spanning lines
counts each), 1-based.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from ingest.manifest.lines import not_utf8, too_long


class CsvFeed:
    """Decoded physical lines for `csv.reader`, remembering where they came from.

    A line that is not UTF-8 (or is too long) is noted in `bad` (see the module
    docstring).
    """

    __slots__ = ("_lines", "bad", "lineno")

    def __init__(self, lines: Iterator[tuple[int, bytes | None]]) -> None:
        self._lines = lines
        self.lineno = 0
        self.bad: list[tuple[int, str]] = []

    def __iter__(self) -> CsvFeed:
        return self

    def __next__(self) -> str:
        self.lineno, raw = next(self._lines)
        if raw is None:
            self.bad.append((self.lineno, too_long()))
            return "\n"
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.bad.append((self.lineno, not_utf8(raw, exc)))
            return raw.decode("utf-8", "backslashreplace")

    def take_bad(self, start: int) -> str | None:
        """The problems noted since the record starting at `start`, as one reason."""
        if not self.bad:
            return None
        parts = [reason if at == start else f"line {at}: {reason}" for at, reason in self.bad]
        self.bad.clear()
        return "; ".join(parts)


CsvRecord = tuple[int, int, "list[str] | str"]
"""One CSV record: its first and last physical line, then its cells or why it is unreadable.

A plain tuple, not a value class: one is made per row of manifests of
millions, and a NamedTuple added 0.45 µs a row over it (a frozen dataclass
more), a third of the loop's own cost.
"""


def csv_records(feed: CsvFeed, delimiter: str) -> Iterator[CsvRecord]:
    """The non-blank records of `feed` from where it stands (a header, if unread, is one)."""
    # strict: a stray or unclosed quote is an error, not a guess that swallows lines
    reader = csv.reader(feed, delimiter=delimiter, strict=True)
    while True:
        start = feed.lineno + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            feed.take_bad(start)
            hint = " (is a quote left open?)" if feed.lineno > start else ""
            problem = f"bad CSV record{span(start, feed.lineno)}: {exc}{hint}"
            yield start, feed.lineno, problem
            continue
        bad = feed.take_bad(start)
        if bad is not None:
            yield start, feed.lineno, bad
        elif any(field.strip() for field in row):
            yield start, feed.lineno, row


def span(start: int, end: int) -> str:
    """' (lines a-b)' for a record over several lines, else nothing."""
    return f" (lines {start}-{end})" if end > start else ""
