"""Counting a manifest ahead of reading it, so a run knows its total early (a seek-ahead).

Owns `SeekAhead`: a background thread that counts the entries `read_manifest`
will yield, while the run reads and uploads them (as gsutil's seek-ahead
iterator does), and `count_entries`, the count itself.

How it works, per format:

    jsonl, list   lines, less those blank or ``#`` comments (one regular
                  expression over each 1 MiB run of whole lines)
    csv           records after the header: lines less blank ones while no
                  quote is open, line by line in a run that holds a quote (a
                  quote left open continues the record)
    folder        `folder.count_folder`: the walk, unsorted and streamed
    tar, zip      the shard's names, grouped into samples to count the
                  members its reader skips (`samples.count_shard`)

Invariants:
- memory is bounded: at most two chunks of the file (an over-long line counts
  once by its first bytes, the rest is skipped), or the open directories of
  a folder's current path;
- time is bounded: after `limit_s` (or `cancel`) the count is given up and
  stays unknown (None); it never delays the run, which does not wait for it;
- the count is an estimate: it is exact for well-formed manifests, and may
  differ by a line only blank in Unicode terms, or a CSV line over 1 MiB
  (its quotes past the first MiB are not seen); the run's own count replaces
  it once reading ends.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ingest.errors import ManifestError
from ingest.manifest.lines import BOM, open_manifest, physical_lines
from ingest.manifest.probe import ManifestFormat, manifest_format

if TYPE_CHECKING:
    from ingest.manifest.folder import SkippedFiles, WalkStats

CHUNK = 1 << 20
LIMIT_S = 30.0
"""How long a count may take before it is given up (a slow network file system)."""

_SPACE = b" \t\r\f\v"  # what `bytes.lstrip` strips, but the newline


@dataclass(frozen=True, slots=True)
class Ahead:
    """Where a seek-ahead count stands."""

    count: int | None  # entries the manifest will yield; None: not known (yet, or given up)
    counting: bool  # still at it
    # A folder's non-image files and loops (a shard's members too), or a shard manifest's
    # skipped members, once the count ended: what the reader's walk will say (validate's).
    skipped: SkippedFiles | None = None


class SeekAhead:
    """Counts the manifest at `path` in a daemon thread, started at once."""

    def __init__(
        self, path: Path, fmt: ManifestFormat | None = None, *, limit_s: float = LIMIT_S
    ) -> None:
        self._cancelled = threading.Event()
        self._deadline = time.monotonic() + limit_s
        self._result = Ahead(None, counting=True)
        self._thread = threading.Thread(
            target=self._count, args=(path, fmt), name="ingest-seek-ahead", daemon=True
        )
        self._thread.start()

    def state(self) -> Ahead:
        return self._result

    def wait(self, timeout: float | None = None) -> Ahead:
        """The state once the count ended (or after `timeout` seconds)."""
        self._thread.join(timeout)
        return self._result

    def cancel(self) -> None:
        """Give the count up (the run ended, or no longer needs it)."""
        self._cancelled.set()

    def _stop(self) -> bool:
        return self._cancelled.is_set() or time.monotonic() > self._deadline

    def _count(self, path: Path, fmt: ManifestFormat | None) -> None:
        stats: WalkStats | None = None  # a folder's or shard's (what its walk skipped)
        count: int | None = None
        try:
            fmt = fmt or manifest_format(path)
            if fmt in ("folder", "tar", "zip"):  # a shard's skipped members, as validate's
                from ingest.manifest.folder import WalkStats

                stats = WalkStats()
            count = count_entries(path, fmt, self._stop, stats)
        except (OSError, ManifestError):
            pass  # the reader reports what is wrong with the manifest
        finally:
            # With no image found, the reader's "no images found" says what was skipped.
            ended = stats is not None and count is not None
            skipped = stats.skipped if stats is not None and ended and stats.found else None
            self._result = Ahead(count, counting=False, skipped=skipped)


def count_entries(
    path: Path,
    fmt: ManifestFormat | None = None,
    stop: Callable[[], bool] = lambda: False,
    stats: WalkStats | None = None,
    *,
    chunk: int = CHUNK,
) -> int | None:
    """How many results `read_manifest(path, fmt)` will yield; None if `stop()` said so first.

    Raises `ManifestError` (or `OSError`) if the manifest cannot be read.
    """
    fmt = fmt or manifest_format(path)
    # Each format's counter is imported only by a run of that format (start-up time).
    if fmt == "folder":
        from ingest.manifest.folder import WalkStats, count_folder

        return count_folder(path, stats if stats is not None else WalkStats(), stop)
    if fmt in ("tar", "zip"):
        from ingest.manifest.packed.samples import count_shard

        if stats is None:
            return count_shard(path, fmt)
        found = count_shard(path, fmt, at_least=0, stats=stats, label=path.name)
        stats.found += found
        return max(found, 1)  # no image: its "no images found" problem
    if fmt == "parquet":
        from ingest.manifest.packed.parquet import count_parquet

        return count_parquet(path)
    with open_manifest(path, str(path)) as fh:
        try:
            if fmt == "csv":
                return _count_csv(fh, stop, chunk)
            return sum(
                run.count(b"\n") - len(_NOT_ENTRY.findall(run))
                for run in _line_runs(fh, stop, chunk, bom=True)
            )
        except _GaveUp:
            return None


class _GaveUp(Exception):
    pass


_NOT_ENTRY = re.compile(rb"^[ \t\r\f\v]*[\n#]", re.MULTILINE)  # a blank line or a comment


def _line_runs(
    fh: BinaryIO, stop: Callable[[], bool], chunk_size: int, *, bom: bool
) -> Iterator[bytes]:
    """The rest of `fh` as runs of whole lines, each ending with a newline.

    A line longer than `chunk_size` (leading blanks aside) is cut to its first
    `chunk_size` bytes, a line of its own, and the rest of it is skipped.
    """
    carry = fh.read(len(BOM)) if bom else b""
    carry = carry.removeprefix(BOM)
    skipping = False  # inside an over-long line whose start was handed on
    while True:
        if stop():
            raise _GaveUp
        chunk = fh.read(chunk_size)
        if not chunk:
            if carry:
                yield carry + b"\n"
            return
        if skipping:
            end = chunk.find(b"\n")
            if end < 0:
                continue
            chunk, skipping = chunk[end + 1 :], False
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        carry = data[cut:]
        if len(carry) > chunk_size:
            carry = carry.lstrip(_SPACE)
            if len(carry) > chunk_size:
                yield carry[:chunk_size] + b"\n"
                carry, skipping = b"", True


def _count_csv(fh: BinaryIO, stop: Callable[[], bool], chunk_size: int) -> int:
    """Records after the header row (read as the reader reads it, to learn the delimiter)."""
    from ingest.manifest.csvfile import CsvFeed, csv_layout

    delimiter = csv_layout(CsvFeed(physical_lines(fh)), str(fh.name)).delimiter.encode()
    blank = _SPACE + delimiter
    not_record = re.compile(rb"^[" + re.escape(blank) + rb"]*\n", re.MULTILINE)
    count = 0
    quoted = False  # a quote opened on an earlier line is still open
    for run in _line_runs(fh, stop, chunk_size, bom=False):
        if not quoted and b'"' not in run:
            count += run.count(b"\n") - len(not_record.findall(run))
            continue
        for line in run.split(b"\n")[:-1]:
            if not quoted and line.strip(blank):
                count += 1
            if line.count(b'"') % 2:
                quoted = not quoted
    return count
