"""The conversion lane: images that `--convert` must convert, converted apart from the upload workers.

Owns `Lane`: which sources it takes (`takes`), the tasks that convert
them (`run`), one per converter process, and when a second conversion may
start beside the first (`_turn`).

Why: a conversion takes tens of milliseconds of a converter. Done in an
upload worker (`Preparer.prepare`, as every item was), it held that worker
while it waited for a converter; with 30 % of a mixed folder to convert,
the workers were soon all waiting and the JPEG/PNG uploads went at the
converters' pace (`benchmarks/README.md`, Convert: 184 → 74 files/s).

How it works: the engine's reader routes a `Source` the converter needs
(a local file or a shard's member; not a URL, whose type is known only
once it is fetched, nor a `Redo`) to the lane's queue without its
read-ahead bytes (the converter reads the file or member again), so a
queued image holds no memory budget. Each task takes one, converts it
(`Preparer.source`) and hands the converted `Source` to the upload
workers' stream, where `prepare` has nothing left to do. Beyond `QUEUE`
waiting sources the reader waits, as for a full upload stream. One
conversion runs whenever there is one to run; a second (and more, up to
the converter's processes) only while the upload workers have nothing
queued: while they have, the uploads' event loop needs its core (before
this rule, two converter processes beside the uploads took their pace from
0.70x to 0.47x of a run without conversions, where one left it at 0.70x:
medians of 3 rounds, loaded machine); once they wait for work, the
conversions are what the run waits for, and take every core.
Whether the workers have work queued is looked at every `POLL_S`.

Invariants: a conversion that fails is its item's failure, as in a
worker; after a drain nothing more is converted (the items are simply the
next run's); after an abort (the lane's tasks cancelled) a conversion in
flight has `STOP_GRACE_S` to end, then its process is stopped
(`Converter.stop`), and its item is the next run's, not failed; the lane's tasks end when the reader closes the queue, and
close their clones of the upload stream, so the upload workers end after
the last converted item; when the workers are gone first (an aborted run),
a converted item is left for the next run, as one not yet read; at least
one conversion may always run, so the lane never waits on itself.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ingest import handoff
from ingest.clock import SYSTEM, Clock
from ingest.engine.triage import Redo
from ingest.errors import TransferError
from ingest.item import Source
from ingest.preparing import Preparer

QUEUE = 4096  # sources waiting to convert, without their bytes (~1 KiB each)
POLL_S = 0.02  # how often a task waiting for its turn looks at the upload workers' queue
STOP_GRACE_S = 0.5  # an aborted run's conversion may end by itself this long, else is stopped


class Lane:
    """The engine's conversion lane (only with `--convert`)."""

    __slots__ = (
        "_active",
        "_clock",
        "_converter",
        "_draining",
        "_fail",
        "_preparer",
        "queue",
        "receive",
        "workers",
    )

    def __init__(
        self,
        preparer: Preparer,
        fail: Callable[[str, int, TransferError], None],
        draining: Callable[[], bool],
        clock: Clock = SYSTEM,
    ) -> None:
        converter = preparer.converter
        assert converter is not None  # the engine makes a lane only with --convert
        self._converter, self._preparer, self._clock = converter, preparer, clock
        self._fail, self._draining = fail, draining
        self._active = 0  # tasks converting (or waiting for a source to convert)
        self.workers = converter.workers
        # The reader sends (and closes `queue` when it ends); each task gets a clone of `receive`.
        self.queue, self.receive = anyio.create_memory_object_stream[Source](QUEUE)

    def takes(self, source: Source) -> bool:
        return source.item.url is None and self._converter.needs(source)

    async def run(
        self,
        receive: MemoryObjectReceiveStream[Source],
        send: MemoryObjectSendStream[Source | Redo],
    ) -> None:
        """Convert what the reader queued, one at a time, and pass it to the upload workers."""
        async with receive, send:
            items = handoff.Items(receive)
            while True:
                await self._turn(send)
                self._active += 1  # no await since `_turn`: two tasks cannot both take the first
                try:
                    try:
                        source = await anext(items)
                    except StopAsyncIteration:
                        return
                    if self._draining():
                        continue  # not started: the next run picks it up
                    converted = await self._converted(source)
                    if isinstance(converted, TransferError):
                        self._fail(source.item.key, source.item.line, converted)
                        continue
                    try:
                        await handoff.send(send, converted)
                    except anyio.BrokenResourceError:
                        return  # the upload workers are gone (the run was aborted): the next run's
                finally:
                    self._active -= 1

    async def _converted(self, source: Source) -> Source | TransferError:
        """`source` converted, or why not; cancelled (the run aborted), it stops the
        conversion's process: anyio waits for a thread to return, and the conversion's would
        have held the run's end for as long as it took (up to `convert_timeout_s`)."""
        finished = stopped = False
        result: Source | TransferError | None = None
        returned = anyio.Event()

        async def stop_if_cancelled() -> None:
            nonlocal stopped
            try:
                await anyio.sleep_forever()
            finally:
                if not finished:  # cancelled from outside: this task's scope, or an abort
                    with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE_S):
                        await returned.wait()  # one about to end keeps its process
                    if not returned.is_set():
                        stopped = True
                        self._converter.stop(source.item.key)

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_if_cancelled)
            try:
                result = await self._preparer.source(source)
            except TransferError as err:
                result = err
            finally:
                finished = result is not None
                returned.set()
                tg.cancel_scope.cancel()
        if stopped:  # its failure is the stop's, not the item's: the cancellation goes on
            await anyio.lowlevel.checkpoint()
        assert result is not None  # else the cancellation went on, out of the task group
        return result

    async def _turn(self, send: MemoryObjectSendStream[Source | Redo]) -> None:
        """Until this task may convert: at once if none is, else once the uploads wait for work."""
        while self._active and send.statistics().current_buffer_used:
            await self._clock.sleep(POLL_S)
