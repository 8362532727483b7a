"""Item counts by state, kept current as a run writes its records, against the manifest it reads.

Owns the end-of-run summary's numbers: the counts `journal.replay(path).counts()`
would give after the run, without reading the journal again (a second replay
held a digest per done item: ~17 MiB at 10^6 items, the run's largest table),
and what the run's read of the manifest found missing (the `gone` of its `end`
record).

How it works: the counts start from the journal as it was replayed when the
run opened. Each record the run writes moves its key from its previous state
to the new one; a key's previous state is its earlier record in this run
(kept only while the key is unfinished) or else its state in the opening
replay. This relies on the engine's invariant that a key reaches at most one
final record (done, fail, bad) per run: each manifest key is one item.

Removed entries: `watch` sees every entry the run reads and counts, by its
state in the opening replay, the keys this manifest still lists (a keyed
`ManifestError` included: a bad caption file's image is still listed). At the end
of the read, an earlier key this read did not list has had no record in this
run (records follow reading), so it is still in its opening state: the keys
gone from the manifest are, state by state, the opening counts less the
listed ones. `end_record` journals them, and `counts` leaves them out from
then on (before that, the previous full read's `gone`). This takes counters
only, no set of keys: memory stays flat at 10^6 items, and the exact keys
are for `ingest export` / `ingest status` to tell, by reading the manifest
again (`journal.report`).

Invariants: after a run reads its manifest to the end, `counts` are those of
that manifest's entries, so their sum never exceeds `total`; `total` is
this run's read (None until it ends), never an earlier run's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Final

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.journal.reader import Replay, without_gone
from ingest.journal.records import Count, EndRecord, Record, count_of, manifest_end

_COUNTS: Final[tuple[Count, ...]] = ("done", "failed", "rejected", "in_flight")


class Tally:
    """Counts by state ("done", "failed", "rejected", "in_flight"), the total and the removed."""

    __slots__ = (
        "_bad_lines",
        "_counts",
        "_fresh",
        "_gone",
        "_identity",
        "_listed",
        "_open",
        "_start",
        "total",
    )

    def __init__(self, start: Replay) -> None:
        self._start = start
        self._counts = start.all_counts()  # every key the journal names
        self._bad_lines = start.bad_lines
        self._open: set[str] = set()  # keys whose latest record in this run is unfinished
        self._gone: dict[str, int] = dict(start.gone)  # left out of `counts`
        self._listed = dict.fromkeys(_COUNTS, 0)  # opening state of the keys this read lists
        self.total: int | None = None
        self._identity = manifest_identity(start.header.manifest)  # before the read begins
        # A new journal: no key has a state at start (skips a digest lookup per entry and record).
        self._fresh = not start.done and not start.unfinished

    # -- the read ------------------------------------------------------------

    def watch(self, entries: Iterator[Item | ManifestError]) -> Iterator[Item | ManifestError]:
        """`entries`, unchanged, each counted on the way (in the reader's thread)."""
        if self._fresh:
            yield from entries
            return
        listed, state_at_start = self._listed, self._state_at_start
        for entry in entries:
            # A keyed ManifestError (a folder image whose caption file is bad, a bad shard
            # member) is an entry the manifest still lists, as an Item is.
            if entry.key is not None:
                state = state_at_start(entry.key)
                if state is not None:
                    listed[state] += 1
            yield entry

    def end_record(self, entries: int, changed: int = 0) -> EndRecord:
        """The `end` record of a full read of `entries`: with the earlier items it no longer listed.

        `changed`: the read's done items whose file changed since upload, not uploaded again.
        """
        start = self._start.all_counts()
        start["rejected"] -= self._start.bad_lines  # keyless: the latest run's, not items
        gone: dict[str, int] = {name: start[name] - self._listed[name] for name in _COUNTS}
        return manifest_end(entries, gone, self._identity, changed)

    # -- the records ---------------------------------------------------------

    def apply(self, rec: Record) -> None:
        if rec["s"] == "run":
            # Keyless rejections count for the latest run only (as in `Replay.apply`).
            self._counts["rejected"] -= self._bad_lines
            self._bad_lines = 0
        elif rec["s"] == "end":
            self.total = rec["n"]
            self._gone = rec.get("gone", {})
        elif "k" in rec:
            key = rec["k"]
            if key in self._open:
                self._open.discard(key)
                before: Count | None = "in_flight"
            else:
                before = self._state_at_start(key)
            if before is not None:
                self._counts[before] -= 1
            after = count_of(rec["s"])
            self._counts[after] += 1
            if after == "in_flight":
                self._open.add(key)
        else:  # a rejected manifest line without a key
            self._counts["rejected"] += 1
            self._bad_lines += 1

    def _state_at_start(self, key: str) -> Count | None:
        if self._fresh:
            return None
        if self._start.is_done(key):
            return "done"
        previous = self._start.unfinished.get(key)
        return None if previous is None else count_of(previous["s"])

    def counts(self) -> dict[str, int]:
        """Counts of the manifest's items (the latest full read's; this run's once it ends)."""
        return without_gone(self._counts, self._gone)

    @property
    def removed(self) -> int:
        """Items uploaded earlier that the latest full read no longer listed."""
        return self._gone.get("done", 0)


def manifest_identity(path: str) -> str | None:
    """Device, inode, size and mtime of a manifest file ("dev:ino:size:mtime_ns"); None if none.

    A folder has none: a change deep inside it leaves its own mtime alone.
    An edit rewrites the file (new size or mtime) or renames another over it
    (new inode), so an unchanged identity means an unchanged manifest.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
