"""Landed, not finalized, across workers: an item's PUT at one worker, its finalize at another.

Owns the two ends of the run record's "landed" hash (`record.Record.land`,
`chunk_state`). ModelHunter's complete and Scenario's attach come after the
PUT; a worker killed between the two used to leave only its scratch
journal's `up` record, lost with it, so the chunk's next taker uploaded the
item again.

How it works: `ShippingEngine` is the unchanged engine, but each `up` record
it journals (an item whose bytes landed: the remote id, size, mtime, extra
and conversion note; never a URL) also goes to the `Shipper`, by manifest
line, in its next batch. `resume` gives the records a taker read for its
chunk's unsettled lines to the engine's replay, exactly as replaying a
single-machine journal whose last record for the key is `up` would: triage
then routes the item to finalize only (`triage.Resume`), and the finalizer's
own rule applies (a provider that forgot the bytes answers RESIGN: uploaded
anew, once).

Invariants: a record shipped is one the engine journaled; a record read back
is checked as a journal line is (`records.problem`) before it reaches the
engine, and one that is not an `up` record is ignored (the item is simply
uploaded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ingest.engine import Engine
from ingest.journal.records import Record, problem

if TYPE_CHECKING:
    from ingest.coord.record import Shipper
    from ingest.item import Source
    from ingest.journal import Replay
    from ingest.providers.base import Target


class ShippingEngine(Engine):
    """The engine, each of whose `up` records also reaches the run's record."""

    def __init__(self, *args: Any, shipper: Shipper, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shipper = shipper
        self._landing: int | None = None  # the line of the item `uploaded` is journaling

    def uploaded(self, key: str, source: Source, target: Target) -> None:
        self._landing = source.item.line
        try:
            super().uploaded(key, source, target)
        finally:
            self._landing = None

    def _record(self, rec: Record) -> None:
        super()._record(rec)
        if rec["s"] == "up" and self._landing is not None:
            self._shipper.landed(self._landing, rec)


def resume(replay: Replay, landed: Mapping[int, str]) -> int:
    """Give the engine's replay the landed records of a chunk; returns how many it took."""
    taken = 0
    for raw in landed.values():
        try:
            rec: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if problem(rec) is None and rec["s"] == "up":
            replay.apply(rec)
            taken += 1
    return taken
