"""Streaming manifest readers: a manifest file or a folder in, `Item`s out.

Owns the four manifest formats and how one is chosen:

    a directory                    folder   recursive walk of image files (symlinks followed)
    *.jsonl, *.ndjson, *.json      jsonl    one JSON object per line
    *.csv                          csv      a header row with a ``path`` column
    *.tar, *.zip                   tar/zip  a shard: one item per image member (`packed`)
    *.parquet                      parquet  one item per row of its image column (pyarrow)
    anything else                  list     one path per line

How it works: `read_manifest` first checks the manifest as a whole (it exists,
is readable, is text and not, say, a zip or a PDF, a CSV has a usable header)
and raises `ManifestError` at once if not. It then returns a lazy iterator
that reads the file in binary one physical line at a time, so memory stays
flat at any size and a line that is not UTF-8 costs that line only. Every
entry becomes an `Item` or a `ManifestError` (reason, manifest, line) and
reading goes on.

Where each part lives:

    reader      read_manifest: the steps in order
    probe       the format by name; whole-manifest checks before any entry
    lines       opening a manifest file, its physical lines, unreadable lines
    jsonl, csvfile, pathlist, folder    one module per format
    csvrows     the CSV record loop csvfile and metadata share (lines, cells or the problem)
    sidecar, metadata   a folder's caption files and metadata.jsonl / metadata.csv
    walkstats   a folder walk's tally: skipped files and rows, captions, shards read
    packed      tar and zip shards: members, WebDataset samples, ``shard.tar#member``
    entry       what every format shares: fields, path checks, the key
    dedupe      duplicate keys across the manifest, in two passes
    seenkeys    the keys seen so far, exact in about two bytes a key
    seekahead   the entries counted ahead of reading, in the background (the total early)

Invariants:
- results come in manifest order: one per non-blank, non-comment line (one per
  record for CSV, one per image file for a folder, or one "no images found");
- `line` is the 1-based physical line (a multi-line CSV record reports the
  line it starts on; a folder reports the position in the walk);
- relative paths resolve against the manifest's directory; `Item.key` is the
  entry's ``id`` when given, else the path exactly as written;
- a key seen before is an error naming the first line (`seenkeys`: exact, in
  about two bytes a key); the rare entry that needs a second look to tell
  comes after the others, once the manifest has been read to its end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingest.lazynames import lazy_names

if TYPE_CHECKING:
    from ingest.manifest.folder import IMAGE_EXTENSIONS
    from ingest.manifest.lines import MAX_LINE_BYTES
    from ingest.manifest.probe import FORMATS, ManifestFormat, manifest_format
    from ingest.manifest.reader import read_manifest
    from ingest.manifest.seekahead import Ahead, SeekAhead, count_entries
    from ingest.manifest.walkstats import SkippedFiles, WalkStats

# Each name is imported on first use, so a run imports only its own format's
# reader (a JSON lines run skips the folder, CSV and shard modules).
_HOME = {
    "IMAGE_EXTENSIONS": "ingest.manifest.folder",
    "SkippedFiles": "ingest.manifest.walkstats",
    "WalkStats": "ingest.manifest.walkstats",
    "MAX_LINE_BYTES": "ingest.manifest.lines",
    "FORMATS": "ingest.manifest.probe",
    "ManifestFormat": "ingest.manifest.probe",
    "manifest_format": "ingest.manifest.probe",
    "read_manifest": "ingest.manifest.reader",
    "Ahead": "ingest.manifest.seekahead",
    "SeekAhead": "ingest.manifest.seekahead",
    "count_entries": "ingest.manifest.seekahead",
}

__getattr__ = lazy_names(__name__, _HOME, globals())


__all__ = [
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "MAX_LINE_BYTES",
    "Ahead",
    "ManifestFormat",
    "SeekAhead",
    "SkippedFiles",
    "WalkStats",
    "count_entries",
    "manifest_format",
    "read_manifest",
]
