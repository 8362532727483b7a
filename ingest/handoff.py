"""Hand-offs between the engine's stages: bounded memory streams without a yield per item.

anyio's `send` and `receive` start with a checkpoint (a trip through the event
loop) even when the stream has room or an item is waiting. Every item crosses
two or three streams, and on small files those trips were a tenth of the
engine's CPU. These helpers take the `*_nowait` path when it cannot block and
fall back to the awaiting call only when it must wait, the same trade anyio
makes for `Semaphore(fast_acquire=True)`. Backpressure and cancellation are
unchanged: a full stream still blocks its sender, and every stage awaits real
I/O for each item, so no task can hold the loop.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

T = TypeVar("T")


async def send(stream: MemoryObjectSendStream[T], item: T) -> None:
    """Put `item` in the stream, waiting only when it is full."""
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


class Items(Generic[T]):
    """`async for item in Items(stream)`: the stream's items until it ends."""

    __slots__ = ("_stream",)

    def __init__(self, stream: MemoryObjectReceiveStream[T]) -> None:
        self._stream = stream

    def __aiter__(self) -> Items[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return self._stream.receive_nowait()
        except anyio.WouldBlock:
            pass
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        try:
            return await self._stream.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
