"""The engine's own bookkeeping against a fake provider: read-ahead budget, tally, one upload per key.

Found by review: a drain dropped the reader's current batch without giving
its read-ahead back, and a manifest replaced mid-run (new lines first) let
the duplicate check's second pass wave a held duplicate through.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import anyio
import anyio.lowlevel
import orjson
import pytest

from ingest.capabilities import Capabilities
from ingest.config import RunSettings
from ingest.engine import Engine, EngineSettings
from ingest.errors import ManifestError, TransferError
from ingest.item import Item, Source
from ingest.journal import Header, Journal, replay
from ingest.manifest import read_manifest
from ingest.manifest.seenkeys import SeenKeys
from ingest.providers.base import Landed, Target
from ingest.sniff import ImageType
from tests.images import make_image

pytestmark = pytest.mark.anyio


class Fake:
    """Signs and "uploads" instantly; counts uploads per key; may drain the engine midway."""

    name: ClassVar[str] = "fake"
    caps = Capabilities(formats=frozenset(ImageType), max_size=None, url_lifetime_s=None)

    def __init__(self) -> None:
        self.puts: Counter[str] = Counter()
        self.engine: Engine | None = None
        self.drain_after: int | None = None

    async def acquire(self, source: Source) -> Target:
        await anyio.lowlevel.checkpoint()
        return Target(remote_id="r-" + source.item.key, url="http://127.0.0.1/x",
                      content_type="image/png", lease=None)  # fmt: skip

    async def transfer(self, source: Source, target: Target) -> Target:
        await anyio.lowlevel.checkpoint()
        self.puts[source.item.key] += 1
        if self.engine is not None and sum(self.puts.values()) == self.drain_after:
            self.engine.drain()
        return target

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        raise AssertionError("caps.finalize is off: the engine never calls this")

    def landed(self, source: Source, target: Target) -> Landed:
        return Landed(remote_id=target.remote_id)


def manifest(path: Path, ids: list[str]) -> Path:
    path.write_bytes(b"".join(orjson.dumps({"path": "a.png", "id": i}) + b"\n" for i in ids))
    return path


async def test_a_drain_gives_back_the_read_ahead_of_the_batch_it_drops(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    path = manifest(tmp_path / "m.jsonl", [f"id{i}" for i in range(2_000)])
    provider = Fake()
    journal, state = Journal.open(tmp_path / "j", Header(provider="fake", manifest=str(path)))
    with journal:
        engine = Engine(
            provider, journal, state, EngineSettings(RunSettings(put_concurrency=4, lookahead=1))
        )
        provider.engine, provider.drain_after = engine, 50
        outcome = await engine.run(read_manifest(path))
        journal.sync()
    assert outcome.drained and outcome.counters.in_flight == 0
    assert engine._prefetch is not None and engine._prefetch.in_use == 0
    assert engine.tally.counts() == replay(tmp_path / "j").counts()


async def test_a_drain_reads_on_through_entries_done_before_and_no_further(tmp_path: Path) -> None:
    """A re-run drained at once (its output closed) still ends with the whole manifest read.

    It starts nothing: past the first entry not done before it stops reading.
    """
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    path = manifest(tmp_path / "m.jsonl", [f"id{i}" for i in range(30)])
    settings = EngineSettings(RunSettings(put_concurrency=2, lookahead=1), read_batch=4)
    header = Header(provider="fake", manifest=str(path))

    async def drained_run(first: bool) -> tuple[Engine, int]:
        provider = Fake()
        journal, state = Journal.open(tmp_path / "j", header)
        with journal:
            engine = Engine(provider, journal, state, settings)
            if not first:
                engine.drain()  # before the reader's first batch
            await engine.run(read_manifest(path))
            journal.sync()
        return engine, sum(provider.puts.values())

    assert (await drained_run(first=True))[1] == 30
    engine, puts = await drained_run(first=False)
    assert (puts, engine.counters.read, engine.counters.skipped) == (0, 30, 30)
    assert engine.tally.total == 30  # the manifest was read to its end: the run can be complete
    manifest(path, [f"id{i}" for i in range(30)] + [f"new{i}" for i in range(30)])
    engine, puts = await drained_run(first=False)
    assert (puts, engine.counters.skipped) == (0, 30)
    assert engine.counters.read <= 32 and engine.tally.total is None  # stopped in batch 8


async def test_a_manifest_replaced_mid_run_uploads_no_key_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SeenKeys, "EXACT_KEYS", 100)  # past it, repeats are held to the end
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    ids = [f"id{i}" for i in range(300)] + ["id295"]  # a real duplicate near the end, held
    path = manifest(tmp_path / "m.jsonl", ids)

    def entries() -> Iterator[Item | ManifestError]:
        for count, entry in enumerate(read_manifest(path), start=1):
            if count == len(ids) - 1:  # the user regenerates it, new lines first
                tmp = tmp_path / "m.tmp"
                manifest(tmp, [f"new{i}" for i in range(20)] + ids)
                os.replace(tmp, path)
            yield entry

    provider = Fake()
    journal, state = Journal.open(tmp_path / "j", Header(provider="fake", manifest=str(path)))
    with journal:
        engine = Engine(
            provider, journal, state, EngineSettings(RunSettings(put_concurrency=8, lookahead=2))
        )
        outcome = await engine.run(entries())
        journal.sync()
    assert outcome.stop_reason is None
    assert max(provider.puts.values()) == 1 and provider.puts["id295"] == 1
    assert engine.tally.counts() == replay(tmp_path / "j").counts()
