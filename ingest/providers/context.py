"""What an adapter is constructed with: its sessions, its settings, the clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

from ingest.config import ProviderSettings


@dataclass(frozen=True, slots=True)
class Context:
    """Open sessions (one per role) and the provider's settings."""

    api: aiohttp.ClientSession
    storage: aiohttp.ClientSession
    settings: ProviderSettings
    params: Mapping[str, str] = field(default_factory=dict)  # bound in the journal header
    allow_insecure_http: bool = False
    clock: Callable[[], float] = field(default=time.time)
