"""What a finished run returns: the journal's counts and why it stopped.

Owns `Result` (`StopReason` is the engine's, re-exported). The counts are the journal's (what
`ingest status` would report after the run), never the engine's live
counters; those are kept apart in `this_run`. They count the manifest's
items: an item an earlier run uploaded that this manifest no longer lists is
in `removed`, not in `done` (see `ingest.tally`).

Invariants: `Result.complete` is true only when every manifest item is done
per the journal and the run was not stopped; `ingest run` exits 0 on exactly
that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.engine.outcomes import StopReason

if TYPE_CHECKING:
    from ingest.engine import Counters

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
    journal: Path
    elapsed_s: float
    this_run: Counters  # the engine's counters for this run alone (a copy)
    # Items uploaded by earlier runs that this run's manifest no longer lists; not in `done`.
    removed: int = 0

    @property
    def complete(self) -> bool:
        """Every manifest item done, nothing failed, rejected or unfinished, no stop."""
        return (
            self.stop_reason is None
            and not self.drained
            and self.total is not None
            and self.done == self.total
            and self.failed == self.rejected == self.in_flight == 0
        )

    @property
    def not_done(self) -> int:
        """Manifest items not done (failed, rejected, unfinished or never reached)."""
        unfinished = self.failed + self.rejected + self.in_flight
        return unfinished if self.total is None else max(unfinished, self.total - self.done)
