"""The pacer: never faster than its rate, slows everyone on a throttle, recovers."""

from __future__ import annotations

import itertools

import anyio
import pytest

from ingest.clock import FakeClock
from ingest.pacing import Pacer

pytestmark = pytest.mark.anyio


async def test_unlimited_until_throttled() -> None:
    pacer = Pacer()
    for _ in range(100):
        await pacer.wait()
    assert pacer.stats().rate is None


async def test_starts_never_exceed_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(rate=200.0, clock=clock)
    starts: list[float] = []

    async def caller() -> None:
        for _ in range(5):
            await pacer.wait()
            starts.append(clock.now())

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(caller)
    starts.sort()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 40
    assert min(gaps) >= 0.005 - 1e-9  # slots are 5 ms apart, every one of them


async def test_throttle_pauses_everyone_then_paces_at_what_got_through() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer(clock=clock)
    pacer.on_throttle(retry_after=1.0)  # nothing measured yet: pause only
    assert pacer.stats().rate is None
    assert pacer.stats().paused_for == pytest.approx(1.0)
    clock.advance(1.0)
    for _ in range(40):  # 20 calls/s get through for 2 s
        await pacer.wait()
        pacer.on_success()
        clock.advance(0.05)
    pacer.on_throttle(retry_after=3.0)
    stats = pacer.stats()
    assert stats.throttles == 2
    assert stats.paused_for == pytest.approx(3.0)
    assert stats.rate == pytest.approx(20.0, rel=0.05)
    pacer.on_throttle(retry_after=1.0)  # same burst: no second cut, pause not shortened
    assert pacer.stats().rate == stats.rate
    assert pacer.stats().paused_for == pytest.approx(3.0)


async def test_successes_raise_the_rate_up_to_a_configured_ceiling() -> None:
    clock = FakeClock(0.0)
    pacer = Pacer(rate=10.0, clock=clock)
    for _ in range(20):
        pacer.on_success()
        clock.advance(0.15)  # under 7 calls/s get through
    pacer.on_throttle(None)
    cut = pacer.stats().rate
    assert cut is not None and cut < 10.0
    for _ in range(1000):
        pacer.on_success()
    assert pacer.stats().rate == 10.0


async def test_thousands_of_calls_a_second_are_measured_in_bounded_memory() -> None:
    clock = FakeClock(100.0)
    pacer = Pacer(clock=clock)
    pacer.on_throttle(retry_after=1.0)
    clock.advance(1.0)
    for _ in range(20_000):  # 5,000 calls/s get through for 4 s
        await pacer.wait()
        pacer.on_success()
        clock.advance(0.0002)
    assert len(pacer._starts) == len(pacer._successes) == Pacer.MAX_EVENTS
    pacer.on_throttle(retry_after=1.0)
    assert pacer.stats().rate == pytest.approx(5_000.0, rel=0.05)


async def test_the_fake_clock_wakes_sleepers_in_deadline_order_without_real_time() -> None:
    clock = FakeClock(0.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "hour", 3600.0)
        tg.start_soon(sleeper, "second", 1.0)
        tg.start_soon(sleeper, "minute", 60.0)
    assert woke == [("second", 1.0), ("minute", 60.0), ("hour", 3600.0)]
    assert clock.time() - clock.now() == FakeClock(0.0).time()  # wall and monotonic move together


async def test_a_cancelled_fake_sleep_leaves_the_clock_alone() -> None:
    clock = FakeClock(0.0)
    with anyio.move_on_after(0):  # cancelled at its first checkpoint
        await clock.sleep(3600.0)
    await clock.sleep(1.0)
    assert clock.now() == 1.0
