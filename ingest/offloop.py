"""Blocking file reads off the event loop, at about half the CPU of `loop.run_in_executor`.

Owns the reader threads the data plane reads files on (`storage.py`: every
256 KiB chunk of a streamed upload, small files not read ahead, the opens
and stats before them).

How it works: a job (the loop, an asyncio future, the function and its
arguments) goes on one `queue.SimpleQueue`; a few daemon threads, started on
first use, run it and hand the outcome back with `call_soon_threadsafe`.
`run_in_executor` pays for a `concurrent.futures.Future` (a Condition and
its lock), the executor's idle-thread semaphore, a chained asyncio future
and a coroutine-function check on every call: measured under uvloop, 63 µs
of CPU a hop against 29 µs here (benchmarks/README.md, "hot path changes";
a 16 MiB file is 64 hops).

Invariants: a job whose awaiting task was cancelled still runs to its end
and its outcome is dropped (so a caller that must not lose the result, an
open descriptor, shields the await); a job never runs on the event loop's
thread; the threads are the process's, shared by every loop, and a forked
child starts its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

THREADS = min(32, (os.cpu_count() or 1) + 4)  # as many as the default executor's at most

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]
_jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
_started = False
_lock = threading.Lock()


def run(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`fn(*args)` on a reader thread; await the future for its result (or its exception)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    if not _started:
        _start()
    _jobs.put((loop, future, fn, args))
    return future


def _start() -> None:
    global _started
    with _lock:
        if _started:
            return
        for index in range(THREADS):
            threading.Thread(target=_serve, name=f"ingest-read-{index}", daemon=True).start()
        _started = True


def _serve() -> None:
    get = _jobs.get
    while True:
        loop, future, fn, args = get()
        try:
            outcome: tuple[Any, BaseException | None] = (fn(*args), None)
        except BaseException as exc:  # handed to the awaiting task, raised there
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(_settle, future, *outcome)
        del loop, future, fn, args, outcome  # hold nothing while idle


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _after_fork() -> None:
    global _jobs, _started, _lock
    _jobs, _started, _lock = queue.SimpleQueue(), False, threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
