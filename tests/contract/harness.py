"""What the contract suite needs to know about each provider to test it.

A `Harness` says how to authenticate an adapter against the in-process
emulator, which settings it needs, how to make an item the provider rejects,
and how to count, from the emulator's record, how many times each file's
bytes were committed. Capabilities the provider declares (no expiring URL, no
finalize step, no way to tell that an earlier transfer landed) make the suite
skip exactly the tests that need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.api.wiring import connect
from ingest.config import DEFAULT_PROVIDERS, ProviderSettings, RunSettings
from ingest.item import Item, Source
from ingest.providers import PROVIDER_NAMES, provider_class
from ingest.providers.base import Provider
from ingest.sim import SimServer, SimSettings, serve
from ingest.sim.modelhunter import completed_by_sha
from ingest.sim.scenario_world import attached_by_sha
from ingest.sim.settings import ScenarioSimSettings
from ingest.sniff import ImageType
from tests.images import Kind, image_bytes

KEY = "sk-contract-0123456789abcdef"
SECRET = "contract-secret-abcdef"
# Short timeouts (the emulator is in-process) and 16 connections per session.
RUN = RunSettings(connect_timeout_s=5, read_timeout_s=10, api_concurrency=16, put_concurrency=16)


def _objects_by_sha(sim: SimServer) -> Counter[str]:
    """Committed copies per sha256, for providers that land bytes in storage."""
    counts: Counter[str] = Counter()
    for obj in sim.state.objects.values():
        counts[obj.sha256] += 1
    return counts


@dataclass(frozen=True)
class Harness:
    name: str
    secrets: dict[str, str] = field(default_factory=lambda: {"api_key_env": KEY})
    settings: dict[str, Any] = field(default_factory=dict)  # ProviderSettings overrides
    sim: dict[str, Any] = field(default_factory=dict)  # SimSettings overrides
    base_path: str = ""  # the API's path prefix under the emulator (Scenario: /v1)
    landed: Callable[[SimServer], Counter[str]] = _objects_by_sha
    rejected_type: ImageType = ImageType.GIF  # a type the provider's API refuses
    setup: Callable[[SimServer], None] | None = None

    def provider_settings(self, sim: SimServer) -> ProviderSettings:
        base = DEFAULT_PROVIDERS[self.name]
        return dataclasses.replace(base, base_url=sim.base_url + self.base_path, **self.settings)


HARNESSES: dict[str, Harness] = {
    "novita": Harness("novita"),
    # A ModelHunter file counts once it is completed, not when its bytes land.
    "modelhunter": Harness("modelhunter", landed=completed_by_sha),
    "autoenhance": Harness("autoenhance"),
    "scenario": Harness(
        "scenario",
        secrets={"api_key_env": KEY, "api_secret_env": SECRET},
        settings={"model_id": "model_contract"},
        sim={"scenario": ScenarioSimSettings(models=frozenset({"model_contract"}))},
        base_path="/v1",
        landed=attached_by_sha,
        rejected_type=ImageType.BMP,
    ),
    "scenario-inline": Harness(
        "scenario",
        secrets={"api_key_env": KEY, "api_secret_env": SECRET},
        settings={"model_id": "model_contract", "mode": "inline"},
        sim={"scenario": ScenarioSimSettings(models=frozenset({"model_contract"}))},
        base_path="/v1",
        landed=attached_by_sha,
        rejected_type=ImageType.BMP,
    ),
}


def available() -> list[str]:
    """Harnesses whose provider has an adapter (a provider may have several modes)."""
    return [key for key, harness in HARNESSES.items() if harness.name in PROVIDER_NAMES]


@contextlib.asynccontextmanager
async def emulator(harness: Harness, **overrides: Any) -> AsyncIterator[SimServer]:
    async with serve(SimSettings(**{**harness.sim, **overrides})) as sim:
        if harness.setup is not None:
            harness.setup(sim)
        yield sim


@contextlib.asynccontextmanager
async def adapter(
    harness: Harness,
    sim: SimServer,
    *,
    secrets: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> AsyncIterator[Provider]:
    """The adapter on its sessions, wired as a run wires it (`ingest.api.wiring.connect`)."""
    cls = provider_class(harness.name)
    settings = harness.provider_settings(sim)
    bound = cls.run_params(settings, params or {})
    async with connect(cls, settings, RUN, secrets or harness.secrets, bound) as provider:
        yield provider


def make_source(tmp: Path, index: int, kind: Kind = "png", size: int = 4096) -> Source:
    """A real file on disk and the `Source` validation would make of it."""
    ext = {"png": "png", "jpeg": "jpg", "webp": "webp"}[kind]
    path = tmp / f"c{index:03d}.{ext}"
    path.write_bytes(image_bytes(kind, size, seed=1000 + index))
    st = path.stat()
    image_type = {"png": ImageType.PNG, "jpeg": ImageType.JPEG, "webp": ImageType.WEBP}[kind]
    return Source(
        Item(key=f"c{index:03d}", path=path, line=index + 1), st.st_size, st.st_mtime_ns, image_type
    )


def rejected_source(tmp: Path, harness: Harness) -> Source:
    """A file whose type the provider's API refuses (local validation bypassed)."""
    source = make_source(tmp, 999)
    return dataclasses.replace(source, image_type=harness.rejected_type)
