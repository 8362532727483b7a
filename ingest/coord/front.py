"""The library front door's coordinated run: `open_upload(..., coordinator=URL)`.

Owns `CoordinatedUpload`, the `Upload` handle whose run is one `Worker` of
a run shared through Redis (what `ingest run --coordinator URL` does), and
the `Result` it returns: the run's counts as the coordinator holds them.

How it works: `open_upload` (and so `upload` / `upload_sync`) refuses what
a worker cannot take (a journal, the emulator, `force`: the record is the
coordinator's) and hands its `wiring.Plan` here. Entering the block starts
the worker in a task of the handle's own; `drain` and `abort` steer the
worker (so its chunk in flight is handed back), `snapshot` shows the engine
of the chunk in hand (or the last one's), `wait` gives the `Result`.

Invariants: the `Result`'s counts are every worker's (`done`, `failed`,
`rejected` by manifest line), `total` the manifest's entries, `in_flight`
the entries not settled yet, `journal` None (there is none) and `run_name` set; it is
`complete` only when every entry of the run is done. Importing this module
imports nothing of redis.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

from ingest.api.handle import Upload
from ingest.api.result import Result
from ingest.coord.worker import Coordinator, Worker, WorkerResult

if TYPE_CHECKING:
    from ingest.api import wiring
    from ingest.engine import Engine
    from ingest.engine.outcomes import Observer


class CoordinatedUpload(Upload):
    """One worker of a shared run, under the caller's control (`async with`)."""

    def __init__(
        self,
        plan: wiring.Plan,
        coordinator: Coordinator,
        *,
        observer: Observer | None = None,
        retry_failed: bool = False,
        reupload_changed: bool = False,
    ) -> None:
        super().__init__(
            plan, observer=observer, retry_failed=retry_failed, reupload_changed=reupload_changed
        )
        self.worker = Worker(
            plan,
            coordinator,
            observer=observer,
            retry_failed=retry_failed,
            reupload_changed=reupload_changed,
        )
        self.run_name = self.worker.run_name
        self.worker_result: WorkerResult | None = None  # once it has ended

    @property
    def journal(self) -> None:
        """None, as `Result.journal`: no journal is written beside the manifest."""
        return None

    def drain(self) -> None:
        """Take no new chunk; the chunk in hand finishes what is in flight, then is handed back."""
        self.worker.drain()

    def abort(self) -> None:
        """End now; items in flight are redone by whichever worker takes their chunk next."""
        self.worker.abort()

    def _open(self) -> tuple[Engine, anyio.Event]:
        """The engine of the chunk in hand (or the last one's), for `snapshot`."""
        finished = self._running()
        engine = self.worker.last_engine
        if engine is None:
            raise RuntimeError("this worker has not taken a chunk yet: no snapshot to show")
        return engine, finished

    async def __aenter__(self) -> CoordinatedUpload:
        if self._finished is not None:
            raise RuntimeError("an Upload runs once: call open_upload again for another run")
        finished = self._finished = anyio.Event()
        self._tasks = tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(self._work, finished)
        return self

    async def _work(self, finished: anyio.Event) -> None:
        started = time.monotonic()
        try:
            result = self.worker_result = await self.worker.run()
            self._result = _result(result, time.monotonic() - started, self.worker.drained)
        except Exception as exc:  # a ConfigError, CoordinatorError...: raised by `wait`
            self._error = exc
        finally:
            finished.set()


def _result(w: WorkerResult, elapsed_s: float, drained: bool) -> Result:
    c = w.counts
    return Result(
        done=c.done,
        failed=c.failed,
        rejected=c.rejected,
        in_flight=max(0, w.entries - w.settled),
        total=w.entries,
        stop_reason=w.stop_reason,
        stop_message=w.stop_message,
        drained=drained and w.stop_reason is None,
        journal=None,
        elapsed_s=elapsed_s,
        this_run=w.this_worker,
        run_name=w.run_name,
    )
