"""Dataset metadata files in folder mode: the Hugging Face imagefolder convention.

Owns how a ``metadata.jsonl`` or ``metadata.csv`` found in a folder of the
walk is read and what its rows give the images under that folder:

- ``file_name`` (required) is the image's path relative to the metadata
  file's own folder (as `datasets`' folder-based builder joins it:
  ``os.path.join(metadata_dir, normpath(file_name))``), so a metadata file in
  ``train/`` names ``train/a.png`` as ``a.png`` and ``train/sub/b.png`` as
  ``sub/b.png``; a name that leaves that folder (``../x.png``) is a problem;
- the ``caption`` column, else the ``text`` column, is the image's caption;
- every other column is the image's metadata (JSON values as written; CSV
  cells as strings, empty cells left out).

Which file, and which row, wins: a folder with both files uses
``metadata.jsonl`` (the other is skipped, and counted as such); an image named
by metadata files at several levels takes the nearest one's row (the deepest
folder); a ``file_name`` listed again in one file names an image that already
has its row: the image is one item, with its first row, and the later row is
counted and named as not used (`Table.repeats`, `WalkStats.repeated_row`), not
a problem. (`datasets` makes an example of every row since 3.4, "allow
repeated media", so one picture under two captions is two examples; before,
its dict of rows kept the last; neither refuses it. An item here is one
upload of one file, which cannot carry two captions.) Rows that name no image
the walk finds are what is left in `Table.rows` once the walk leaves the
folder: each is counted and named (`WalkStats.unused_row`).

Invariants: every problem is a (line, reason) of the metadata file, reported
as a result of the walk, never a silent drop; the rows of a metadata file are
held only while the walk is under its folder.
"""

from __future__ import annotations

import io
import os
import posixpath
from dataclasses import dataclass
from typing import Any

from ingest.manifest.csvrows import CsvFeed, csv_records
from ingest.manifest.lines import load_line, physical_lines, too_long

METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
"""The metadata file names a folder may hold, the one used first when it has both."""

CAPTION_COLUMNS = ("caption", "text")


@dataclass(frozen=True, slots=True)
class Row:
    """What one metadata row gives its image."""

    caption: str | None
    metadata: dict[str, Any] | None
    where: str  # "train/metadata.jsonl line 3"


class Table:
    """The rows of one metadata file, by the folder-relative path of the image they name."""

    __slots__ = ("name", "problems", "repeats", "rows", "skipped")

    def __init__(self, name: str) -> None:
        self.name = name  # folder-relative, e.g. "train/metadata.jsonl"
        self.rows: dict[str, Row] = {}
        self.problems: list[tuple[int, str]] = []
        # Rows naming an image again: (line, the image's folder-relative path, its row's where).
        self.repeats: list[tuple[int, str, str]] = []
        self.skipped: str | None = None  # the other metadata file of the folder, not used

    def take(self, rel: str) -> Row | None:
        """The row for the image at folder-relative `rel`, removed (what is left named no image)."""
        return self.rows.pop(rel, None)


def metadata_file(names: set[str] | None, directory: str) -> tuple[str, str | None] | None:
    """(the metadata file name to use, the other one also present) for `directory`, or None.

    `names` is the directory's listing when known; otherwise each name is looked up.
    """
    present = [
        name
        for name in METADATA_NAMES
        if (name in names if names is not None else os.path.isfile(os.path.join(directory, name)))
    ]
    if not present:
        return None
    return present[0], (present[1] if len(present) > 1 else None)


def load_table(directory: str, prefix: str, name: str) -> Table:
    """The rows of `directory/name`; `prefix` is the directory's folder-relative path + "/"."""
    table = Table(prefix + name)
    path = os.path.join(directory, name)
    try:
        with open(path, "rb") as fh:
            rows = _jsonl_rows(fh) if name.endswith(".jsonl") else _csv_rows(fh)
            for line, found in rows:
                if isinstance(found, str):
                    table.problems.append((line, found))
                    continue
                _add(table, prefix, line, found)
    except OSError as exc:
        table.problems.append((0, f"cannot read {table.name}: {exc.strerror or exc}"))
    return table


def _add(table: Table, prefix: str, line: int, record: dict[str, Any]) -> None:
    def problem(reason: str) -> None:
        table.problems.append((line, reason))

    written = record.pop("file_name", None)
    if not isinstance(written, str) or not written.strip():
        shown = "missing" if written is None else f"not a file name ({written!r})"
        problem(f'"file_name" is {shown}; each row names its image in "file_name"')
        return
    relative = posixpath.normpath(written.replace("\\", "/"))
    if relative.startswith(("../", "/")) or relative in ("..", "."):
        problem(f"file_name {written!r} is outside the folder of {table.name}")
        return
    caption: str | None = None
    for column in CAPTION_COLUMNS:
        value = record.get(column)
        if value is None:
            continue
        if not isinstance(value, str):
            problem(f'"{column}" must be a string, got {type(value).__name__}')
            return
        if caption is None and value.strip():
            caption = value.strip()
            del record[column]
    key = prefix + relative
    first = table.rows.get(key)  # the whole file is read before the walk takes a row
    if first is not None:
        table.repeats.append((line, key, first.where))
        return
    table.rows[key] = Row(caption, record or None, f"{table.name} line {line}")


Found = tuple[int, "dict[str, Any] | str"]


def _jsonl_rows(fh: io.BufferedReader) -> list[Found]:
    found: list[Found] = []
    for line, raw in physical_lines(fh):
        if raw is None:
            found.append((line, too_long()))
            continue
        if not raw.strip():
            continue
        obj, problem = load_line(raw)
        if problem is not None:
            found.append((line, problem))
            continue
        if not isinstance(obj, dict):
            found.append((line, 'expected a JSON object with a "file_name" key'))
            continue
        found.append((line, obj))
    return found


def _csv_rows(fh: io.BufferedReader) -> list[Found]:
    records = csv_records(CsvFeed(physical_lines(fh)), ",")
    line, _, header = next(records, (0, 0, []))
    if isinstance(header, str):
        return [(line, f"the header row is unreadable: {header}")]
    if not header:
        return []
    columns = [column.strip() for column in header]
    if "file_name" not in columns:
        return [(line, f'no "file_name" column (columns: {", ".join(columns)})')]
    found: list[Found] = []
    for start, _, cells in records:
        if isinstance(cells, str):
            found.append((start, cells))
        else:
            found.append((start, {c: v for c, v in zip(columns, cells, strict=False) if v and c}))
    return found
