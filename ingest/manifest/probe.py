"""Which format a manifest is in, and whether it can be read at all, before any entry.

Owns the choice of format by name (`manifest_format`) and the checks of a
manifest as a whole: the folder can be listed; the file exists, is readable,
is UTF-8 text and not, say, a zip, a PDF or an image given by mistake; a JSON
lines file is not a JSON array or pretty-printed JSON; a CSV has a usable
header; it is not standard input, a pipe or a device (a run reads its
manifest more than once). Each failure is one `ManifestError` raised before
anything is read, with what to do instead.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from pathlib import Path
from typing import Literal, get_args

from ingest.errors import ManifestError
from ingest.manifest.lines import BOM, open_manifest, physical_lines
from ingest.sniff import sniff
from ingest.validate import describe_content

ManifestFormat = Literal["jsonl", "csv", "list", "folder", "tar", "zip", "parquet"]

FORMATS: tuple[ManifestFormat, ...] = get_args(ManifestFormat)
_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
_PROBE_BYTES = 8192


def manifest_format(path: Path) -> ManifestFormat:
    """The format `read_manifest` would use for `path` when none is forced."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in (".tar", ".zip"):
        return "tar" if suffix == ".tar" else "zip"
    if suffix == ".parquet":
        return "parquet"
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "list"


def probe_folder(path: Path, source: str) -> None:
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


STDIN = (
    "a manifest on standard input is not supported: ingest reads the manifest file again "
    "(to count it ahead, and on every resume, to match it to the journal); "
    "save it to a file and pass that file's path"
)
# What /dev/stdin (or a process substitution) resolves to when it is a pipe or a socket.
_PIPE_NAME = re.compile(r"(pipe|socket|anon_inode):\[\d+\]")


def refuse_stream(given: str | os.PathLike[str]) -> None:
    """A `ManifestError` naming the manifest as it was given (``/dev/stdin``, ``-``,
    ``/dev/fd/63``) if it is standard input, a pipe or a device: checked before the path
    is resolved, which would name what the link points to (``/proc/PID/fd/pipe:[N]``).
    A regular file behind it (``< m.jsonl``) passes: the run reads that file by its own
    path, and its journal is that file's."""
    problem = _not_a_file(Path(given))
    if problem is not None:
        raise ManifestError(problem, source=os.fspath(given))


def probe_file(path: Path, source: str, fmt: ManifestFormat) -> None:
    problem = _not_a_file(path)
    if problem is not None:
        raise ManifestError(problem, source=source)
    with open_manifest(path, source) as fh:
        head = fh.read(_PROBE_BYTES)
    problem = _head_problem(head, fmt)
    if problem is not None:
        raise ManifestError(problem, source=source)
    if fmt == "csv":
        from ingest.manifest.csvfile import CsvFeed, csv_layout  # a CSV run's only

        with open_manifest(path, source) as fh:
            csv_layout(CsvFeed(physical_lines(fh)), source)


def _not_a_file(path: Path) -> str | None:
    """Why `path` is standard input, a pipe or a device rather than a file, or None.

    Checked before opening: opening a pipe with no writer would block.
    """
    if _PIPE_NAME.fullmatch(path.name) or (path.name == "-" and not path.exists()):
        return STDIN
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # opening it says what is wrong
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return f"this is a pipe, not a file; {STDIN}"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return f"this is a device (a terminal?), not a file; {STDIN}"
    return None


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
        if what is None and head[257:262] == b"ustar":  # a POSIX tar header's magic
            what = "a tar archive; ingest reads it itself: name it *.tar or pass --format tar"
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
    # ingest reads these itself (given --format, or named *.zip / *.parquet / *.tar).
    (
        b"PK\x03\x04",
        "a zip archive (a spreadsheet? export it as CSV); of images? "
        "ingest reads it itself: name it *.zip or pass --format zip",
    ),
    (b"PAR1", "a Parquet file; ingest reads it itself: name it *.parquet or pass --format parquet"),
    (b"SQLite format 3\x00", "a SQLite database; export it as JSON lines or CSV"),
)


def _first_content_line(head: bytes) -> bytes:
    for raw in head.removeprefix(BOM).splitlines():
        text = raw.strip()
        if text and not text.startswith(b"#"):
            return text
    return b""
