"""The engine: one manifest through one provider, stage by stage, journaled as it goes.

How it works:

    reader ─► [validated] ─► workers ×(P+L) ─────────────────────► [landed] ─► finalizers
    (thread,   bounded        acquire: API pacer,   transfer: one    bounded     (complete /
     batches)                 ≤ A calls at once     of P PUT slots,  (only if     attach)
                                                    retry, re-sign   finalize)

- The reader triages entries in a worker thread, a batch at a time
  (`triage.py`), and dispatches each verdict with `match`.
- Every hand-off is a bounded memory stream, so a slow stage stops the one
  before it and memory stays flat whatever the manifest's size.
- URLs are signed just in time: a worker signs its item's URL, then waits
  for one of the P PUT slots; with P + L workers, at most L (`lookahead`)
  signed URLs wait. The calls themselves, their retries, re-signing and
  throttles are `worker.Calls`; finalize batches are `finalize.Finalizer`.
- Errors are handled by their `Action`: RETRY backs off, RESIGN acquires a
  new target, FAIL_ITEM records the item and goes on, STOP ends the run
  cleanly. A circuit breaker turns a long streak of identical failures into
  a stop instead of failing the whole manifest.
- Every transition is journaled before the next stage sees the item, so a
  crash at any instant leaves each item done, or redone on resume.
- Resume: an item a killed run left in flight (`triage.Redo`) is routed
  ahead of the new items of its batch, and a provider that can tell
  (`providers.base.Recovers`) is first asked whether the bytes of the remote
  id that run acquired landed: if so the item is done under that id, with no
  second upload and no new id. Before a resumed run starts any item, such a
  provider also removes the empty records killed runs left unnamed.

Invariants: a run that stops early says why with a `StopReason` and a
message; cancellation is never counted as a failure; time comes from one
injected `Clock`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ingest import handoff
from ingest.clock import SYSTEM, Clock
from ingest.engine.breaker import Breaker
from ingest.engine.endings import Endings
from ingest.engine.finalize import Finalizer, ToFinalize
from ingest.engine.lane import Lane
from ingest.engine.outcomes import (
    Counters,
    Guarded,
    Observer,
    Outcome,
    Progress,
    Snapshot,
    StopReason,
)
from ingest.engine.settings import EngineSettings
from ingest.engine.triage import (
    Changed,
    FailedBefore,
    Redo,
    Rejected,
    Resume,
    Skipped,
    Triage,
    Triaged,
    redone_first,
    source_of,
)
from ingest.engine.worker import Calls
from ingest.errors import Action, ManifestError, TransferError
from ingest.item import Item, Source
from ingest.journal import Journal, Replay, records
from ingest.manifest.packed.held import triage_batch
from ingest.pacing import Pacing
from ingest.prefetch import Prefetch, release
from ingest.preparing import Preparer
from ingest.providers.base import Landed, NamesUsed, Provider, Recovers, Tidies
from ingest.tally import Tally
from ingest.validate import Checker

if TYPE_CHECKING:
    from ingest.manifest import SeekAhead


class Engine(Endings):
    """Runs one manifest through one provider. Create, then `await run(entries)`."""

    def __init__(
        self,
        provider: Provider,
        journal: Journal,
        replay: Replay,
        settings: EngineSettings,
        *,
        observer: Observer | None = None,
        clock: Clock = SYSTEM,
        rng: random.Random | None = None,
        ahead: SeekAhead | None = None,
        api_pacer: Pacing | None = None,
    ) -> None:
        self.provider = provider
        self._ahead = ahead  # the manifest counted in the background: the total early
        self.journal = journal
        self.replay = replay
        self.tally = Tally(replay)  # the journal's counts as the run writes it
        self.settings = settings
        # The caller's exception in an event aborts the run; `Upload.wait` raises it.
        self.observer = Guarded(observer, self._observer_raised) if observer is not None else None
        self.clock = clock
        self.counters = Counters()
        self.calls = Calls(
            provider,
            settings,
            self.counters,
            clock=clock,
            rng=rng or random.Random(),
            record=self._record,
            api_pacer=api_pacer,
        )
        # Small files are read as they are validated (see `prefetch`).
        self._prefetch = Prefetch(settings.read_ahead_bytes) if settings.read_ahead_bytes else None
        self.preparer = Preparer(provider.caps, provider.name, settings, clock, self.counters)
        self._lane = (
            None
            if self.preparer.converter is None
            else Lane(self.preparer, self.fail, lambda: self._draining, clock)
        )
        self._triage = Triage(
            replay,
            Checker(
                self.preparer.caps,
                provider.name,
                prefetch=self._prefetch,
                earlier=provider.names_used if isinstance(provider, NamesUsed) else None,
                now=clock.time,
                read_ahead=True,
            ),
            finalize=provider.caps.finalize,
            retry_failed=settings.retry_failed,
            reupload_changed=settings.reupload_changed,
        )
        self._started = clock.now()
        self._scope: anyio.CancelScope | None = None
        self._reader_scope: anyio.CancelScope | None = None
        self._draining = False
        self._reading_done = False
        self._total: int | None = None
        self.stop_reason: StopReason | None = None
        self.stop_message: str | None = None
        self._breaker = Breaker(settings.circuit_breaker)

    @property
    def api_pacer(self) -> Pacing:
        return self.calls.api_pacer

    # -- control -------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self) -> None:
        """Stop reading new items; finish what is in flight."""
        self._draining = True
        if self._reader_scope is not None:
            self._reader_scope.cancel()

    def abort(self, message: str = "interrupted") -> None:
        """Stop now (`StopReason.INTERRUPTED`); in-flight items are redone on resume."""
        self._stop(StopReason.INTERRUPTED, message)

    @property
    def observer_error(self) -> Exception | None:
        """What the caller's observer raised, if it did (the run was aborted on it)."""
        return self.observer.error if self.observer is not None else None

    def _observer_raised(self, exc: Exception) -> None:
        self.abort(f"the observer raised {type(exc).__name__}: {exc}")

    def snapshot(self) -> Snapshot:
        ahead = self._ahead.state() if self._ahead is not None else None
        total, estimated = self._total, False
        if total is None and ahead is not None and ahead.count is not None:
            total, estimated = ahead.count, True
        counts = self.tally.counts()
        return Snapshot(
            counters=dataclasses.replace(self.counters),
            total=self._total,
            elapsed_s=self.clock.now() - self._started,
            api_pacer=self.api_pacer.stats(),
            reading_done=self._reading_done,
            progress=Progress(
                done=counts["done"],
                failed=counts["failed"],
                rejected=counts["rejected"],
                total=total,
                estimated=estimated,
                counting=ahead is not None and ahead.counting and not self._reading_done,
            ),
            skipped=ahead.skipped if ahead is not None else None,
            late_url=self.calls.late_url,
        )

    # -- the run -------------------------------------------------------------

    async def run(self, entries: Iterator[Item | ManifestError]) -> Outcome:
        s = self.settings
        self._started = self.clock.now()
        # A journal that cannot be written (a full disk) stops the run at once:
        # every upload after it would be redone by the next run anyway.
        self.journal.on_error = lambda err: self._stop(StopReason.JOURNAL, str(err))
        self._record(records.run_started(round(self.clock.time(), 3), os.getpid()))
        validated_send, validated_recv = anyio.create_memory_object_stream[Source | Redo](
            s.put_concurrency
        )
        landed_send, landed_recv = anyio.create_memory_object_stream[ToFinalize](
            max(s.put_concurrency, self.provider.caps.finalize_batch * 2)
        )
        finalizer = Finalizer(self.provider, self.calls, self, self.clock, self.preparer)
        async with anyio.create_task_group() as outer:
            outer.start_soon(self.journal.syncer)
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self.stop_reason is not None:  # stopped before it started: upload nothing
                    scope.cancel()
                else:
                    await self._tidy()
                async with anyio.create_task_group() as tg:
                    # Counted on the way, for the items the manifest no longer lists.
                    listed = self.tally.watch(entries)
                    if (lane := self._lane) is not None:  # --convert: conversions apart
                        for _ in range(lane.workers):
                            tg.start_soon(lane.run, lane.receive.clone(), validated_send.clone())
                        lane.receive.close()
                    tg.start_soon(self._reader, listed, validated_send, landed_send.clone())
                    for _ in range(s.put_concurrency + s.lookahead):
                        tg.start_soon(self._worker, validated_recv.clone(), landed_send.clone())
                    finalizers = (
                        max(1, s.api_concurrency // 2) if self.provider.caps.finalize else 1
                    )
                    for _ in range(finalizers):
                        tg.start_soon(finalizer.run, landed_recv.clone())
                    for stream in (validated_recv, landed_send, landed_recv):
                        stream.close()
            outer.cancel_scope.cancel()
        await self.preparer.aclose()  # its spool folders
        if self.journal.error is not None:
            self._stop(StopReason.JOURNAL, str(self.journal.error))
        return Outcome(
            counters=dataclasses.replace(self.counters),
            stop_reason=self.stop_reason,
            drained=self._draining and self.stop_reason is None,
            elapsed_s=self.clock.now() - self._started,
            stop_message=self.stop_message,
        )

    # -- stage 1: read and triage (blocking I/O in a worker thread) ----------

    def _next_batch(self, entries: Iterator[Item | ManifestError]) -> list[Triaged]:
        batch = self._triage.batch(triage_batch(entries, self.settings.read_batch))
        self.counters.read += len(batch)
        return redone_first(batch)

    async def _reader(
        self,
        entries: Iterator[Item | ManifestError],
        send: MemoryObjectSendStream[Source | Redo],
        landed: MemoryObjectSendStream[ToFinalize],
    ) -> None:
        async with send, landed, self._lane.queue if self._lane else contextlib.nullcontext():
            with anyio.CancelScope() as scope:
                self._reader_scope = scope
                while True:  # after a drain, only while it meets entries done before (below)
                    batch = await self.clock.run_sync(functools.partial(self._next_batch, entries))
                    if not batch:
                        self._reading_done = True
                        self._total = self.counters.read
                        counters = self.counters
                        self._record(self.tally.end_record(counters.read, counters.changed))
                        break
                    routed = 0
                    try:
                        for verdict in batch:
                            if self._draining and not isinstance(verdict, Skipped):
                                return  # drained: nothing new; a run all done still ends complete
                            await self._route(verdict, send, landed)
                            routed += 1
                    finally:
                        # A drain drops the rest of the batch: give its read-ahead back (the
                        # budget is only bookkeeping by then; nothing is read after a drain).
                        for verdict in batch[routed:]:
                            if isinstance(verdict, Source | Redo):
                                release(source_of(verdict), self._prefetch)

    async def _route(
        self,
        verdict: Triaged,
        send: MemoryObjectSendStream[Source | Redo],
        landed: MemoryObjectSendStream[ToFinalize],
    ) -> None:
        match verdict:
            case Source() | Redo():
                lane = self._lane
                if lane is not None and isinstance(verdict, Source) and lane.takes(verdict):
                    await handoff.send(lane.queue, release(verdict, self._prefetch))
                else:
                    await handoff.send(send, verdict)
            case Skipped():
                self.counters.skipped += 1
            case Resume(landing):
                await handoff.send(landed, landing)
            case Changed(key, line):
                self.counters.changed += 1
                if self.observer is not None:
                    self.observer.item_changed(key, line)
            case FailedBefore():
                self.counters.failed += 1
            case Rejected(error, key):
                self.reject(key, error)

    # -- stages 2 and 3: acquire, then transfer ------------------------------

    async def _worker(
        self,
        receive: MemoryObjectReceiveStream[Source | Redo],
        landed: MemoryObjectSendStream[ToFinalize],
    ) -> None:
        """One item at a time: sign its URL, wait for a PUT slot, upload it.

        There are `put_concurrency + lookahead` workers and `put_concurrency`
        PUT slots, so at most `lookahead` signed URLs wait for a slot.
        """
        finalize = self.provider.caps.finalize
        async with receive, landed:
            async for verdict in handoff.Items(receive):
                source = source_of(verdict)
                if self._draining:
                    release(source, self._prefetch)
                    continue  # not started: it is simply picked up by the next run
                item = source.item
                self.counters.in_flight += 1
                try:
                    verdict = await self.preparer.prepare(verdict, self._prefetch)
                    source = source_of(verdict)  # fetched (a URL), converted (--convert)
                    recovered = await self._recover(verdict) if isinstance(verdict, Redo) else None
                    if recovered is not None:
                        self.done(item.key, item.line, source, recovered)
                        continue
                    target = await self.calls.upload(source)
                except TransferError as err:
                    self.fail(item.key, item.line, err)
                    continue
                finally:
                    self.counters.in_flight -= 1
                    source = release(source, self._prefetch)
                if finalize:
                    self.uploaded(item.key, source, target)
                    await handoff.send(landed, ToFinalize(item.key, item.line, target, source))
                else:
                    self.done(item.key, item.line, source, self.provider.landed(source, target))

    async def _tidy(self) -> None:
        """Before a resumed run starts any item: the provider removes what killed runs left."""
        provider = self.provider
        if not self.replay.runs or not isinstance(provider, Tidies):
            return
        try:
            await self.calls.api(provider.tidy, answers=False)  # it may be a no-op
        except TransferError as err:
            if err.action is Action.STOP:
                self._stop_for(err)
            # Otherwise they stay: the items matter more than the tidying.

    async def _recover(self, redo: Redo) -> Landed | None:
        """The outcome of an item a killed run left in flight, if the provider can tell it landed.

        None: it did not, or the provider cannot tell; the item is uploaded anew.
        """
        provider = self.provider
        if not isinstance(provider, Recovers):
            return None
        try:
            return await self.calls.api(lambda: provider.recover(redo.source, redo.acquired))
        except TransferError as err:
            if err.action is Action.FAIL_ITEM:
                return None  # this id will not do; a new upload tells the item's real outcome
            raise
