"""The contract every provider adapter passes against the emulator (rclone `fstests` style).

Each test runs once per provider that has an adapter and a harness; a test
that needs something a provider declares it cannot do (`Capabilities`) is
skipped with that reason, and nothing else is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import pytest

from ingest.config import RunSettings
from ingest.engine import Engine, EngineSettings
from ingest.errors import Action, ManifestError, TransferError
from ingest.item import Item, Source
from ingest.journal import Header, Journal, replay
from ingest.providers.base import Landed, Provider, Target
from ingest.sim import FaultPlan, SimServer
from tests.contract.harness import (
    HARNESSES,
    Harness,
    adapter,
    available,
    emulator,
    make_source,
    rejected_source,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=available())
def harness(request: pytest.FixtureRequest) -> Harness:
    return HARNESSES[request.param]


def sha(source: Source) -> str:
    return hashlib.sha256(source.item.path.read_bytes()).hexdigest()


async def land(provider: Provider, source: Source) -> Landed:
    """One item through every step, as the engine would."""
    target = await provider.acquire(source)
    target = await provider.transfer(source, target)
    if provider.caps.finalize:
        [outcome] = await provider.finalize([(source, target)])
        if isinstance(outcome, TransferError):
            raise outcome
        return outcome
    return provider.landed(source, target)


# -- each step is safe to repeat ---------------------------------------------


async def test_steps_are_safe_to_repeat(harness: Harness, tmp_path: Path) -> None:
    source = make_source(tmp_path, 1)
    async with emulator(harness) as sim, adapter(harness, sim) as provider:
        first = await provider.acquire(source)
        second = await provider.acquire(source)  # a re-sign: a fresh target, no error
        target = await provider.transfer(source, second)
        target = await provider.transfer(source, target)  # the same transfer again
        if provider.caps.finalize:
            [one] = await provider.finalize([(source, target)])
            [two] = await provider.finalize([(source, target)])
            assert isinstance(one, Landed) and isinstance(two, Landed)
            assert one.remote_id == two.remote_id
        landed = harness.landed(sim)
        assert landed[sha(source)] == 1, "repeating steps committed the bytes more than once"
        assert first.remote_id != "" or target.remote_id != ""


async def test_targets_hide_their_url(harness: Harness, tmp_path: Path) -> None:
    source = make_source(tmp_path, 2)
    async with emulator(harness) as sim, adapter(harness, sim) as provider:
        target = await provider.acquire(source)
    if target.url is not None:
        assert target.url not in repr(target)
        assert "Signature" not in repr(target)


# -- auth failure stops the run ----------------------------------------------


async def test_bad_key_is_a_stop_with_a_clear_message(harness: Harness, tmp_path: Path) -> None:
    source = make_source(tmp_path, 3)
    wrong = {name: "wrong-" + value for name, value in harness.secrets.items()}
    keys = frozenset(harness.secrets.values())
    async with (
        emulator(harness, api_keys=keys) as sim,
        adapter(harness, sim, secrets=wrong) as provider,
    ):
        with pytest.raises(TransferError) as info:
            await land(provider, source)
    assert info.value.action is Action.STOP
    assert info.value.status in (400, 401, 403)
    for value in wrong.values():
        assert value not in str(info.value)


# -- an expired lease is re-signed -------------------------------------------


async def test_expired_url_asks_for_a_new_one(harness: Harness, tmp_path: Path) -> None:
    source = make_source(tmp_path, 4)
    async with emulator(harness) as sim, adapter(harness, sim) as provider:
        if provider.caps.url_lifetime_s is None:
            pytest.skip(f"{harness.name} declares no expiring upload URL")
        target = await provider.acquire(source)
        sim.set_faults(FaultPlan.parse("skew=86400"))  # a day later, for the server
        with pytest.raises(TransferError) as info:
            await provider.transfer(source, target)
        assert info.value.action is Action.RESIGN
        sim.set_faults(FaultPlan())
        assert harness.landed(sim)[sha(source)] == 0


async def test_engine_resigns_a_lease_that_expired_in_the_queue(
    harness: Harness, tmp_path: Path
) -> None:
    sources = [make_source(tmp_path, i) for i in range(4)]
    async with emulator(harness) as sim, adapter(harness, sim) as provider:
        if provider.caps.url_lifetime_s is None:
            pytest.skip(f"{harness.name} declares no expiring upload URL")
        expire_first = ExpireOnce(provider, sim)
        items = [s.item for s in sources]
        engine = await run_engine(expire_first, tmp_path, items)  # type: ignore[arg-type]  # name
        landed = harness.landed(sim)
    assert engine.counters.resigns >= 1
    assert engine.counters.failed == 0
    assert all(landed[sha(s)] == 1 for s in sources)


# -- 429 with Retry-After ----------------------------------------------------


async def test_429_carries_retry_after_and_is_retried(harness: Harness, tmp_path: Path) -> None:
    source = make_source(tmp_path, 5)
    plan = FaultPlan.parse("api.429=1,api.retry_after=2")
    async with emulator(harness, faults=plan) as sim, adapter(harness, sim) as provider:
        with pytest.raises(TransferError) as info:
            await land(provider, source)
    assert info.value.action is Action.RETRY
    assert info.value.status == 429
    assert info.value.retry_after == 2


async def test_engine_honours_retry_after_for_every_call(harness: Harness, tmp_path: Path) -> None:
    sources = [make_source(tmp_path, i) for i in range(3)]
    async with (
        emulator(harness, faults=FaultPlan.parse("seed=1,api.429=1,api.retry_after=1")) as sim,
        adapter(harness, sim) as provider,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: lift_faults_after_first_429(sim))
            engine = await run_engine(provider, tmp_path, [s.item for s in sources])
        landed = harness.landed(sim)
    assert engine.counters.throttles >= 1
    assert engine.api_pacer.stats().throttles >= 1
    assert engine.counters.failed == 0
    assert all(landed[sha(s)] == 1 for s in sources)


async def lift_faults_after_first_429(sim: SimServer) -> None:
    await sim.state.wait_until(lambda s: s.stats().api_429 >= 1)
    sim.set_faults(FaultPlan())


# -- a rejected item fails alone ---------------------------------------------


async def test_rejected_item_fails_alone(harness: Harness, tmp_path: Path) -> None:
    good = [make_source(tmp_path, i) for i in range(3)]
    bad = rejected_source(tmp_path, harness)
    async with emulator(harness) as sim, adapter(harness, sim) as provider:
        with pytest.raises(TransferError) as info:
            await land(provider, bad)
        assert info.value.action is Action.FAIL_ITEM
        assert info.value.message
        for source in good:
            await land(provider, source)
        landed = harness.landed(sim)
    assert all(landed[sha(s)] == 1 for s in good)


# -- resume after a crash between any two steps ------------------------------


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


class CrashAfter:
    """Wraps an adapter and dies right after `step` succeeds for the first item.

    Its `name` is the wrapped adapter's, set per instance (the journal must
    match on resume), where `Provider` declares a ClassVar: hence the two
    `type: ignore[arg-type]` at `run_engine`'s calls with a wrapper.
    """

    def __init__(self, inner: Provider, step: str) -> None:
        self.inner, self.step = inner, step
        self.name, self.caps = inner.name, inner.caps

    async def acquire(self, source: Source) -> Target:
        target = await self.inner.acquire(source)
        self._maybe_crash("acquire", source.item.key)
        return target

    async def transfer(self, source: Source, target: Target) -> Target:
        target = await self.inner.transfer(source, target)
        self._maybe_crash("transfer", source.item.key)
        return target

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        landed = await self.inner.finalize(batch)
        self._maybe_crash("finalize", batch[0][1].remote_id)
        return landed

    def landed(self, source: Source, target: Target) -> Landed:
        return self.inner.landed(source, target)

    def _maybe_crash(self, step: str, _who: str) -> None:
        if step == self.step:
            raise Crash(step)


class ExpireOnce:
    """Wraps an adapter so the first target it hands out is already dead at the server."""

    def __init__(self, inner: Provider, sim: SimServer) -> None:
        self.inner, self.sim = inner, sim
        self.name, self.caps = inner.name, inner.caps
        self._done = False

    async def acquire(self, source: Source) -> Target:
        return await self.inner.acquire(source)

    async def transfer(self, source: Source, target: Target) -> Target:
        if not self._done:
            self._done = True
            self.sim.set_faults(FaultPlan.parse("skew=86400"))
            try:
                return await self.inner.transfer(source, target)
            finally:
                self.sim.set_faults(FaultPlan())
        return await self.inner.transfer(source, target)

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        return await self.inner.finalize(batch)

    def landed(self, source: Source, target: Target) -> Landed:
        return self.inner.landed(source, target)


def entries(items: list[Item]) -> Iterator[Item | ManifestError]:
    yield from items


async def run_engine(provider: Provider, tmp: Path, items: list[Item]) -> Engine:
    journal_path = tmp / "contract.journal"
    header = Header(provider=provider.name, manifest=str(tmp / "m"))
    journal, state = Journal.open(journal_path, header)
    run = RunSettings(put_concurrency=2, api_concurrency=2, backoff_base_s=0.01)
    with journal:
        engine = Engine(provider, journal, state, EngineSettings(run))
        await engine.run(entries(items))
    return engine


@pytest.mark.parametrize("step", ["acquire", "transfer", "finalize"])
async def test_resume_after_a_crash_lands_each_item_once(
    harness: Harness, tmp_path: Path, step: str
) -> None:
    sources = [make_source(tmp_path, i) for i in range(3)]
    items = [s.item for s in sources]
    async with emulator(harness) as sim, adapter(harness, sim) as provider:
        if step == "finalize" and not provider.caps.finalize:
            pytest.skip(f"{harness.name} has no finalize step")
        with pytest.raises(BaseExceptionGroup) as info:
            await run_engine(CrashAfter(provider, step), tmp_path, items)  # type: ignore[arg-type]  # name
        assert info.group_contains(Crash)
        engine = await run_engine(provider, tmp_path, items)
        landed = harness.landed(sim)
    assert engine.counters.failed == 0
    state = replay(tmp_path / "contract.journal")
    assert all(state.is_done(i.key) for i in items)
    for source in sources:
        copies = landed[sha(source)]
        if step == "transfer" and not provider.caps.finalize:
            # The bytes landed but the process died before journaling it, and the
            # provider offers no way to find that out: at most one extra copy.
            assert 1 <= copies <= 2
        else:
            assert copies == 1, f"{source.item.key} landed {copies} times after a crash at {step}"
