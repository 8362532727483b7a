"""A manifest file's physical lines: opened in binary, read one line at a time.

Owns how a text manifest is opened (errors a user can act on), how it is cut
into lines (a UTF-8 byte order mark dropped, an over-long line skipped without
reading it into memory), how a JSON line is parsed (`load_line`, shared by
JSON lines manifests and ``metadata.jsonl``) and the messages for a line
that cannot be read.

Invariants: line numbers are 1-based physical lines; no line longer than
`MAX_LINE_BYTES` is ever held whole.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ingest.errors import ManifestError

MAX_LINE_BYTES = 1 << 20
"""A longer line is reported as an error and skipped, so one bad line cannot exhaust memory."""

BOM = codecs.BOM_UTF8


@contextlib.contextmanager
def open_manifest(path: Path, source: str) -> Iterator[BinaryIO]:
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


def physical_lines(fh: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
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
        if lineno == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        yield lineno, raw


def load_line(raw: bytes) -> tuple[Any, str | None]:
    """(the JSON value of one line, None), or (None, why it is not JSON: bad UTF-8 first)."""
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return None, not_utf8(raw, uexc)
        return None, f"invalid JSON at column {exc.colno}: {exc.msg}"


def too_long() -> str:
    return f"line longer than {MAX_LINE_BYTES} bytes; skipped"


def not_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    bad = raw[exc.start : exc.end]
    shown = clip(raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace"))
    return f"not valid UTF-8 (byte {bad.hex(' ')} at column {exc.start + 1}): {shown}"


def clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
