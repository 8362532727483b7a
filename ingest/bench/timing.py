"""Per-request timings without touching the engine: a provider that times another.

`timed(provider)` returns a `TimedProvider`, which implements the same
`Provider` protocol by delegating every step and records, per call:

- the wall time of each `acquire` (one API call, pacer waits excluded: the
  engine waits before it calls) and each `transfer` (one PUT), successes and
  failures alike;
- at the start of each transfer, how long its target has waited since it was
  signed (lease granted minus time left) against the lifetime it was granted;
- 429s answered to acquires and transfers.

Samples are kept in `array('d')` (8 bytes each), enough for any benchmark run.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ingest.capabilities import Capabilities
from ingest.errors import TransferError
from ingest.item import Source
from ingest.providers.base import Landed, Provider, Target


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The `q`-quantile (0..1) by nearest rank; None when there are no samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


@dataclass(slots=True)
class Timings:
    """What a `TimedProvider` saw."""

    acquire_s: array[float] = field(default_factory=lambda: array("d"))
    transfer_s: array[float] = field(default_factory=lambda: array("d"))
    queued_s: array[float] = field(default_factory=lambda: array("d"))  # signed → PUT start
    granted_s: array[float] = field(default_factory=lambda: array("d"))  # lifetime granted
    api_429: int = 0
    put_429: int = 0
    acquires: int = 0
    transfers: int = 0


class TimedProvider:
    """A `Provider` that delegates to `inner` and records `timings`. Make with `timed`."""

    name: ClassVar[str] = "timed"

    def __init__(
        self,
        inner: Provider,
        *,
        clock: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.inner = inner
        self.caps: Capabilities = inner.caps
        self.timings = Timings()
        self._clock = clock
        self._perf = perf

    async def acquire(self, source: Source) -> Target:
        t = self.timings
        t.acquires += 1
        start = self._perf()
        try:
            return await self.inner.acquire(source)
        except TransferError as err:
            if err.status == 429:
                t.api_429 += 1
            raise
        finally:
            t.acquire_s.append(self._perf() - start)

    async def transfer(self, source: Source, target: Target) -> Target:
        t = self.timings
        t.transfers += 1
        lease = target.lease
        if lease is not None:
            t.granted_s.append(lease.granted_s)
            t.queued_s.append(lease.granted_s - lease.time_left(self._clock()))
        start = self._perf()
        try:
            return await self.inner.transfer(source, target)
        except TransferError as err:
            if err.status == 429:
                t.put_429 += 1
            raise
        finally:
            t.transfer_s.append(self._perf() - start)

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        return await self.inner.finalize(batch)

    def landed(self, source: Source, target: Target) -> Landed:
        return self.inner.landed(source, target)


def timed(provider: Provider) -> TimedProvider:
    """Wrap `provider`; the wrapper keeps its name (errors and journal stay the same)."""
    cls = type(f"Timed{type(provider).__name__}", (TimedProvider,), {"name": provider.name})
    wrapper: TimedProvider = cls(provider)
    return wrapper
