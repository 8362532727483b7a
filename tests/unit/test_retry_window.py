"""Retries are bounded by time as well as by count (`[run] retry_window_s`), on a fake clock.

A storage or API outage shorter than the window fails no item, however many
tries it costs; an error that never clears fails its item once the window and
`max_attempts` are both spent, not before and not long after. The outages
here last tens of virtual seconds and run in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.clock import Clock, FakeClock
from ingest.config import RunSettings
from ingest.errors import Action
from ingest.retry import RetryPolicy
from tests.fakeprovider import FakeProvider, refusal, run_engine, write_manifest
from tests.images import make_image

pytestmark = pytest.mark.anyio

KEYS = [f"k{i}" for i in range(12)]
# The defaults but for the window: 8 tries from 0.2 s spend about 13 s of full jitter.
RUN = RunSettings(api_concurrency=4, put_concurrency=4, lookahead=2, retry_window_s=60.0)


class Outage(FakeProvider):
    """One plane's calls fail with a network error from `start` (clock time) for `length` s."""

    def __init__(self, clock: Clock, *, op: str, start: float, length: float) -> None:
        super().__init__(clock)
        self._op, self._down = op, (start, start + length)

    async def _step(self, op: str, key: str) -> None:
        await super()._step(op, key)
        if op == self._op and self._down[0] <= self._clock.now() < self._down[1]:
            raise refusal(Action.RETRY, "network", op=op)


def manifest(tmp_path: Path) -> Path:
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    return write_manifest(tmp_path / "m.jsonl", [{"path": "a.png", "id": k} for k in KEYS])


@pytest.mark.parametrize("op", ["acquire", "transfer"])
@pytest.mark.parametrize("length", [5.0, 20.0, 55.0])
async def test_an_outage_shorter_than_the_window_fails_nothing(
    tmp_path: Path, op: str, length: float
) -> None:
    clock = FakeClock()
    start = clock.now()
    provider = Outage(clock, op=op, start=start, length=length)
    ran = await run_engine(tmp_path, provider, manifest(tmp_path), clock, run=RUN)
    assert ran.outcome.stop_reason is None
    assert ran.outcome.counters.failed == 0
    assert ran.outcome.counters.done == len(KEYS)
    assert all(ran.journal.is_done(key) for key in KEYS)
    refused = [call for call in provider.calls(op) if call.at < start + length]
    assert len(refused) > len(KEYS) * 2  # the outage was felt: items retried through it


async def test_the_count_alone_would_have_failed_that_outage(tmp_path: Path) -> None:
    """The same 20 s outage with `retry_window_s = 0` (the old rule): items fail."""
    clock = FakeClock()
    provider = Outage(clock, op="transfer", start=clock.now(), length=20.0)
    run = RunSettings(api_concurrency=4, put_concurrency=4, lookahead=2, retry_window_s=0.0)
    ran = await run_engine(tmp_path, provider, manifest(tmp_path), clock, run=run)
    assert ran.outcome.counters.failed > 0


async def test_an_error_that_never_clears_fails_after_the_window_and_the_count(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    provider = FakeProvider(clock)
    provider.fail_always("transfer", "k3", refusal(Action.RETRY, "http_500", op="transfer"))
    ran = await run_engine(tmp_path, provider, manifest(tmp_path), clock, run=RUN)
    assert ran.outcome.counters.failed == 1 and ran.outcome.counters.done == len(KEYS) - 1
    assert ran.journal.unfinished["k3"]["s"] == "fail"
    tries = [call.at for call in provider.calls("transfer", "k3")]
    assert len(tries) >= RUN.max_attempts
    failing_for = tries[-1] - tries[0]
    assert RUN.retry_window_s <= failing_for <= RUN.retry_window_s + RUN.backoff_cap_s


def test_giving_up_needs_both_bounds() -> None:
    policy = RetryPolicy(
        max_attempts=3, window_s=60.0, base_s=0.1, cap_s=1.0, max_resigns=1, max_wait_s=60.0
    )
    assert not policy.gives_up(3, 59.9)  # out of tries, not of time
    assert not policy.gives_up(2, 600.0)  # out of time, not of tries
    assert policy.gives_up(3, 60.0)
