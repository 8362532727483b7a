"""The manifest read chunk by chunk: the engine's entries restricted to one chunk's lines.

Owns how a worker feeds the unchanged engine. `ChunkReader.entries(first,
last, skip)` yields the entries whose manifest line is in first..last, less
the lines in `skip` (already settled in the run's record: they cost no API
call). One reader is kept open across chunks and only reopened when a chunk
starts at or before a line it already passed, so a worker taking chunks in
stream order reads its manifest about once, whatever the number of chunks.
A worker that read a manifest of at most `worker.KEEP_ENTRIES` entries whole
to plan the run (`plan.read_layout`) hands them over instead: its chunks are
fed from those, and the manifest is parsed once, as without a coordinator.

A reader without a plan gives the few entries its duplicate filter could not
decide at once after all others (`manifest.dedupe`): past the end of every
chunk, so never fed. A chunk's read is given the plan's `Duplicates` instead
and answers every key from them in one pass, in line order; the kept entries
are in line order too (`plan.read_layout`).

Invariants: every entry whose line is in first..last is yielded once per
`entries` call (less `skip`), in line order; the entry after the chunk's last
line is kept for the next call, not lost. Blocking: the engine consumes it in
its reader thread.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.errors import ManifestError
from ingest.item import Item

if TYPE_CHECKING:
    from ingest.manifest import ManifestFormat
    from ingest.manifest.seenkeys import Duplicates

Entry = Item | ManifestError


class ChunkReader:
    """One manifest, read forward chunk by chunk (reopened only to go back)."""

    def __init__(
        self,
        manifest: Path,
        fmt: ManifestFormat | None,
        kept: Sequence[Entry] | None = None,
        *,
        duplicates: Duplicates,
    ) -> None:
        self._manifest = manifest
        self._fmt = fmt
        self._kept = kept  # every entry, as `plan.read_layout` read them (None: read again)
        self._duplicates = duplicates  # the plan's: what a read of the manifest found
        self._reader: Iterator[Entry] | None = None
        self._ahead: Entry | None = None  # read, beyond the last chunk's end
        self._passed = 0  # the last line consumed (yielded or skipped)

    def entries(
        self, first: int, last: int, skip: set[int] | frozenset[int] = frozenset()
    ) -> Iterator[Entry]:
        if self._reader is None or first <= self._passed:
            self._reopen()
        while True:
            entry = self._next()
            if entry is None:
                return
            line = entry.line
            if line is None:  # a whole-manifest problem: reported by the chunk reading it
                yield entry
                continue
            if line > last:
                self._ahead = entry
                return
            self._passed = line
            if line >= first and line not in skip:
                yield entry

    def _next(self) -> Entry | None:
        if self._ahead is not None:
            entry, self._ahead = self._ahead, None
            return entry
        assert self._reader is not None
        return next(self._reader, None)

    def _reopen(self) -> None:
        from ingest.manifest import read_manifest

        self.close()
        if self._kept is not None:
            self._reader = iter(self._kept)
        else:
            self._reader = read_manifest(self._manifest, self._fmt, duplicates=self._duplicates)
        self._passed = 0

    def close(self) -> None:
        if isinstance(self._reader, Generator):
            self._reader.close()
        self._reader, self._ahead = None, None
