"""`ingest.offloop`: blocking reads on reader threads, outcomes back on the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ingest import offloop


@pytest.mark.anyio
async def test_the_result_comes_back_from_another_thread() -> None:
    here = threading.get_ident()
    assert await offloop.run(threading.get_ident) != here
    assert await offloop.run(divmod, 7, 2) == (3, 1)


@pytest.mark.anyio
async def test_the_exception_is_raised_in_the_awaiting_task() -> None:
    with pytest.raises(FileNotFoundError):
        await offloop.run(open, "/nonexistent/ingest-offloop-test")


@pytest.mark.anyio
async def test_a_cancelled_wait_drops_the_outcome_and_the_threads_go_on() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(5)
        finished.set()
        return "late"

    waiter = asyncio.ensure_future(offloop.run(blocking))
    assert await asyncio.to_thread(started.wait, 5)
    waiter.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await asyncio.to_thread(finished.wait, 5)  # it ran to its end; the outcome went nowhere
    assert await offloop.run(str.upper, "next") == "NEXT"


def test_a_loop_that_closed_before_the_answer_does_not_stop_the_threads() -> None:
    release, finished = threading.Event(), threading.Event()

    def slow() -> None:
        release.wait(5)
        finished.set()

    async def start() -> None:
        offloop.run(slow)  # never awaited: the loop ends first

    asyncio.run(start())
    release.set()
    assert finished.wait(5)

    async def again() -> int:
        return await offloop.run(len, "abc")

    assert asyncio.run(again()) == 3
