"""FakeClock: time jumps only when every task is blocked (found by review: it jumped
after a fixed 16 loop turns, so a task needing more turns before its sleep was overtaken)."""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import pytest

from ingest.clock import FakeClock


@pytest.mark.anyio
@pytest.mark.parametrize("turns", [0, 20, 200])
async def test_a_busy_task_is_never_overtaken_by_a_long_sleep(turns: int) -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, busy: int, seconds: float) -> None:
        for _ in range(busy):
            await anyio.lowlevel.checkpoint()  # runnable all along: not blocked
        await clock.sleep(seconds)
        woke.append((name, clock.now() - 1000.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "hour", 0, 3600.0)
        tg.start_soon(sleeper, "second", turns, 1.0)
    assert woke == [("second", 1.0), ("hour", 3600.0)]


@pytest.mark.anyio
async def test_no_time_passes_while_run_sync_works_in_a_thread() -> None:
    clock = FakeClock()
    release = threading.Event()
    seen: list[float] = []

    def work() -> float:
        release.wait(5.0)  # until the sleeper below has had every chance to jump
        return clock.now()

    async def sleeper() -> None:
        await clock.sleep(10.0)
        seen.append(clock.now())

    async def let_go() -> None:
        await anyio.sleep(0.3)  # real time: more than anyio's own 0.1 s poll
        release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        tg.start_soon(let_go)
        assert await clock.run_sync(work) == 1000.0
    assert seen == [1010.0]


@pytest.mark.anyio
async def test_a_cancelled_sleeper_hands_the_lead_on() -> None:
    clock = FakeClock()
    with anyio.move_on_after(0) as scope:
        await clock.sleep(5.0)
    assert scope.cancelled_caught
    await clock.sleep(2.0)
    assert clock.now() == 1002.0
