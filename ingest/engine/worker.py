"""Stages 2 and 3: one item's provider calls, acquire (control plane) then transfer (data plane).

Owns how a call is made and retried: the limits (A API calls at once, P PUT
slots), the two planes' pacers, backoff, re-signing, and obeying throttles.

How it works:

- An API call takes one of A slots, then waits for the API pacer with the
  slot in hand: however many workers wait, at most A are past the pacer, so
  none starts during a pause.
- Before every PUT attempt, retries included, a lease with less than the
  safety margin left (at most a quarter of its lifetime) is re-signed; a
  storage "expired" answer (RESIGN) re-signs too, at most `max_resigns` times;
  another RESIGN (a 403 such as SignatureDoesNotMatch) at most the provider's
  `Capabilities.resign_limit` times, where it declares one.
- A RETRY backs off (full jitter, Retry-After as a floor, both capped by
  `max_pause_s`) until the step has had `max_attempts` tries *and* has been
  failing for `retry_window_s` (`retry.py`): a short outage fails nothing. Only a refusal its adapter marked `Scope.PLANE` slows the
  plane (its pacer pauses everyone for the Retry-After, capped, and cuts the
  rate); an item-scoped one, whatever its status or Retry-After, delays that
  item alone. This module never looks at an HTTP status.
- Every cut wait is counted (`Counters.waits_capped`) so the run can say so.
- The first URL that arrives expired, or about to, by its own X-Amz-Date and
  X-Amz-Expires on our clock is kept (`late_url`) for one warning: the lease,
  corrected by the API's Date header, may still hold, but a storage host on
  our time would refuse it, and each re-sign would bring another like it.
- An API that cannot be reached before it ever answered (refused, unknown
  host, connect timed out) stops the run at once (STOP, code `unreachable`);
  after its first answer, the same error is an outage and is retried. The
  same holds for storage on its own: a storage host that no PUT of the run has
  reached yet stops the run at once (one flag for the run's storage, not one
  per host: a provider whose uploads go to its API, Scenario inline, counts
  that API as its storage).

Invariant: all time comes from the injected `Clock`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ingest import bandwidth
from ingest.clock import Clock
from ingest.engine.outcomes import Counters
from ingest.engine.settings import EngineSettings
from ingest.errors import EXPIRED, UNREACHABLE, Action, Scope, TransferError
from ingest.item import Source
from ingest.journal import records
from ingest.journal.records import Record
from ingest.lease import LateURL, late_url
from ingest.pacing import Pacer, Pacing
from ingest.providers.base import Provider, Target

T = TypeVar("T")


class _Slots:
    """`async with slots:` one of N slots, taken with no await when one is free.

    anyio's `Semaphore.acquire` looks the task's cancel scopes up before it
    takes a free slot, even with `fast_acquire` (a weak-dict lookup and two
    coroutine frames, twice per item: ~3 % of the engine's CPU per small
    file). A free slot is taken as `handoff` takes a waiting item; a full one
    awaits the semaphore as before, so fairness, backpressure and
    cancellation while waiting are anyio's. Every holder awaits I/O inside,
    so no task holds the loop.
    """

    __slots__ = ("_semaphore",)

    def __init__(self, n: int) -> None:
        self._semaphore = anyio.Semaphore(n, fast_acquire=True)

    async def __aenter__(self) -> None:
        try:
            self._semaphore.acquire_nowait()
        except anyio.WouldBlock:
            await self._semaphore.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


class Calls:
    """The provider calls of a run, paced, limited and retried; shared by every worker."""

    def __init__(
        self,
        provider: Provider,
        settings: EngineSettings,
        counters: Counters,
        *,
        clock: Clock,
        rng: random.Random,
        record: Callable[[Record], None],
        api_pacer: Pacing | None = None,
    ) -> None:
        self._provider = provider
        self._settings = settings
        self._policy = settings.retry
        self._counters = counters
        self._clock = clock
        self._rng = rng
        self._record = record
        self.api_pacer: Pacing = api_pacer or Pacer(
            settings.api_rate, clock=clock, max_pause_s=settings.max_pause_s
        )  # a coordinated run passes its shared pacer (ingest.coord.budget)
        self.put_pacer = Pacer(None, clock=clock, max_pause_s=settings.max_pause_s)
        # --max-mbps: the run's byte budget, or the coordinated worker's shared one.
        self._bytes = bandwidth.CURRENT.get() or bandwidth.local(settings.run.max_mbps, clock)
        self._api_limiter = _Slots(settings.api_concurrency)
        self._put_slots = _Slots(settings.put_concurrency)
        self._api_reached = False  # any API answer yet, even an error one (see `_unreachable`)
        self._storage_reached = False  # any storage answer yet, likewise
        self._unreachable_stop: TransferError | None = None
        # The first target whose URL arrived expired or about to by its own X-Amz-Date, for
        # one warning a run (`Snapshot.late_url`); then no URL is looked at again.
        self.late_url: LateURL | None = None

    # -- control plane ---------------------------------------------------------

    async def api(self, call: Callable[[], Awaitable[T]], *, answers: bool = True) -> T:
        """One provider API call with the pacer, the limiter and retries.

        `answers=False`: its success does not show that the API is reachable
        (a best-effort call an adapter may answer itself, such as `tidy`).
        """
        first_failure: float | None = None
        for attempt in itertools.count(1):
            try:
                async with self._api_limiter:
                    if self._unreachable_stop is not None:
                        raise self._unreachable_stop  # the run is stopping: no more calls
                    # Paced with a slot in hand (see the module docstring).
                    started = await self.api_pacer.wait()
                    self._counters.api_calls += 1
                    result = await call()
            except TransferError as err:
                if err is self._unreachable_stop:
                    raise
                if err.code == UNREACHABLE and not self._api_reached:
                    self._unreachable_stop = self._unreachable(err)
                    raise self._unreachable_stop from err
                self._api_reached = True  # it answered, or at least let us connect
                first_failure = self._clock.now() if first_failure is None else first_failure
                retrying = self._retrying(err, attempt, first_failure)
                self._refused(err, self.api_pacer, started, retrying=retrying)
                if retrying:
                    await self._back_off(attempt, err)
                    continue
                raise
            self._api_reached = self._api_reached or answers
            self.api_pacer.on_success(started)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def acquire(self, source: Source) -> Target:
        target = await self.api(lambda: self._provider.acquire(source))
        self._record(records.acquired(source.item.key, target.remote_id, target.extra))
        if self.late_url is None:  # from the lease: its URL's query read once, with its expiry
            self.late_url = late_url(target.lease, self._clock.time())
        return target

    # -- both: one item's upload -----------------------------------------------

    async def upload(self, source: Source) -> Target:
        """Sign the item's URL, wait for a PUT slot, move its bytes; the target they landed at."""
        target = await self.acquire(source)
        async with self._put_slots:
            return await self._transfer(source, target)

    async def _transfer(self, source: Source, target: Target) -> Target:
        attempts = resigns = refused = 0
        refusals = self._provider.caps.resign_limit
        first_failure: float | None = None
        while True:
            lease = target.lease
            if lease is not None:
                margin = min(self._settings.resign_margin_s, lease.granted_s / 4)
                if lease.time_left(self._clock.time()) < margin:
                    resigns += 1
                    target = await self._resign(source, resigns)
            attempts += 1
            started = await self.put_pacer.wait()
            try:
                if self._unreachable_stop is not None:
                    raise self._unreachable_stop  # the run is stopping: no more PUTs
                self._counters.puts += 1
                if self._bytes is None:  # no --max-mbps: no context to set (once per PUT)
                    landed = await self._provider.transfer(source, target)
                else:
                    with bandwidth.using(self._bytes):
                        landed = await self._provider.transfer(source, target)
            except TransferError as err:
                if err is self._unreachable_stop:
                    raise
                if err.code == UNREACHABLE and not self._storage_reached:
                    self._unreachable_stop = self._unreachable(err, storage=True)
                    raise self._unreachable_stop from err
                self._storage_reached = True
                if err.action is Action.RESIGN:
                    if err.code != EXPIRED:
                        refused += 1
                        if refusals is not None and refused > refusals:
                            raise  # each re-sign would only make another record
                    resigns += 1
                    target = await self._resign(source, resigns, err)
                    continue
                first_failure = self._clock.now() if first_failure is None else first_failure
                retrying = self._retrying(err, attempts, first_failure)
                self._refused(err, self.put_pacer, started, retrying=retrying)
                if retrying:
                    await self._back_off(attempts, err)
                    continue
                raise
            self._storage_reached = True
            return landed

    async def _resign(
        self, source: Source, resigns: int, cause: TransferError | None = None
    ) -> Target:
        if resigns > self._policy.max_resigns:
            if cause is not None:
                raise cause
            raise TransferError(
                "the upload URL expired again and again before its PUT could start",
                action=Action.FAIL_ITEM,
                code=EXPIRED,
                provider=self._provider.name,
                op="transfer",
            )
        self._counters.resigns += 1
        return await self.acquire(source)

    # -- refusals --------------------------------------------------------------

    def _unreachable(self, err: TransferError, *, storage: bool = False) -> TransferError:
        """A STOP: the API (or storage) could not be reached before it ever answered.

        A wrong `--base-url`, a sim that is not running, no network, a storage
        host behind a firewall: retrying each item for the retry window, then
        failing every one, would tell the user nothing more. Once it has
        answered anything, a connection it refuses is an outage, and retried
        like any other. `err.message` names only scheme, host and port.
        """
        if storage:
            hint = (
                "; nothing was uploaded. The provider's upload URLs point at this storage "
                "host: check the network (or a proxy or firewall) to it, then run the same "
                "command again"
            )
        else:
            hint = (
                "; nothing was sent. Check the provider's base_url "
                "(or --base-url) and the network, then run the same command again"
            )
        return TransferError(
            f"{err.message}{hint}",
            action=Action.STOP,
            code=UNREACHABLE,
            provider=err.provider,
            op=err.op,
        )

    def _retrying(self, err: TransferError, attempt: int, first_failure: float) -> bool:
        """Whether to try a failed step again: transient, and not yet out of tries *and* time."""
        if err.action is not Action.RETRY:
            return False
        return not self._policy.gives_up(attempt, self._clock.now() - first_failure)

    def _refused(
        self, err: TransferError, pacer: Pacing, started: float, *, retrying: bool
    ) -> None:
        """Obey the adapter's classification: a plane-wide throttle slows every call."""
        plane = err.scope is Scope.PLANE
        if plane:
            self._counters.throttles += 1
            pacer.on_throttle(err.retry_after, started)
        waited = plane or retrying  # a wait it asked for was (or is about to be) imposed
        if waited and err.retry_after is not None and err.retry_after > self._policy.max_wait_s:
            self._counters.waits_capped += 1

    async def _back_off(self, attempt: int, err: TransferError) -> None:
        self._counters.retries += 1
        await self._clock.sleep(self._policy.delay(attempt, self._rng, err.retry_after))
