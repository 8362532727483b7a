"""The engine: stages, limits, pacing, retries and leases for one run (see `core`).

settings.py  EngineSettings, derived from `[run]`
outcomes.py  Counters, Snapshot, Progress, Outcome, StopReason, Observer
triage.py    one entry's verdict (skip, upload, resume, reject, ...)
worker.py    one item's calls: acquire, transfer, retries, re-sign, throttles
finalize.py  the landed → finalize hand-off and batched finalizers
core.py      Engine: the stages wired together
endings.py   an item's ending journaled, counted and heard; the run's stop
"""

from __future__ import annotations

from ingest.engine.core import Engine
from ingest.engine.outcomes import (
    Counters,
    ItemDone,
    Observer,
    Outcome,
    Progress,
    Snapshot,
    StopReason,
)
from ingest.engine.settings import EngineSettings

__all__ = [
    "Counters",
    "Engine",
    "EngineSettings",
    "ItemDone",
    "Observer",
    "Outcome",
    "Progress",
    "Snapshot",
    "StopReason",
]
