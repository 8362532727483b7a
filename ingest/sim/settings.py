"""The emulator's settings: where it listens and how its providers behave.

Owns `SimSettings` (a frozen value fixed for the life of one emulator; only
the fault plan can change while it runs, see `SimServer.set_faults`) and the
storage credentials its URLs are signed with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ingest.sim.faults import FaultPlan


@dataclass(frozen=True, slots=True)
class StorageCredentials:
    """The emulator's S3 identity; fixed so that URLs are reproducible in tests."""

    access_key: str = "AKIAINGESTSIMULATOR1"
    secret: str = "ingestSIMsecretKEYnotAsecret/0000000000"
    region: str = "ap-southeast-1"


@dataclass(frozen=True, slots=True)
class SimSettings:
    """How one emulator instance listens and behaves.

    `api_keys` None accepts any non-empty key; `port` 0 picks a free port;
    `store_dir`, when set, keeps every uploaded body under
    ``store_dir/<bucket>/<key>`` (otherwise only size and SHA-256 are kept).
    `stall_cap_s` bounds how long a stalled request is held.
    """

    host: str = "127.0.0.1"
    port: int = 0
    url_lifetime_s: float = 120.0
    api_keys: frozenset[str] | None = None
    assets_id_as_string: bool = False
    faults: FaultPlan = field(default_factory=FaultPlan)
    store_dir: Path | None = None
    stall_cap_s: float = 300.0
    credentials: StorageCredentials = field(default_factory=StorageCredentials)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.url_lifetime_s <= 0:
            raise ValueError(f"url_lifetime_s must be > 0, got {self.url_lifetime_s}")
        if self.stall_cap_s <= 0:
            raise ValueError(f"stall_cap_s must be > 0, got {self.stall_cap_s}")
        if self.api_keys is not None and not all(self.api_keys):
            raise ValueError("api_keys must not contain an empty key")
