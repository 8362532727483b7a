"""Filling finalize batches: landed items gathered up to the provider's batch size.

Owns `Gatherer`, the one place the finalizers take their batches from. The
finalizers used to take only what was already waiting; as each landed item
woke an idle finalizer at once, Scenario's attach calls (up to 10 assets
each) went out with one asset nearly every time: 2.00 API calls per file on
2,000 files where a bare loop makes 1.1.

How it works: each finalizer task runs a collector that moves items from
its clone of the landed stream into one shared list, never past `size`
items (so the stream's bound still holds the workers back), and a batcher;
one batcher at a time lingers: from its first item it waits for the batch
to fill, at most `linger_s` (on the engine's `Clock`), and not at all while
no upload is in flight (`more_coming`: nothing else can land) or once the
stream has ended (the run is over or drained: what is left goes out at
once). Waiting is on an event and a clock sleep, both safe to cancel, so a
receive is never cancelled with its item.

Invariants: every item received is finalized exactly once, in arrival
order within a batch; no item waits longer than `linger_s` past the moment
it could have gone out alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ingest import handoff
from ingest.clock import Clock

T = TypeVar("T")

LINGER_S = 0.25
"""The longest a short batch waits for more items (a URL lifetime's 1/20 when shorter)."""


def linger_for(url_lifetime_s: float | None) -> float:
    """`LINGER_S`, or less where a landed item's URL (and its bytes) expire soon."""
    return LINGER_S if url_lifetime_s is None else min(LINGER_S, url_lifetime_s / 20)


class Gatherer(Generic[T]):
    """Batches of up to `size` items from the finalizers' landed streams (see the module)."""

    def __init__(
        self, size: int, clock: Clock, linger_s: float, more_coming: Callable[[], bool]
    ) -> None:
        self._size = size
        self._clock = clock
        self._linger_s = linger_s
        self._more_coming = more_coming
        self._pending: list[T] = []
        self._live = 0  # collectors running (one may hold an item, waiting for room)
        self._finished = False  # the landed stream ended (for every clone at once)
        self._arrived = anyio.Event()  # renewed after each wait
        self._room = anyio.Event()
        self._lingering = anyio.Lock()

    async def collect(self, receive: MemoryObjectReceiveStream[T]) -> None:
        """Move items from `receive` into the shared list until the stream ends."""
        self._live += 1
        try:
            async with receive:
                async for item in handoff.Items(receive):
                    while len(self._pending) >= self._size:
                        await self._room.wait()
                    self._pending.append(item)
                    self._arrived.set()
            self._finished = True
        finally:
            self._live -= 1
            self._arrived.set()

    @property
    def _ended(self) -> bool:
        """Nothing more will arrive: the stream ended and no collector holds an item."""
        return self._finished and self._live == 0

    async def batch(self) -> list[T]:
        """The next batch: waits for a first item, then lingers; empty once all is done."""
        async with self._lingering:
            while not self._pending and not self._ended:
                await self._next_arrival(None)
            deadline = self._clock.now() + self._linger_s
            while (
                0 < len(self._pending) < self._size
                and not self._ended
                and self._more_coming()
                and self._clock.now() < deadline
            ):
                await self._next_arrival(deadline)
            taken, self._pending = self._pending[: self._size], self._pending[self._size :]
        self._room.set()
        self._room = anyio.Event()
        return taken

    async def _next_arrival(self, deadline: float | None) -> None:
        """Until an item arrives or the stream ends (or `deadline` passes on the clock)."""
        arrived = self._arrived
        if deadline is None:
            await arrived.wait()
        else:
            async with anyio.create_task_group() as tg:

                async def timer() -> None:
                    await self._clock.sleep(max(0.0, deadline - self._clock.now()))
                    tg.cancel_scope.cancel()

                tg.start_soon(timer)
                await arrived.wait()
                tg.cancel_scope.cancel()
        if self._arrived is arrived and not self._ended:
            self._arrived = anyio.Event()
