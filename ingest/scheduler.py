"""The engine: stages, limits, pacing, retries and leases for one run.

How it works:

    reader ─► [validated] ─► workers ×(P+L) ─────────────────────► [landed] ─► finalizers
    (thread,   bounded        acquire: API pacer,   transfer: one    bounded     (complete /
     batches)                 ≤ A calls at once     of P PUT slots,  (only if     attach)
                                                    retry, re-sign   finalize)

- Every hand-off is a bounded memory stream, so a slow stage stops the one
  before it and memory stays flat whatever the manifest's size.
- URLs are signed just in time: a worker signs its item's URL, then waits
  for one of the P PUT slots; with P + L workers, at most L (`lookahead`)
  signed URLs wait. API calls are limited to A at once, PUTs to P.
- Before every PUT attempt, retries included, a lease with less than the
  safety margin left is re-signed; a storage "expired" answer re-signs too.
- Errors are handled by their `Action`: RETRY backs off (full jitter,
  Retry-After as a floor; 429s also slow the whole plane via its `Pacer`),
  RESIGN acquires a new target, FAIL_ITEM records the item and goes on, STOP
  ends the run cleanly. A circuit breaker turns a long streak of identical
  failures into a STOP instead of failing the whole manifest.
- Every transition is journaled before the next stage sees the item, so a
  crash at any instant leaves each item done, or redone on resume.

Cancellation is never counted as a failure.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ingest import handoff
from ingest.config import RunSettings
from ingest.errors import Action, JournalError, ManifestError, TransferError
from ingest.item import Item, Source
from ingest.journal import Journal, Record, Replay, fingerprint
from ingest.pacing import Pacer, PacerStats
from ingest.prefetch import Prefetch, release
from ingest.providers.base import Landed, Provider, Target
from ingest.retry import RetryPolicy
from ingest.tally import Tally
from ingest.validate import Checker

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EngineSettings:
    api_concurrency: int = 16
    put_concurrency: int = 32
    lookahead: int = 8
    api_rate: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    resign_margin_s: float = 15.0
    circuit_breaker: int = 25
    read_batch: int = 128
    read_ahead_bytes: int = 16 << 20  # small files read while validated (0: at upload)
    retry_failed: bool = False  # re-queue items a provider rejected in an earlier run
    reupload_changed: bool = False  # upload again items whose file changed since upload

    @classmethod
    def from_run(
        cls, run: RunSettings, *, retry_failed: bool = False, reupload_changed: bool = False
    ) -> EngineSettings:
        return cls(
            api_concurrency=run.api_concurrency,
            put_concurrency=run.put_concurrency,
            lookahead=max(1, run.lookahead),
            api_rate=run.api_rate or None,
            retry=RetryPolicy(
                max_attempts=run.max_attempts,
                base_s=run.backoff_base_s,
                cap_s=run.backoff_cap_s,
                max_resigns=run.max_resigns,
            ),
            resign_margin_s=run.resign_margin_s,
            circuit_breaker=run.circuit_breaker,
            retry_failed=retry_failed,
            reupload_changed=reupload_changed,
        )


@dataclass(slots=True)
class Counters:
    """Live tallies of this run (the journal stays the source of truth)."""

    read: int = 0  # manifest entries read
    skipped: int = 0  # done in an earlier run
    done: int = 0
    failed: int = 0
    rejected: int = 0
    changed: int = 0  # done earlier, but the file changed since
    bytes_done: int = 0
    in_flight: int = 0
    api_calls: int = 0
    puts: int = 0
    retries: int = 0
    resigns: int = 0
    throttles: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A frozen view for displays: counters plus pacing state."""

    counters: Counters
    total: int | None
    elapsed_s: float
    api_pacer: PacerStats
    reading_done: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended."""

    counters: Counters
    stop_reason: str | None  # None: ran to the end of the manifest
    drained: bool  # stopped early on request, after finishing in-flight work
    elapsed_s: float


class Observer(Protocol):
    """Per-item events, for progress displays and `--json`."""

    def item_done(self, source: Source, landed: Landed) -> None: ...
    def item_failed(self, key: str, line: int, err: TransferError) -> None: ...
    def item_rejected(self, key: str | None, err: ManifestError) -> None: ...
    def item_changed(self, key: str, line: int) -> None: ...


class _Silent:
    def item_done(self, source: Source, landed: Landed) -> None:
        pass

    def item_failed(self, key: str, line: int, err: TransferError) -> None:
        pass

    def item_rejected(self, key: str | None, err: ManifestError) -> None:
        pass

    def item_changed(self, key: str, line: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _Resume:
    """An item whose bytes landed in an earlier run; only finalize is left."""

    key: str
    line: int
    target: Target
    record: Record


_Entry = Source | ManifestError | _Resume | tuple[str, ManifestError] | None


class Engine:
    """Runs one manifest through one provider. Create, then `await run(entries)`."""

    def __init__(
        self,
        provider: Provider,
        journal: Journal,
        replay: Replay,
        settings: EngineSettings,
        *,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.journal = journal
        self.replay = replay
        self.tally = Tally(replay)  # the journal's counts as the run writes it
        self.settings = settings
        self.observer: Observer = observer or _Silent()
        self.clock = clock
        self.rng = rng or random.Random()
        self.counters = Counters()
        self.api_pacer = Pacer(settings.api_rate)
        self.put_pacer = Pacer(None)
        # `fast_acquire`: no trip through the event loop when a slot is free (once per item).
        self._api_limiter = anyio.Semaphore(settings.api_concurrency, fast_acquire=True)
        self._put_slots = anyio.Semaphore(settings.put_concurrency, fast_acquire=True)
        # Small files are read as they are validated (see `prefetch`).
        self._prefetch = Prefetch(settings.read_ahead_bytes) if settings.read_ahead_bytes else None
        self._check = Checker(provider.caps, provider.name, prefetch=self._prefetch)
        self._started = time.monotonic()
        self._scope: anyio.CancelScope | None = None
        self._reader_scope: anyio.CancelScope | None = None
        self._draining = False
        self._reading_done = False
        self._total: int | None = None
        self.stop_reason: str | None = None
        self._streak_code: str | None = None
        self._streak = 0

    # -- control -------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self) -> None:
        """Stop reading new items; finish what is in flight."""
        self._draining = True
        if self._reader_scope is not None:
            self._reader_scope.cancel()

    def abort(self, reason: str = "interrupted") -> None:
        """Stop now; in-flight items are redone on resume."""
        self._stop(reason)

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._scope is not None:
            self._scope.cancel()

    def snapshot(self) -> Snapshot:
        return Snapshot(
            counters=dataclasses.replace(self.counters),
            total=self._total,
            elapsed_s=time.monotonic() - self._started,
            api_pacer=self.api_pacer.stats(),
            reading_done=self._reading_done,
        )

    # -- the run -------------------------------------------------------------

    async def run(self, entries: Iterator[Item | ManifestError]) -> Outcome:
        s = self.settings
        self._started = time.monotonic()
        # A journal that cannot be written (a full disk) stops the run at once:
        # every upload after it would be redone by the next run anyway.
        self.journal.on_error = lambda err: self._stop(str(err))
        self._record({"s": "run", "t": round(self.clock(), 3), "pid": os.getpid()})
        validated_send, validated_recv = anyio.create_memory_object_stream[Source | _Resume](
            s.put_concurrency
        )
        landed_send, landed_recv = anyio.create_memory_object_stream[
            tuple[Source | None, str, int, Target]
        ](max(s.put_concurrency, self.provider.caps.finalize_batch * 2))
        async with anyio.create_task_group() as outer:
            outer.start_soon(self.journal.syncer)
            with anyio.CancelScope() as scope:
                self._scope = scope
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._reader, entries, validated_send, landed_send.clone())
                    for _ in range(s.put_concurrency + s.lookahead):
                        tg.start_soon(self._worker, validated_recv.clone(), landed_send.clone())
                    finalizers = (
                        max(1, s.api_concurrency // 2) if self.provider.caps.finalize else 1
                    )
                    for _ in range(finalizers):
                        tg.start_soon(self._finalizer, landed_recv.clone())
                    for stream in (validated_recv, landed_send, landed_recv):
                        stream.close()
            outer.cancel_scope.cancel()
        if self.journal.error is not None and self.stop_reason is None:
            self.stop_reason = str(self.journal.error)
        return Outcome(
            counters=dataclasses.replace(self.counters),
            stop_reason=self.stop_reason,
            drained=self._draining and self.stop_reason is None,
            elapsed_s=time.monotonic() - self._started,
        )

    # -- journal -------------------------------------------------------------

    def _record(self, rec: Record) -> None:
        try:
            self.journal.record(rec)
        except JournalError as exc:
            self._stop(str(exc))
            return
        self.tally.apply(rec)

    # -- stage 1: read and validate (blocking I/O in a worker thread) --------

    def _next_batch(self, entries: Iterator[Item | ManifestError]) -> list[_Entry]:
        out: list[_Entry] = []
        for entry in itertools.islice(entries, self.settings.read_batch):
            self.counters.read += 1
            if isinstance(entry, ManifestError):
                out.append(entry)
                continue
            out.append(self._triage_item(entry))
        return out

    def _triage_item(self, item: Item) -> _Entry:
        replay = self.replay
        if replay.is_done(item.key):
            try:
                st = os.stat(item.path)
            except OSError:
                return None  # done earlier; the file is gone now, which is fine
            known = replay.fingerprint_of(item.key)
            if known == fingerprint(st.st_size, st.st_mtime_ns):
                return None
            if not self.settings.reupload_changed:
                return (
                    "changed",
                    ManifestError("changed since upload", source=item.key, line=item.line),
                )
            # Changed and asked to upload it again: fall through to a fresh upload.
        previous = replay.pending.get(item.key)
        if previous is not None:
            state = previous.get("s")
            if (
                state == "fail"
                and previous.get("a") == Action.FAIL_ITEM.value
                and not self.settings.retry_failed
            ):
                return (
                    "failed",
                    ManifestError(str(previous.get("e", "")), source=item.key, line=item.line),
                )
            # Bytes landed earlier (journaled `up`, or a finalize that failed for a
            # transient reason): finalize only, never upload again.
            finalize_only = state == "up" or (
                state == "fail"
                and previous.get("st") == "up"
                and previous.get("a") != Action.FAIL_ITEM.value
            )
            if finalize_only and self.provider.caps.finalize:
                target = Target(
                    remote_id=str(previous.get("r", "")),
                    url=None,
                    content_type="",
                    lease=None,
                    extra={str(k): str(v) for k, v in (previous.get("x") or {}).items()},
                )
                return _Resume(item.key, item.line, target, previous)
        result = self._check(item)
        if isinstance(result, ManifestError):
            return (item.key, result)
        return result

    async def _reader(
        self,
        entries: Iterator[Item | ManifestError],
        send: MemoryObjectSendStream[Source | _Resume],
        landed: MemoryObjectSendStream[tuple[Source | None, str, int, Target]],
    ) -> None:
        async with send, landed:
            with anyio.CancelScope() as scope:
                self._reader_scope = scope
                while not self._draining:
                    batch = await anyio.to_thread.run_sync(self._next_batch, entries)
                    if not batch:
                        self._reading_done = True
                        self._total = self.counters.read
                        self._record({"s": "end", "n": self.counters.read})
                        break
                    routed = 0
                    try:
                        for entry in batch:
                            await self._route(entry, send, landed)
                            routed += 1
                    finally:
                        # A drain drops the rest of the batch: give its read-ahead back (the
                        # budget is only bookkeeping by then; nothing is read after a drain).
                        for entry in batch[routed:]:
                            if isinstance(entry, Source):
                                release(entry, self._prefetch)

    async def _route(
        self,
        entry: _Entry,
        send: MemoryObjectSendStream[Source | _Resume],
        landed: MemoryObjectSendStream[tuple[Source | None, str, int, Target]],
    ) -> None:
        if entry is None:
            self.counters.skipped += 1
        elif isinstance(entry, Source):
            await handoff.send(send, entry)
        elif isinstance(entry, _Resume):
            await handoff.send(landed, (None, entry.key, entry.line, entry.target))
        elif isinstance(entry, ManifestError):
            self.counters.rejected += 1
            self._record({"s": "bad", "l": entry.line, "e": entry.reason})
            self.observer.item_rejected(None, entry)
        else:
            kind, err = entry
            if kind == "changed":
                self.counters.changed += 1
                self.observer.item_changed(err.source, err.line or 0)
            elif kind == "failed":
                self.counters.failed += 1
            else:
                self.counters.rejected += 1
                self._record({"s": "bad", "k": kind, "l": err.line, "e": err.reason})
                self.observer.item_rejected(kind, err)

    # -- control-plane calls -------------------------------------------------

    async def _call_api(self, call: Callable[[], Awaitable[T]]) -> T:
        """One provider API call with the pacer, the limiter and retries."""
        policy = self.settings.retry
        for attempt in itertools.count(1):
            try:
                async with self._api_limiter:
                    # Paced with a slot in hand: however many workers wait for a slot,
                    # at most A are past the pacer, so none starts during a pause.
                    started = await self.api_pacer.wait()
                    self.counters.api_calls += 1
                    result = await call()
            except TransferError as err:
                if err.status == 429:
                    self.counters.throttles += 1
                    self.api_pacer.on_throttle(err.retry_after, started)
                if err.action is Action.RETRY and attempt < policy.max_attempts:
                    self.counters.retries += 1
                    await anyio.sleep(policy.delay(attempt, self.rng, err.retry_after))
                    continue
                raise
            self.api_pacer.on_success(started)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self, source: Source) -> Target:
        target = await self._call_api(lambda: self.provider.acquire(source))
        rec: Record = {"s": "acq", "k": source.item.key, "r": target.remote_id}
        if target.extra:
            rec["x"] = dict(target.extra)
        self._record(rec)
        return target

    # -- stages 2 and 3: acquire, then transfer ------------------------------

    async def _worker(
        self,
        receive: MemoryObjectReceiveStream[Source | _Resume],
        landed: MemoryObjectSendStream[tuple[Source | None, str, int, Target]],
    ) -> None:
        """One item at a time: sign its URL, wait for a PUT slot, upload it.

        There are `put_concurrency + lookahead` workers and `put_concurrency`
        PUT slots, so at most `lookahead` signed URLs wait for a slot.
        """
        async with receive, landed:
            async for source in handoff.Items(receive):
                assert isinstance(source, Source)
                if self._draining:
                    release(source, self._prefetch)
                    continue  # not started: it is simply picked up by the next run
                item = source.item
                self.counters.in_flight += 1
                try:
                    target = await self._acquire(source)
                    async with self._put_slots:
                        target = await self._transfer(source, target)
                except TransferError as err:
                    self._fail(item.key, item.line, err)
                    continue
                finally:
                    self.counters.in_flight -= 1
                    source = release(source, self._prefetch)
                if self.provider.caps.finalize:
                    rec: Record = {"s": "up", "k": item.key, "r": target.remote_id}
                    rec["z"], rec["m"] = source.size, source.mtime_ns
                    if target.extra:
                        rec["x"] = dict(target.extra)
                    self._record(rec)
                    await handoff.send(landed, (source, item.key, item.line, target))
                else:
                    self._done(source, self.provider.landed(source, target))

    async def _transfer(self, source: Source, target: Target) -> Target:
        policy = self.settings.retry
        attempts = resigns = 0
        while True:
            lease = target.lease
            if lease is not None:
                margin = min(self.settings.resign_margin_s, lease.granted_s / 4)
                if lease.time_left(self.clock()) < margin:
                    resigns += 1
                    target = await self._resign(source, resigns)
            attempts += 1
            started = await self.put_pacer.wait()
            try:
                self.counters.puts += 1
                return await self.provider.transfer(source, target)
            except TransferError as err:
                if err.action is Action.RESIGN:
                    resigns += 1
                    target = await self._resign(source, resigns, err)
                    continue
                if err.status == 429:
                    self.counters.throttles += 1
                    self.put_pacer.on_throttle(err.retry_after, started)
                if err.action is Action.RETRY and attempts < policy.max_attempts:
                    self.counters.retries += 1
                    await anyio.sleep(policy.delay(attempts, self.rng, err.retry_after))
                    continue
                raise

    async def _resign(
        self, source: Source, resigns: int, cause: TransferError | None = None
    ) -> Target:
        if resigns > self.settings.retry.max_resigns:
            if cause is not None:
                raise cause
            raise TransferError(
                "the upload URL expired again and again before its PUT could start",
                action=Action.FAIL_ITEM,
                code="expired",
                provider=self.provider.name,
                op="transfer",
            )
        self.counters.resigns += 1
        return await self._acquire(source)

    # -- stage 4: finalize ---------------------------------------------------

    async def _finalizer(
        self, receive: MemoryObjectReceiveStream[tuple[Source | None, str, int, Target]]
    ) -> None:
        batch_size = self.provider.caps.finalize_batch
        async with receive:
            async for first in handoff.Items(receive):
                batch = [first]
                while len(batch) < batch_size:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._finalize(batch)

    async def _finalize(self, batch: list[tuple[Source | None, str, int, Target]]) -> None:
        pairs = [(source, target) for source, _key, _line, target in batch]
        try:
            results = await self._call_api(lambda: self.provider.finalize(pairs))
        except TransferError as err:
            results = [err] * len(batch)
        for (source, key, line, target), outcome in zip(batch, results, strict=True):
            if isinstance(outcome, TransferError):
                # Keep what a resume needs to finalize without uploading again.
                self._fail(key, line, outcome, landed=(target, source))
            else:
                self._done_key(key, line, source, target, outcome)

    # -- outcomes ------------------------------------------------------------

    def _done(self, source: Source, landed: Landed) -> None:
        item = source.item
        self._done_key(item.key, item.line, source, None, landed)

    def _done_key(
        self, key: str, line: int, source: Source | None, target: Target | None, landed: Landed
    ) -> None:
        rec: Record = {"s": "done", "k": key, "r": landed.remote_id}
        if landed.url:
            rec["u"] = landed.url
        if landed.extra:
            rec["x"] = dict(landed.extra)
        if source is not None:
            rec["z"] = source.size
            rec["m"] = source.mtime_ns
            self.counters.bytes_done += source.size
        else:
            previous = self.replay.pending.get(key, {})
            rec["z"], rec["m"] = previous.get("z", 0), previous.get("m", 0)
        self._record(rec)
        self.counters.done += 1
        self._streak, self._streak_code = 0, None
        if source is not None:
            self.observer.item_done(source, landed)

    def _fail(
        self,
        key: str,
        line: int,
        err: TransferError,
        *,
        landed: tuple[Target, Source | None] | None = None,
    ) -> None:
        """Record a failed item; `landed` is its target (and source) when only finalize failed."""
        if err.action is Action.STOP:
            self._stop(str(err))
            return
        self.counters.failed += 1
        rec: Record = {
            "s": "fail",
            "k": key,
            "l": line,
            "a": err.action.value,
            "c": err.code,
            "e": err.message,
        }
        if landed is not None:
            target, source = landed
            rec.update(st="up", r=target.remote_id, x=dict(target.extra))
            if source is not None:
                rec.update(z=source.size, m=source.mtime_ns)
            else:
                previous = self.replay.pending.get(key, {})
                rec.update(z=previous.get("z", 0), m=previous.get("m", 0))
        self._record(rec)
        self.observer.item_failed(key, line, err)
        if err.code == self._streak_code:
            self._streak += 1
        else:
            self._streak, self._streak_code = 1, err.code
        if self._streak >= self.settings.circuit_breaker:
            self._stop(
                f"circuit breaker: {self._streak} items in a row failed with {err.code} "
                f"({err.message}); the provider looks unavailable. Re-run the same command to resume."
            )
