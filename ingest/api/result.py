"""What a finished run returns: the journal's counts and why it stopped.

Owns `Result` (`StopReason` is the engine's, re-exported), and the result of a run
stopped before it started (`unopened`: no room to open its journal) with its one
snapshot (`still`). The counts are the journal's (what
`ingest status` would report after the run), never the engine's live
counters; those are kept apart in `this_run`. They count the manifest's
items: an item an earlier run uploaded that this manifest no longer lists is
in `removed`, not in `done` (see `ingest.tally`).

Invariants: `Result.complete` is true only when the run read its whole
manifest and every entry it read ended done (this run, or earlier and
unchanged), with nothing failed, rejected, changed since upload or left in
flight, and no stop or drain; `ingest run` exits 0 on exactly that. It is
judged on this run's entries (`this_run`), not on the journal's `done ==
total`: a journal keeps the records of entries since removed from the
manifest, and those neither help nor hurt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.engine.outcomes import StopReason
from ingest.errors import IngestError

if TYPE_CHECKING:
    from ingest.engine import Counters, Snapshot
    from ingest.errors import JournalError

__all__ = ["Result", "StopReason"]


@dataclass(frozen=True, slots=True)
class Result:
    """How a run ended, counted from its journal."""

    done: int
    failed: int
    rejected: int
    in_flight: int  # started but unfinished: redone by the next run
    total: int | None  # manifest entries; None if the run stopped before reading them all
    stop_reason: StopReason | None  # None: not stopped (it may have been drained)
    stop_message: str | None  # the stop's one-line explanation, for people
    drained: bool  # `drain()` ended it early: items in flight finished, no new ones started
    journal: Path | None  # None for a coordinated run: its record is the coordinator's (`run_name`)
    elapsed_s: float
    this_run: Counters  # the engine's counters for this run alone (a copy)
    # Items uploaded by earlier runs that this run's manifest no longer lists; not in `done`.
    removed: int = 0
    # Uploaded by this run, but their `done` record never reached the journal (a full
    # disk): in `this_run.done`, not in `done`; the next run redoes them (asking first
    # where the provider can tell).
    unjournaled: int = 0
    # The shared run's name (`open_upload(coordinator=...)`): the counts are every worker's,
    # `this_run` this worker's; None for a run on a journal.
    run_name: str | None = None

    @property
    def complete(self) -> bool:
        """Every entry of the manifest done, nothing failed, rejected, changed or unfinished."""
        c = self.this_run
        return (
            self.stop_reason is None
            and not self.drained
            and self.total is not None
            and c.read == c.skipped + c.done
            and c.failed == c.rejected == c.changed == c.in_flight == 0
            and (self.run_name is None or self.done == self.total)
        )

    @property
    def not_done(self) -> int:
        """Entries this run read that did not end done (failed, rejected, changed, unfinished).

        When the run stopped before the end of its manifest, the entries it
        never read are not counted (they are unknown until a run reads them).
        """
        c = self.this_run
        return c.read - c.skipped - c.done


def counted(counts: Mapping[str, int], **fields: Any) -> Result:
    """A `Result` of a journal's `counts` (done, failed, rejected, in_flight) and `fields`."""
    return Result(
        done=counts["done"],
        failed=counts["failed"],
        rejected=counts["rejected"],
        in_flight=counts["in_flight"],
        **fields,
    )


def unopened(path: Path, exc: JournalError) -> Result:
    """The `Result` of a run whose journal could not be opened for want of room: stopped
    (`StopReason.JOURNAL`) before anything was sent, counted from the journal as it is."""
    from ingest.engine import Counters
    from ingest.journal import replay

    counts = {"done": 0, "failed": 0, "rejected": 0, "in_flight": 0}
    removed = 0
    with contextlib.suppress(OSError, IngestError):  # none yet, or unreadable: nothing counted
        earlier = replay(path)
        counts, removed = earlier.counts(), earlier.removed
    return counted(
        counts,
        total=None,
        stop_reason=StopReason.JOURNAL,
        stop_message=str(exc),
        drained=False,
        journal=path,
        elapsed_s=0.0,
        this_run=Counters(),
        removed=removed,
    )


def still(result: Result) -> Snapshot:
    """The one snapshot of a run that stopped before it started (`unopened`)."""
    from ingest.engine import Progress, Snapshot
    from ingest.pacing import PacerStats

    return Snapshot(
        counters=result.this_run,
        total=None,
        elapsed_s=0.0,
        api_pacer=PacerStats(rate=None, throttles=0, paused_for=0.0),
        reading_done=False,
        progress=Progress(done=result.done, failed=result.failed, rejected=result.rejected),
    )
