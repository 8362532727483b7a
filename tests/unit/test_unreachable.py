"""An API that cannot be reached before it ever answered stops the run; after that it is an outage.

On the scripted provider and a fake clock: connection-refused errors (code
`unreachable`, as `ingest.http` classifies them) on the first calls stop the
run at once with `StopReason.UNREACHABLE`, no item failed and no retry spent;
the same errors after the API has answered are retried through the window
like any outage, and every item lands.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.clock import Clock, FakeClock
from ingest.config import RunSettings
from ingest.engine import StopReason
from ingest.errors import UNREACHABLE, Action, TransferError
from tests.fakeprovider import FakeProvider, run_engine, write_manifest
from tests.images import make_image

pytestmark = pytest.mark.anyio

KEYS = [f"k{i}" for i in range(10)]
RUN = RunSettings(api_concurrency=3, put_concurrency=2, lookahead=1, retry_window_s=60.0)


def refused() -> TransferError:
    return TransferError(
        "cannot reach http://127.0.0.1:9: connection refused",
        action=Action.RETRY,
        code=UNREACHABLE,
        provider="fake",
        op="acquire",
    )


class GoesAway(FakeProvider):
    """The API answers `answered` acquires, then refuses connections for `length` seconds."""

    def __init__(self, clock: Clock, *, answered: int, length: float) -> None:
        super().__init__(clock)
        self._answered, self._length = answered, length
        self._gone_at: float | None = None

    async def _step(self, op: str, key: str) -> None:
        await super()._step(op, key)
        if op != "acquire":
            return
        if self._gone_at is None and len(self.calls("acquire")) > self._answered:
            self._gone_at = self._clock.now()
        if self._gone_at is not None and self._clock.now() < self._gone_at + self._length:
            raise refused()


def manifest(tmp_path: Path) -> Path:
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    return write_manifest(tmp_path / "m.jsonl", [{"path": "a.png", "id": k} for k in KEYS])


async def test_unreachable_from_the_start_stops_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = GoesAway(clock, answered=0, length=1e9)
    ran = await run_engine(tmp_path, provider, manifest(tmp_path), clock, run=RUN)
    assert ran.outcome.stop_reason is StopReason.UNREACHABLE
    message = ran.outcome.stop_message or ""
    assert message.startswith("cannot reach http://127.0.0.1:9: connection refused")
    counters = ran.outcome.counters
    assert counters.failed == 0 and counters.retries == 0  # nothing failed, no time spent
    assert counters.api_calls <= RUN.api_concurrency  # each API slot tried once at most
    assert clock.slept == 0.0
    assert not any(rec.get("s") == "fail" for rec in ran.journal.unfinished.values())


async def test_an_api_that_answered_then_went_away_is_an_outage(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = GoesAway(clock, answered=2, length=30.0)
    ran = await run_engine(tmp_path, provider, manifest(tmp_path), clock, run=RUN)
    assert ran.outcome.stop_reason is None
    assert ran.outcome.counters.failed == 0 and ran.outcome.counters.retries > 0
    assert all(ran.journal.is_done(key) for key in KEYS)
    assert clock.now() >= 1000.0 + 30.0  # the items waited the outage out
