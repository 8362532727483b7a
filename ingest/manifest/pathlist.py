"""Plain list manifests: one path per line (any file not named as JSON lines or CSV).

Owns that syntax: each line, trimmed, is a path and its key; blank lines and
lines starting with ``#`` are skipped.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

from ingest.errors import ManifestError
from ingest.manifest.dedupe import Entry
from ingest.manifest.entry import make_entry
from ingest.manifest.lines import not_utf8, open_manifest, physical_lines, too_long
from ingest.manifest.seenkeys import KeyCheck


def read_list(path: Path, source: str, base: str, seen: KeyCheck) -> Generator[Entry, None, None]:
    with open_manifest(path, source) as fh:
        for line, raw in physical_lines(fh):
            if raw is None:
                yield ManifestError(too_long(), source=source, line=line)
                continue
            if raw.lstrip().startswith(b"#"):
                continue
            try:
                written = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                yield ManifestError(not_utf8(raw, exc), source=source, line=line)
                continue
            if written:
                yield make_entry(
                    written=written, id_=None, line=line, source=source, base=base, seen=seen
                )
