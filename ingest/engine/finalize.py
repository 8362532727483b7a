"""Stage 4: finalize landed items in batches (complete, attach) for providers that need it.

Owns the "landed, to finalize" hand-off and the finalizers that drain it.
A worker whose PUT landed journals `up` and sends a `ToFinalize`; triage
sends one for an item whose bytes landed in an earlier run (`source` is then
`None`: only the journal knows its size). A finalizer takes what is waiting,
up to the provider's `finalize_batch`, in one call.

Invariant: a finalize that fails keeps the item's target in its `fail`
record (`st: up`), so a resume finalizes it without uploading again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ingest import handoff
from ingest.engine.worker import Calls
from ingest.errors import TransferError
from ingest.item import Source
from ingest.providers.base import Landed, Provider, Target


@dataclass(frozen=True, slots=True)
class ToFinalize:
    """An item whose bytes landed; its provider's step after the upload is left."""

    key: str
    line: int
    target: Target
    source: Source | None  # None: landed in an earlier run


class Outcomes(Protocol):
    """Where a finalizer reports each item (the engine's bookkeeping)."""

    def done(self, key: str, line: int, source: Source | None, landed: Landed) -> None: ...
    def fail(self, key: str, line: int, err: TransferError, *, landing: ToFinalize) -> None: ...


class Finalizer:
    """One finalizer task's loop: batch what is waiting, finalize it, report each item."""

    def __init__(self, provider: Provider, calls: Calls, outcomes: Outcomes) -> None:
        self._provider = provider
        self._calls = calls
        self._outcomes = outcomes

    async def run(self, receive: MemoryObjectReceiveStream[ToFinalize]) -> None:
        batch_size = self._provider.caps.finalize_batch
        async with receive:
            async for first in handoff.Items(receive):
                batch = [first]
                while len(batch) < batch_size:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self.finalize(batch)

    async def finalize(self, batch: list[ToFinalize]) -> None:
        pairs = [(landing.source, landing.target) for landing in batch]
        try:
            results = await self._calls.api(lambda: self._provider.finalize(pairs))
        except TransferError as err:
            results = [err] * len(batch)
        outcomes = self._outcomes
        for landing, result in zip(batch, results, strict=True):
            match result:
                case TransferError():
                    # Keep what a resume needs to finalize without uploading again.
                    outcomes.fail(landing.key, landing.line, result, landing=landing)
                case Landed():
                    outcomes.done(landing.key, landing.line, landing.source, result)
