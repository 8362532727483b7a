"""ModelHunter forgets a file not completed before its upload URL expired (issue 12, item 2).

Complete Upload answers ``404 {"code":"FILE_NOT_FOUND","message":"File not
found or upload URL has expired"}``; the emulator plays that by default. An
item whose bytes landed but whose complete came too late (a resume 16 minutes
later, or a complete held up in the run itself) is uploaded once more under a
new file id and completed, instead of failing. The gaps (is complete
idempotent? what does a 429 carry? is Content-Type signed?) are played each
way by an emulator setting, and the adapter is run against each.

The emulator's clock is moved with the ``skew`` fault; the engine runs on the
real clock against the in-process emulator (no waits: nothing sleeps).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Literal

import orjson
import pytest

from ingest.config import RunSettings
from ingest.engine import Engine, EngineSettings
from ingest.errors import Action, ManifestError, TransferError
from ingest.item import Item, Source
from ingest.journal import Journal, Replay, records, replay
from ingest.journal.header import Header
from ingest.providers.base import Landed, Provider, Target
from ingest.sim import FaultPlan, SimServer
from ingest.sim.modelhunter import completed_by_sha, files_of
from ingest.sim.settings import ModelHunterSimSettings, ThrottleBody
from tests.contract.harness import HARNESSES, adapter, emulator, make_source

pytestmark = pytest.mark.anyio

MH = HARNESSES["modelhunter"]
LIFETIME = 900  # "Valid for 15 minutes" (Get Upload URL)


def sha(source: Source) -> str:
    return hashlib.sha256(source.item.path.read_bytes()).hexdigest()


def last_record(tmp: Path, key: str) -> dict[str, object]:
    """The journal's last record of `key`."""
    lines = (tmp / "journal").read_bytes().splitlines()[1:]
    [*_, last] = [rec for rec in map(orjson.loads, lines) if rec.get("k") == key]
    return dict(last)


def done_id(tmp: Path, key: str) -> str:
    rec = last_record(tmp, key)
    assert rec["s"] == "done", rec
    return str(rec["r"])


def puts_by_sha(sim: SimServer) -> Counter[str]:
    """How many times each file's bytes landed in storage (under any file id)."""
    return Counter(obj.sha256 for obj in sim.state.objects.values())


@contextlib.asynccontextmanager
async def modelhunter(**options: object) -> AsyncIterator[tuple[SimServer, Provider]]:
    settings = ModelHunterSimSettings(**options)  # type: ignore[arg-type]  # keyword overrides
    async with (
        emulator(MH, url_lifetime_s=LIFETIME, modelhunter=settings) as sim,
        adapter(MH, sim) as provider,
    ):
        yield sim, provider


def _entries(items: list[Item]) -> Iterator[Item | ManifestError]:
    yield from items


async def run(provider: Provider, tmp: Path, items: list[Item]) -> tuple[Engine, Replay]:
    """One engine run on `tmp/journal` (resumed when it exists)."""
    path = tmp / "journal"
    journal, state = Journal.open(path, Header(provider=provider.name, manifest=str(tmp / "m")))
    with journal:
        engine = Engine(provider, journal, state, EngineSettings(RunSettings(backoff_base_s=0.01)))
        await engine.run(_entries(items))
    return engine, replay(path)


async def landed_earlier(provider: Provider, tmp: Path, sources: list[Source]) -> list[str]:
    """What a run killed after its PUTs leaves: each item journaled `up`, never completed."""
    path = tmp / "journal"
    journal, _ = Journal.open(path, Header(provider=provider.name, manifest=str(tmp / "m")))
    ids = []
    with journal:
        journal.record(records.run_started(1.0, 4242))
        for source in sources:
            target = await provider.acquire(source)
            await provider.transfer(source, target)
            journal.record(records.acquired(source.item.key, target.remote_id))
            journal.record(
                records.uploaded(source.item.key, target.remote_id, source.size, source.mtime_ns)
            )
            ids.append(target.remote_id)
        journal.sync()
    return ids


async def test_a_resume_16_minutes_after_the_put_uploads_again_once(tmp_path: Path) -> None:
    late, recent = make_source(tmp_path, 1), make_source(tmp_path, 2)
    async with modelhunter() as (sim, provider):
        [late_id] = await landed_earlier(provider, tmp_path, [late])
        sim.set_faults(FaultPlan(skew=120))
        [recent_id] = await landed_earlier(provider, tmp_path, [recent])
        sim.set_faults(FaultPlan(skew=960))  # the resume: 16 and 14 minutes after the PUTs
        engine, state = await run(provider, tmp_path, [late.item, recent.item])
        puts, completed, files = puts_by_sha(sim), completed_by_sha(sim), files_of(sim)
    assert engine.counters.failed == 0 and engine.stop_reason is None
    assert state.is_done(late.item.key) and state.is_done(recent.item.key)
    # 16 minutes: forgotten (404 FILE_NOT_FOUND), so uploaded again once, under a new id.
    assert puts[sha(late)] == 2 and completed[sha(late)] == 1
    assert files[late_id].completed is None
    new_id = done_id(tmp_path, late.item.key)
    assert new_id != late_id and files[new_id].completed is not None
    # 14 minutes: still known, completed as it is.
    assert puts[sha(recent)] == 1 and done_id(tmp_path, recent.item.key) == recent_id
    assert engine.counters.puts == 1


class LateComplete:
    """Wraps the adapter: its first `late` completes reach the API only after the URL expired."""

    def __init__(self, inner: Provider, sim: SimServer, late: int = 1) -> None:
        self.inner, self.sim = inner, sim
        self.name, self.caps = inner.name, inner.caps
        self.late = late

    async def acquire(self, source: Source) -> Target:
        return await self.inner.acquire(source)

    async def transfer(self, source: Source, target: Target) -> Target:
        return await self.inner.transfer(source, target)

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        if self.late:
            self.late -= 1
            self.sim.set_faults(FaultPlan(skew=self.sim.faults.skew + LIFETIME + 60))
        return await self.inner.finalize(batch)

    def landed(self, source: Source, target: Target) -> Landed:
        return self.inner.landed(source, target)


async def test_a_complete_held_up_past_the_expiry_uploads_again_in_the_same_run(
    tmp_path: Path,
) -> None:
    source = make_source(tmp_path, 3)
    async with modelhunter() as (sim, inner):
        provider = LateComplete(inner, sim)
        engine, state = await run(provider, tmp_path, [source.item])  # type: ignore[arg-type]  # name
        puts, completed = puts_by_sha(sim), completed_by_sha(sim)
    assert state.is_done(source.item.key) and engine.counters.failed == 0
    assert puts[sha(source)] == 2 and completed[sha(source)] == 1


async def test_a_file_forgotten_again_after_the_new_upload_fails_the_item(tmp_path: Path) -> None:
    """At most one new upload per run: a complete refused twice fails the item, saying why."""
    source = make_source(tmp_path, 4)
    async with modelhunter() as (sim, inner):
        provider = LateComplete(inner, sim, late=2)
        engine, _ = await run(provider, tmp_path, [source.item])  # type: ignore[arg-type]  # name
        puts = puts_by_sha(sim)
    assert engine.counters.failed == 1 and puts[sha(source)] == 2
    failure = last_record(tmp_path, source.item.key)
    assert (failure["s"], failure["a"], failure["c"]) == ("fail", "fail_item", "FILE_NOT_FOUND")
    assert "gone again after a new upload" in str(failure["e"]) and "st" in failure


class LostAnswer(LateComplete):
    """Wraps the adapter: the answer to its first complete is lost (the API did complete)."""

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        result = await self.inner.finalize(batch)
        if self.late:
            self.late = 0
            raise TransferError(
                "connection reset", action=Action.RETRY, code="network", provider="mh", op="x"
            )
        return result


@pytest.mark.parametrize("repeat", ["same", "conflict"])
async def test_a_lost_complete_answer_ends_done_whether_complete_is_idempotent_or_not(
    tmp_path: Path, repeat: Literal["same", "conflict"]
) -> None:
    source = make_source(tmp_path, 5)
    async with modelhunter(complete_repeat=repeat) as (sim, inner):
        provider = LostAnswer(inner, sim)
        engine, state = await run(provider, tmp_path, [source.item])  # type: ignore[arg-type]  # name
        puts, completed = puts_by_sha(sim), completed_by_sha(sim)
        files = files_of(sim)
    assert state.is_done(source.item.key) and engine.counters.failed == 0
    done = files[done_id(tmp_path, source.item.key)]
    assert done.completed is not None and done.completed["url"]
    # Idempotent: the repeat answers the same file. Not: one more upload, never a lost item.
    expected = 1 if repeat == "same" else 2
    assert puts[sha(source)] == completed[sha(source)] == expected


@pytest.mark.parametrize("body", ["envelope", "text", "empty"])
async def test_a_429_is_retried_whatever_its_body(tmp_path: Path, body: ThrottleBody) -> None:
    source = make_source(tmp_path, 6)
    async with modelhunter(throttle_body=body) as (sim, provider):
        sim.set_faults(FaultPlan.parse("api.429=1,api.retry_after=2"))
        with pytest.raises(TransferError) as info:
            await provider.acquire(source)
    err = info.value
    assert (err.action, err.status, err.retry_after) == (Action.RETRY, 429, 2)


@pytest.mark.parametrize("signed", [True, False])
async def test_the_put_lands_whether_content_type_is_signed_or_not(
    tmp_path: Path, signed: bool
) -> None:
    source = make_source(tmp_path, 7, kind="jpeg")
    async with modelhunter(sign_content_type=signed) as (sim, provider):
        target = await provider.acquire(source)
        assert ("content-type%3Bhost" in str(target.url)) is signed
        await provider.transfer(source, target)
        [landed] = await provider.finalize([(source, target)])
        assert isinstance(landed, Landed) and completed_by_sha(sim)[sha(source)] == 1
