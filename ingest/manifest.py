"""Streaming manifest readers: a manifest file or a folder in, `Item`s out.

Owns the four manifest formats and how one is chosen:

    a directory                    folder   recursive walk of image files
    *.jsonl, *.ndjson, *.json      jsonl    one JSON object per line
    *.csv                          csv      a header row with a ``path`` column
    anything else                  list     one path per line

How it works: `read_manifest` first checks the manifest as a whole (it exists,
is readable, is text and not, say, a zip or a PDF, a CSV has a usable header)
and raises `ManifestError` at once if not. It then returns a lazy iterator
that reads the file in binary one physical line at a time, so memory stays
flat at any size and a line that is not UTF-8 costs that line only. Every
entry becomes an `Item` or a `ManifestError` (reason, manifest, line) and
reading goes on.

Invariants:
- results come in manifest order: one per non-blank, non-comment line (one per
  record for CSV, one per image file for a folder);
- `line` is the 1-based physical line (a multi-line CSV record reports the
  line it starts on; a folder reports the position in the walk);
- relative paths resolve against the manifest's directory; `Item.key` is the
  entry's ``id`` when given, else the path exactly as written;
- a key seen before is an error naming the first line (`seenkeys`: exact, in
  about two bytes a key); the rare entry that needs a second look to tell
  comes after the others, once the manifest has been read to its end.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import os
import re
from array import array
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, get_args

import orjson

from ingest.digestset import DigestSet, digest64
from ingest.errors import ManifestError
from ingest.item import Item
from ingest.seenkeys import HOLD, FirstLines, KeyCheck, SeenKeys
from ingest.sniff import sniff
from ingest.validate import describe_content

ManifestFormat = Literal["jsonl", "csv", "list", "folder"]

FORMATS: tuple[ManifestFormat, ...] = get_args(ManifestFormat)

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif", ".heic", ".tif", ".tiff", ".bmp"}
)
"""File name extensions a folder walk picks up (compared case-insensitively)."""

_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})

MAX_LINE_BYTES = 1 << 20
"""A longer line is reported as an error and skipped, so one bad line cannot exhaust memory."""

_PROBE_BYTES = 8192
_BOM = codecs.BOM_UTF8
_FIELDS = ("path", "id", "name", "content_type", "caption", "metadata")
_FIELD_SET = frozenset(_FIELDS)
_CSV_COLUMNS = ("path", "id", "name", "content_type", "caption")
_CSV_DELIMITERS = (",", "\t", ";")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")

# Names people reach for instead of ours, best guess first. The first one the
# entry does not already have becomes the "did you mean" suggestion.
_ALIASES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "file",
            "filepath",
            "file_path",
            "image",
            "img",
            "image_path",
            "src",
            "source",
            "local_path",
            "location",
            "url",
            "uri",
            "fname",
            "path_to_file",
        ),
        ("path",),
    ),
    **dict.fromkeys(("filename", "file_name", "basename"), ("path", "name")),
    **dict.fromkeys(("key", "uid", "uuid", "image_id", "identifier", "_id", "ident"), ("id",)),
    **dict.fromkeys(("title", "display_name", "label_name"), ("name",)),
    **dict.fromkeys(
        ("type", "mime", "mimetype", "mime_type", "media_type", "contenttype", "format"),
        ("content_type",),
    ),
    **dict.fromkeys(
        ("text", "prompt", "description", "desc", "label", "alt", "alt_text", "captions"),
        ("caption",),
    ),
    **dict.fromkeys(("meta", "extra", "extras", "attributes", "properties", "tags"), ("metadata",)),
}


def manifest_format(path: Path) -> ManifestFormat:
    """The format `read_manifest` would use for `path` when none is forced."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "list"


def read_manifest(
    path: Path, fmt: ManifestFormat | None = None
) -> Generator[Item | ManifestError, None, None]:
    """Stream the entries of the manifest (or folder) at `path`, in order.

    `fmt` overrides the choice by suffix (the CLI's ``--format``). Raises
    `ManifestError` now if the manifest as a whole cannot be read; after that,
    a bad entry is yielded as a `ManifestError` and the next entry follows.
    The file stays open until the generator is exhausted or closed.
    """
    source = str(path)
    if fmt is None:
        fmt = manifest_format(path)
    elif fmt not in FORMATS:
        raise ManifestError(
            f"unknown manifest format {fmt!r}; use one of {', '.join(FORMATS)}", source=source
        )
    if fmt == "folder":
        _probe_folder(path, source)
        return _read_folder(path, source)
    _probe_file(path, source, fmt)
    base = os.path.dirname(os.path.abspath(path))
    reader = {"jsonl": _read_jsonl, "csv": _read_csv, "list": _read_list}[fmt]
    return _deduplicated(
        lambda seen: reader(path, source, base, seen), path, source, _estimate_entries(path)
    )


def _estimate_entries(path: Path) -> int:
    """Roughly how many lines the manifest has, from its size and its first MiB."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return 0
    return size * max(1, head.count(b"\n")) // max(1, len(head))


_Reader = Callable[[KeyCheck], Generator["Item | ManifestError | _Held", None, None]]


def _deduplicated(
    read: _Reader, path: Path, source: str, expected: int
) -> Generator[Item | ManifestError, None, None]:
    """The reader's entries with duplicate keys turned into errors (see `seenkeys`)."""
    before = _identity(path)
    held_lines, held_digests = array("Q"), DigestSet()
    for entry in read(SeenKeys(expected)):
        if isinstance(entry, _Held):
            held_lines.append(entry.item.line)
            held_digests.add(digest64(entry.item.key))
        else:
            yield entry
    if not held_lines:
        return
    first = FirstLines(held_lines, held_digests)
    if _identity(path) != before:
        reason = "the manifest changed while it was read"
        yield from _held_unsettled(held_lines, 0, source, reason)
        return
    try:
        with contextlib.closing(read(first)) as again:
            for entry in again:
                if isinstance(entry, _Held):
                    item = entry.item
                    line = first.lines.get(digest64(item.key)) or item.line
                    if line < item.line:
                        yield _duplicate(item.key, entry.what, line, source, item.line)
                    else:
                        yield item  # a false alarm of the filter
                    if first.seen == len(held_lines):
                        return
    except ManifestError as exc:
        yield from _held_unsettled(held_lines, first.seen, source, exc.reason)
        return
    # Held lines the second pass did not meet again: the file changed under us.
    yield from _held_unsettled(held_lines, first.seen, source, "the line is gone")


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _held_unsettled(
    held_lines: array[int], start: int, source: str, why: str
) -> Iterator[ManifestError]:
    """Errors for held entries that could not be settled: retried by the next run."""
    for line in held_lines[start:]:
        yield ManifestError(
            f"could not check this line for a duplicate key ({why}); "
            "run the same command again to upload it",
            source=source,
            line=line,
        )


# --- whole-manifest checks ---------------------------------------------------------------


def _probe_folder(path: Path, source: str) -> None:
    try:
        with os.scandir(path):
            pass
    except FileNotFoundError:
        raise ManifestError("folder not found", source=source) from None
    except NotADirectoryError:
        raise ManifestError(
            "not a folder; --format folder needs a directory of images", source=source
        ) from None
    except PermissionError:
        raise ManifestError("cannot read the folder: permission denied", source=source) from None
    except OSError as exc:
        raise ManifestError(
            f"cannot read the folder: {exc.strerror or exc}", source=source
        ) from None


def _probe_file(path: Path, source: str, fmt: ManifestFormat) -> None:
    with _open(path, source) as fh:
        head = fh.read(_PROBE_BYTES)
    problem = _head_problem(head, fmt)
    if problem is not None:
        raise ManifestError(problem, source=source)
    if fmt == "csv":
        with _open(path, source) as fh:
            _csv_layout(_CsvFeed(_lines(fh)), source)


@contextlib.contextmanager
def _open(path: Path, source: str) -> Iterator[BinaryIO]:
    """Open a manifest file for binary reading, with errors a user can act on."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, errors translated
    except FileNotFoundError:
        raise ManifestError("manifest not found (no such file)", source=source) from None
    except IsADirectoryError:
        raise ManifestError(
            "is a directory; leave out --format to upload the images in it", source=source
        ) from None
    except PermissionError:
        raise ManifestError("cannot read the manifest: permission denied", source=source) from None
    except OSError as exc:
        raise ManifestError(
            f"cannot read the manifest: {exc.strerror or exc}", source=source
        ) from None
    with fh:
        yield fh


def _head_problem(head: bytes, fmt: ManifestFormat) -> str | None:
    """Why the file starting with `head` cannot be a text manifest at all, or None.

    Magic numbers are only trusted in data that looks binary, so a list whose
    first path happens to start with "BM" or "PAR1" is still a list.
    """
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "the manifest is UTF-16 encoded; save it as UTF-8"
    if head.startswith(b"%PDF-"):
        return "not a text manifest: the file looks like a PDF document"
    if _looks_binary(head):
        what = next((what for magic, what in _NOT_TEXT if head.startswith(magic)), None)
        image_type = sniff(head)
        if what is None and image_type is not None:
            what = (
                f"a {image_type.ext} image; pass the folder that holds the images, "
                "or a manifest listing them"
            )
        return f"not a text manifest: the file looks like {what or describe_content(head)}"
    if fmt == "jsonl":
        first = _first_content_line(head)
        if first.startswith(b"["):
            return (
                "this is a JSON array, but ingest reads JSON lines (one object per line); "
                "convert it with: jq -c '.[]' IN > OUT.jsonl"
            )
        if first == b"{":
            return (
                "this looks like pretty-printed JSON, but ingest reads JSON lines "
                "(one complete object per line)"
            )
    return None


# Bytes that never occur in text: C0 controls other than whitespace and ESC.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b")
_TEXT_BYTES = bytes(b for b in range(256) if b not in _CONTROL_BYTES)


def _looks_binary(head: bytes) -> bool:
    controls = len(head.translate(None, _TEXT_BYTES))
    return b"\x00" in head or controls * 20 > len(head)


_NOT_TEXT = (
    (b"\x1f\x8b", "gzip-compressed data; decompress it first"),
    (b"BZh", "bzip2-compressed data; decompress it first"),
    (b"\xfd7zXZ\x00", "xz-compressed data; decompress it first"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data; decompress it first"),
    (b"PK\x03\x04", "a zip archive (a spreadsheet? export it as CSV)"),
    (b"PAR1", "a Parquet file; export it as JSON lines or CSV"),
    (b"SQLite format 3\x00", "a SQLite database; export it as JSON lines or CSV"),
)


def _first_content_line(head: bytes) -> bytes:
    for raw in head.removeprefix(_BOM).splitlines():
        text = raw.strip()
        if text and not text.startswith(b"#"):
            return text
    return b""


# --- lines -------------------------------------------------------------------------------


def _lines(fh: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(1-based line number, raw line with its ending) per physical line; None if too long."""
    readline = fh.readline
    lineno = 0
    while raw := readline(MAX_LINE_BYTES + 1):
        lineno += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield lineno, None
            continue
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        yield lineno, raw


def _too_long() -> str:
    return f"line longer than {MAX_LINE_BYTES} bytes; skipped"


def _not_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    bad = raw[exc.start : exc.end]
    shown = _clip(raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace"))
    return f"not valid UTF-8 (byte {bad.hex(' ')} at column {exc.start + 1}): {shown}"


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- entries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Held:
    """An entry whose key may have been seen before: decided after the whole manifest is read."""

    item: Item
    what: str  # "id" or "path": what the key is, for the message


def _duplicate(key: str, what: str, first: int, source: str, line: int) -> ManifestError:
    where = f"first at line {first}" if first else "also on an earlier line"
    return ManifestError(f"duplicate {what} {_clip(key, 80)!r} ({where})", source=source, line=line)


def _path_problem(written: str) -> str | None:
    if not written.strip():
        return "empty path"
    if "\x00" in written:
        return "path contains a NUL character"
    if _URL.match(written) or written.startswith("data:"):
        return (
            f"path is a URL ({_clip(written, 80)!r}); ingest uploads local files: "
            "download it and list the local path"
        )
    return None


def _resolve(base: str, written: str) -> Path:
    if written.startswith("~"):
        written = os.path.expanduser(written)
    return Path(os.path.join(base, written))


def _entry(
    *,
    written: str,
    id_: str | None,
    line: int,
    source: str,
    base: str,
    seen: KeyCheck,
    name: str | None = None,
    content_type: str | None = None,
    caption: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Item | ManifestError | _Held:
    problem = _path_problem(written)
    if problem is not None:
        return ManifestError(problem, source=source, line=line)
    key = written if id_ is None else id_
    first = seen.check(key, line)
    what = "path" if id_ is None else "id"
    if isinstance(first, int):
        return _duplicate(key, what, first, source, line)
    item = Item(
        key=key,
        path=_resolve(base, written),
        line=line,
        name=name,
        content_type=content_type,
        caption=caption,
        metadata=metadata,
    )
    return _Held(item, what) if first is HOLD else item


def _suggest(name: str, present: set[str]) -> str | None:
    """The field a mistyped `name` most likely meant, or None."""
    norm = name.strip().lower().replace("-", "_").replace(" ", "_")
    candidates: tuple[str, ...]
    if norm in _FIELD_SET:
        candidates = (norm,)
    elif norm in _ALIASES:
        candidates = _ALIASES[norm]
    else:
        candidates = tuple(difflib.get_close_matches(norm, _FIELDS, n=2, cutoff=0.6))
    for candidate in candidates:
        if candidate not in present:
            return candidate
    return None


def _unknown_keys(unknown: list[str], present: set[str]) -> str:
    parts = []
    for key in unknown:
        hint = _suggest(key, present)
        shown = repr(_clip(key, 40))
        parts.append(f"{shown} (did you mean {hint!r}?)" if hint else shown)
    noun = "key" if len(unknown) == 1 else "keys"
    return f"unknown {noun} {', '.join(parts)}; allowed keys: {', '.join(_FIELDS)}"


# --- JSON lines --------------------------------------------------------------------------


def _read_jsonl(
    path: Path, source: str, base: str, seen: KeyCheck
) -> Generator[Item | ManifestError | _Held, None, None]:
    with _open(path, source) as fh:
        for line, raw in _lines(fh):
            if raw is None:
                yield ManifestError(_too_long(), source=source, line=line)
                continue
            text = raw.lstrip()
            if not text or text.startswith(b"#"):
                continue
            yield _jsonl_entry(raw, line, source, base, seen)


def _jsonl_entry(
    raw: bytes, line: int, source: str, base: str, seen: KeyCheck
) -> Item | ManifestError | _Held:
    def fail(reason: str) -> ManifestError:
        return ManifestError(reason, source=source, line=line)

    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return fail(_not_utf8(raw, uexc))
        return fail(f"invalid JSON at column {exc.colno}: {exc.msg}")
    if not isinstance(obj, dict):
        return fail(f'expected a JSON object with a "path" key, got {_json_type(obj)}')
    unknown = [key for key in obj if key not in _FIELD_SET]
    if unknown:
        return fail(_unknown_keys(unknown, set(obj)))

    written = obj.get("path")
    if not isinstance(written, str):
        if "path" not in obj:
            return fail('missing required key "path"')
        return fail(f'"path" must be a string, got {_json_type(written)}')

    id_ = obj.get("id")
    if isinstance(id_, int) and not isinstance(id_, bool):
        id_ = str(id_)
    elif id_ is not None and not isinstance(id_, str):
        return fail(f'"id" must be a string or an integer, got {_json_type(id_)}')
    if id_ is not None and not id_.strip():
        return fail('empty "id"')

    strings: dict[str, str | None] = {}
    for field in ("name", "content_type", "caption"):
        value = obj.get(field)
        if value is not None and not isinstance(value, str):
            return fail(f'"{field}" must be a string, got {_json_type(value)}')
        strings[field] = value
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return fail(f'"metadata" must be an object, got {_json_type(metadata)}')

    return _entry(
        written=written,
        id_=id_,
        line=line,
        source=source,
        base=base,
        seen=seen,
        name=strings["name"],
        content_type=strings["content_type"],
        caption=strings["caption"],
        metadata=metadata,
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- CSV ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CsvLayout:
    """Where each field sits in a CSV manifest's rows, read from its header."""

    delimiter: str
    header: tuple[str, ...]
    columns: dict[str, int]  # our field name → index
    extra: tuple[tuple[int, str], ...]  # metadata columns: (index, header as written)
    unnamed: tuple[int, ...]


class _CsvFeed:
    """Decoded physical lines for `csv.reader`, remembering where they came from.

    A line that is not UTF-8 (or is too long) is handed on escaped, so the CSV
    structure around it survives, and noted in `bad`: the record it belongs to
    becomes an error.
    """

    __slots__ = ("_lines", "bad", "lineno")

    def __init__(self, lines: Iterator[tuple[int, bytes | None]]) -> None:
        self._lines = lines
        self.lineno = 0
        self.bad: list[tuple[int, str]] = []

    def __iter__(self) -> _CsvFeed:
        return self

    def __next__(self) -> str:
        self.lineno, raw = next(self._lines)
        if raw is None:
            self.bad.append((self.lineno, _too_long()))
            return "\n"
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.bad.append((self.lineno, _not_utf8(raw, exc)))
            return raw.decode("utf-8", "backslashreplace")

    def take_bad(self, start: int) -> str | None:
        """The problems noted since the record starting at `start`, as one reason."""
        if not self.bad:
            return None
        parts = [reason if at == start else f"line {at}: {reason}" for at, reason in self.bad]
        self.bad.clear()
        return "; ".join(parts)


def _csv_layout(feed: _CsvFeed, source: str) -> _CsvLayout:
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
        (d for d in _CSV_DELIMITERS if any(_norm_column(h) == "path" for h in split(d))), ","
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
        norm = _norm_column(name)
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
        shown = ", ".join(repr(_clip(h, 40)) for h in header)
        hint = next(
            (f"; rename {h!r} to 'path'" for h in header if _suggest(h, set(columns)) == "path"),
            "; the first row must be a header naming the columns, e.g. path,caption",
        )
        raise fail(f"no 'path' column in the CSV header (found {shown}){hint}")
    return _CsvLayout(delimiter, header, columns, tuple(extra), tuple(unnamed))


def _norm_column(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _read_csv(
    path: Path, source: str, base: str, seen: KeyCheck
) -> Generator[Item | ManifestError | _Held, None, None]:
    with _open(path, source) as fh:
        feed = _CsvFeed(_lines(fh))
        layout = _csv_layout(feed, source)
        # strict: a stray or unclosed quote is an error, not a guess that swallows lines
        reader = csv.reader(feed, delimiter=layout.delimiter, strict=True)
        while True:
            start = feed.lineno + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                feed.take_bad(start)
                hint = " (is a quote left open?)" if feed.lineno > start else ""
                yield ManifestError(
                    f"bad CSV record{_span(start, feed.lineno)}: {exc}{hint}",
                    source=source,
                    line=start,
                )
                continue
            bad = feed.take_bad(start)
            if bad is not None:
                yield ManifestError(bad, source=source, line=start)
            elif any(field.strip() for field in row):
                yield _csv_entry(row, layout, start, feed.lineno, source, base, seen)


def _span(start: int, end: int) -> str:
    return f" (lines {start}-{end})" if end > start else ""


def _csv_entry(
    row: list[str],
    layout: _CsvLayout,
    start: int,
    end: int,
    source: str,
    base: str,
    seen: KeyCheck,
) -> Item | ManifestError | _Held:
    def fail(reason: str) -> ManifestError:
        return ManifestError(reason, source=source, line=start)

    if len(row) != len(layout.header):
        hint = " (is a quote left open?)" if end > start else ""
        header = _clip(layout.delimiter.join(layout.header), 80)
        return fail(
            f"record{_span(start, end)} has {len(row)} fields, the header {header!r} "
            f"has {len(layout.header)}{hint}"
        )
    for index in layout.unnamed:
        if row[index].strip():
            return fail(f"a value in column {index + 1}, which has no name in the header")

    def optional(field: str) -> str | None:
        index = layout.columns.get(field)
        value = row[index].strip() if index is not None else ""
        return value or None

    metadata = {name: row[index] for index, name in layout.extra} if layout.extra else None
    return _entry(
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


# --- plain list --------------------------------------------------------------------------


def _read_list(
    path: Path, source: str, base: str, seen: KeyCheck
) -> Generator[Item | ManifestError | _Held, None, None]:
    with _open(path, source) as fh:
        for line, raw in _lines(fh):
            if raw is None:
                yield ManifestError(_too_long(), source=source, line=line)
                continue
            if raw.lstrip().startswith(b"#"):
                continue
            try:
                written = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                yield ManifestError(_not_utf8(raw, exc), source=source, line=line)
                continue
            if written:
                yield _entry(
                    written=written, id_=None, line=line, source=source, base=base, seen=seen
                )


# --- folder ------------------------------------------------------------------------------


def _read_folder(root: Path, source: str) -> Generator[Item | ManifestError, None, None]:
    """Image files under `root`, depth first, in sorted order of their relative paths.

    Symlinked directories are not followed and names starting with a dot
    (``.git``, macOS ``._x.jpg`` resource forks) are skipped. Each directory is
    listed when the walk reaches it, so only the directories on the current
    path are held in memory.
    """
    position = 0
    stack: list[tuple[str, Iterator[os.DirEntry[str]]]] = [("", _listing(os.path.abspath(root)))]
    while stack:
        prefix, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        name = entry.name
        if name.startswith("."):
            continue
        rel = prefix + name
        if _is_dir(entry):
            if not _is_utf8(name):
                position += 1
                yield ManifestError(
                    f"directory name is not valid UTF-8: {_escaped(rel)}/; skipped its contents",
                    source=source,
                    line=position,
                )
                continue
            try:
                children = _listing(entry.path)
            except OSError as exc:
                position += 1
                yield ManifestError(
                    f"cannot read directory {rel}/: {exc.strerror or exc}",
                    source=source,
                    line=position,
                )
                continue
            stack.append((rel + "/", children))
        elif os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
            position += 1
            if _is_utf8(name):
                yield Item(key=rel, path=Path(entry.path), line=position)
            else:
                yield ManifestError(
                    f"file name is not valid UTF-8: {_escaped(rel)}", source=source, line=position
                )


def _listing(directory: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        entries = list(it)
    # Sorting a directory as "name/" puts the walk in sorted order of full relative paths.
    entries.sort(key=lambda e: e.name + "/" if _is_dir(e) else e.name)
    return iter(entries)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(name: str) -> str:
    return os.fsencode(name).decode("utf-8", "backslashreplace")
