"""Stage 4: finalize landed items in batches (complete, attach) for providers that need it.

Owns the "landed, to finalize" hand-off and the finalizers that drain it.
A worker whose PUT landed journals `up` and sends a `ToFinalize`; triage
sends one for an item whose bytes landed in an earlier run (`source` is then
`None`: only the journal knows its size). A finalizer takes what is waiting,
up to the provider's `finalize_batch`, in one call; where that is more than
one, batches are filled across the finalizers (`batching.Gatherer`: a short
linger while uploads are in flight).

A finalize answered with RESIGN says the landed bytes are gone at the
provider (ModelHunter forgets a file not completed before its upload URL
expired): the item is uploaded anew, once, with a new target (a resumed item's
file is checked first, as triage would), journaled `up` again and finalized.
That upload is a task of its own, counted in flight, through the workers'
`Calls.upload` (the API pacer and limit, a PUT slot, the retry and re-sign
rules), up to `put_concurrency + lookahead` at once, as many as the workers;
the finalizer goes on finalizing meanwhile (it used to upload each such item
itself, so no more than api_concurrency/2 at once and no completes while).

Invariant: a finalize that fails keeps the item's target in its `fail`
record (`st: up`), so a resume finalizes it without uploading again; a
target the provider has forgotten is never kept.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ingest import handoff
from ingest.clock import Clock
from ingest.engine.batching import Gatherer, linger_for
from ingest.engine.worker import Calls
from ingest.errors import Action, ManifestError, TransferError
from ingest.item import Item, Source
from ingest.providers.base import Landed, Provider, Target
from ingest.validate import Checker

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ingest.engine.outcomes import Counters
    from ingest.engine.settings import EngineSettings
    from ingest.preparing import Preparer


@dataclass(frozen=True, slots=True)
class ToFinalize:
    """An item whose bytes landed; its provider's step after the upload is left."""

    key: str
    line: int
    target: Target
    source: Source | None  # None: landed in an earlier run
    item: Item | None = None  # landed in an earlier run: its entry, to upload anew if need be


class Outcomes(Protocol):
    """Where a finalizer reports each item (the engine's bookkeeping)."""

    @property
    def counters(self) -> Counters: ...  # `in_flight`: uploads that may still land

    @property
    def settings(self) -> EngineSettings: ...

    def done(self, key: str, line: int, source: Source | None, landed: Landed) -> None: ...
    def fail(
        self, key: str, line: int, err: TransferError, *, landing: ToFinalize | None
    ) -> None: ...
    def uploaded(self, key: str, source: Source, target: Target) -> None: ...


class Finalizer:
    """One finalizer task's loop: batch what is waiting, finalize it, report each item."""

    def __init__(
        self,
        provider: Provider,
        calls: Calls,
        outcomes: Outcomes,
        clock: Clock,
        preparer: Preparer | None = None,
    ) -> None:
        self._provider = provider
        self._calls = calls
        self._outcomes = outcomes
        self._clock = clock
        # A resumed item uploaded anew is checked as triage checks it (without read-ahead),
        # then fetched (a URL) or converted (--convert) as the workers do.
        self._preparer = preparer
        self._checker = Checker(preparer.caps if preparer else provider.caps, provider.name)
        caps, run = provider.caps, outcomes.settings
        self._anew_slots = anyio.Semaphore(run.put_concurrency + run.lookahead)
        self._gatherer = (
            Gatherer[ToFinalize](
                caps.finalize_batch,
                clock,
                linger_for(caps.url_lifetime_s),
                lambda: outcomes.counters.in_flight > 0,
            )
            if caps.finalize_batch > 1
            else None
        )

    async def run(self, receive: MemoryObjectReceiveStream[ToFinalize]) -> None:
        async with anyio.create_task_group() as anew:  # new uploads of forgotten items
            gatherer = self._gatherer
            if gatherer is not None:  # batches filled across finalizers (`batching`)
                anew.start_soon(gatherer.collect, receive)
                while batch := await gatherer.batch():
                    await self.finalize(batch, anew)
                return
            batch_size = self._provider.caps.finalize_batch
            async with receive:
                async for first in handoff.Items(receive):
                    batch = [first]
                    while len(batch) < batch_size:
                        try:
                            batch.append(receive.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                    await self.finalize(batch, anew)

    async def _results(self, batch: list[ToFinalize]) -> list[Landed | TransferError]:
        pairs = [(landing.source, landing.target) for landing in batch]
        try:
            return await self._calls.api(lambda: self._provider.finalize(pairs))
        except TransferError as err:
            return [err] * len(batch)

    async def finalize(self, batch: list[ToFinalize], anew: TaskGroup) -> None:
        results = await self._results(batch)
        for landing, result in zip(batch, results, strict=True):
            if isinstance(result, TransferError) and result.action is Action.RESIGN:
                await self._anew_slots.acquire()  # as many at once as there are workers
                self._outcomes.counters.in_flight += 1
                anew.start_soon(self._anew, landing, result)
            else:
                self._report(landing, result)

    def _report(self, landing: ToFinalize, result: Landed | TransferError) -> None:
        match result:
            case TransferError():
                # Keep what a resume needs to finalize without uploading again.
                self._outcomes.fail(landing.key, landing.line, result, landing=landing)
            case Landed():
                self._outcomes.done(landing.key, landing.line, landing.source, result)

    async def _anew(self, landing: ToFinalize, gone: TransferError) -> None:
        """The provider forgot the landed bytes: upload the item once more, then finalize it."""
        try:
            await self._upload_anew(landing, gone)
        finally:
            self._outcomes.counters.in_flight -= 1
            self._anew_slots.release()

    async def _upload_anew(self, landing: ToFinalize, gone: TransferError) -> None:
        outcomes = self._outcomes
        source = landing.source
        if source is None and landing.item is not None:
            checked = await self._clock.run_sync(functools.partial(self._checker, landing.item))
            if isinstance(checked, ManifestError):
                outcomes.fail(
                    landing.key, landing.line, _given_up(gone, checked.reason), landing=None
                )
                return
            source = checked
        if source is None:
            outcomes.fail(landing.key, landing.line, _given_up(gone, "no file"), landing=None)
            return
        try:
            if self._preparer is not None:
                source = await self._preparer.source(source)
            target = await self._calls.upload(source)
        except TransferError as err:
            outcomes.fail(landing.key, landing.line, err, landing=None)
            return
        outcomes.uploaded(landing.key, source, target)
        again = dataclasses.replace(landing, target=target, source=source, item=None)
        [result] = await self._results([again])
        if isinstance(result, TransferError) and result.action is Action.RESIGN:
            result = _given_up(result, "gone again after a new upload")
        self._report(again, result)


def _given_up(gone: TransferError, why: str) -> TransferError:
    """`gone` as an item failure: its bytes cannot be uploaded anew (`why`)."""
    return TransferError(
        f"{gone.message}; cannot upload it anew: {why}",
        action=Action.FAIL_ITEM,
        code=gone.code,
        provider=gone.provider,
        op=gone.op,
        status=gone.status,
    )
