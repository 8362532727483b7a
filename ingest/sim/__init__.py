"""The built-in provider emulator: provider APIs, S3-like storage, faults, records.

Owns nothing itself; it re-exports the public names. See `ingest.sim.server`
for running one, `ingest.sim.faults` for the fault-plan grammar and
`ingest.sim.state` for what is recorded.
"""

from __future__ import annotations

from ingest.sim.faults import FaultPlan
from ingest.sim.server import SimServer, serve
from ingest.sim.settings import SimSettings, StorageCredentials
from ingest.sim.state import IssuedAsset, SimState, SimStats, StoredObject

__all__ = [
    "FaultPlan",
    "IssuedAsset",
    "SimServer",
    "SimSettings",
    "SimState",
    "SimStats",
    "StorageCredentials",
    "StoredObject",
    "serve",
]
