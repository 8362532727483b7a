"""Item counts by state, kept current as a run writes its records.

Owns the end-of-run summary's numbers: the counts `journal.replay(path).counts()`
would give after the run, without reading the journal again (a second replay
held a digest per done item: ~17 MiB at 10^6 items, the run's largest table).

How it works: the counts start from the journal as it was replayed when the
run opened. Each record the run writes moves its key from its previous state
to the new one; a key's previous state is its earlier record in this run
(kept only while the key is unfinished) or else its state in the opening
replay. This relies on the engine's invariant that a key reaches at most one
final record (done, fail, bad) per run: each manifest key is one item.
"""

from __future__ import annotations

from ingest.journal.reader import Replay
from ingest.journal.records import Count, Record, count_of


class Tally:
    """Counts by state ("done", "failed", "rejected", "in_flight") and the manifest total."""

    __slots__ = ("_bad_lines", "_counts", "_open", "_start", "total")

    def __init__(self, start: Replay) -> None:
        self._start = start
        self._counts = start.counts()
        self._bad_lines = start.bad_lines
        self._open: set[str] = set()  # keys whose latest record in this run is unfinished
        self.total = start.total

    def apply(self, rec: Record) -> None:
        if rec["s"] == "run":
            # Keyless rejections count for the latest run only (as in `Replay.apply`).
            self._counts["rejected"] -= self._bad_lines
            self._bad_lines = 0
        elif rec["s"] == "end":
            self.total = rec["n"]
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
        if self._start.is_done(key):
            return "done"
        previous = self._start.unfinished.get(key)
        return None if previous is None else count_of(previous["s"])

    def counts(self) -> dict[str, int]:
        return dict(self._counts)
