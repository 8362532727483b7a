"""The engine's handling of each error class, table by table, on a fake provider and a fake clock.

Retries back off on the clock; RESIGN (or a lease about to run out) signs a
new URL; STOP and the circuit breaker end the run with their `StopReason`;
a drain and an abort stop it on request. Each case runs in milliseconds:
the backoff sleeps are virtual.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ingest.clock import FakeClock
from ingest.config import RunSettings
from ingest.engine import StopReason
from ingest.errors import Action, TransferError
from ingest.item import Source
from ingest.providers.base import Target
from tests.fakeprovider import FakeProvider, Ran, refusal, run_engine, write_manifest
from tests.images import make_image

pytestmark = pytest.mark.anyio

KEYS = [f"k{i}" for i in range(8)]
RUN = RunSettings(
    api_concurrency=2,
    put_concurrency=2,
    lookahead=1,
    max_attempts=3,
    max_resigns=2,
    retry_window_s=0,
)


def manifest(tmp_path: Path, keys: list[str] = KEYS) -> Path:
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    return write_manifest(tmp_path / "m.jsonl", [{"path": "a.png", "id": k} for k in keys])


async def run(
    tmp_path: Path, provider: FakeProvider, clock: FakeClock, settings: RunSettings = RUN
) -> Ran:
    ran = await run_engine(tmp_path, provider, manifest(tmp_path), clock, run=settings)
    assert ran.engine.tally.counts() == ran.journal.counts()  # the run's counts are the journal's
    return ran


def retry(op: str = "acquire") -> TransferError:
    return refusal(Action.RETRY, "busy", op=op)


# op, errors raised for k0 in order, then: k0's final state, acquires and PUTs of k0, counters
TABLE = [
    ("acquire", [retry()], "done", 2, 1, {"retries": 1}),
    ("acquire", [retry(), retry()], "done", 3, 1, {"retries": 2}),
    ("acquire", [retry()] * 3, "fail", 3, 0, {"retries": 2, "failed": 1}),
    ("acquire", [refusal(Action.FAIL_ITEM, "refused")], "fail", 1, 0, {"retries": 0, "failed": 1}),
    ("transfer", [retry("transfer")], "done", 1, 2, {"retries": 1, "resigns": 0}),
    ("transfer", [retry("transfer")] * 3, "fail", 1, 3, {"retries": 2, "failed": 1}),
    ("transfer", [refusal(Action.RESIGN, "expired", op="transfer")], "done", 2, 2, {"resigns": 1}),
    (
        "transfer",
        [refusal(Action.RESIGN, "expired", op="transfer")] * 3,
        "fail",
        3,
        3,
        {"resigns": 2, "failed": 1},
    ),
]


@pytest.mark.parametrize(("op", "errors", "state", "acquires", "puts", "counts"), TABLE)
async def test_each_error_class_is_handled_by_its_action(
    tmp_path: Path,
    op: str,
    errors: list[TransferError],
    state: str,
    acquires: int,
    puts: int,
    counts: dict[str, int],
) -> None:
    clock = FakeClock()
    provider = FakeProvider(clock)
    provider.fail(op, "k0", *errors)
    ran = await run(tmp_path, provider, clock)
    assert ran.outcome.stop_reason is None
    final = "done" if ran.journal.is_done("k0") else ran.journal.unfinished["k0"]["s"]
    assert final == state
    assert len(provider.calls("acquire", "k0")) == acquires
    assert len(provider.calls("transfer", "k0")) == puts
    for name, value in counts.items():
        assert getattr(ran.outcome.counters, name) == value, name
    assert ran.outcome.counters.done == len(KEYS) - (state != "done")
    for key in KEYS[1:]:  # one item's trouble is nobody else's
        assert len(provider.calls("acquire", key)) == len(provider.calls("transfer", key)) == 1


async def test_backoff_sleeps_on_the_clock_and_grows(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider(clock)
    provider.fail("acquire", "k0", retry(), retry())
    settings = RunSettings(max_attempts=3, backoff_base_s=10.0, backoff_cap_s=100.0)
    await run(tmp_path, provider, clock, settings)
    starts = [call.at for call in provider.calls("acquire", "k0")]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 2
    assert all(0 <= gap <= 10.0 * 2**n for n, gap in enumerate(gaps))  # full jitter under 10·2^n
    assert clock.slept == pytest.approx(sum(gaps))  # nothing else slept


async def test_a_lease_about_to_expire_is_re_signed_before_the_put(tmp_path: Path) -> None:
    """k0's first PUT is refused with Retry-After 30; its 20 s URL would be dead by the retry."""
    clock = FakeClock()
    provider = FakeProvider(clock, lifetime_s=20.0)
    provider.fail("transfer", "k0", refusal(Action.RETRY, "busy", op="transfer", retry_after=30.0))
    ran = await run(tmp_path, provider, clock)
    assert ran.journal.is_done("k0")
    assert provider.signed["k0"] == 2 and len(provider.calls("transfer", "k0")) == 2
    assert ran.outcome.counters.resigns == 1
    assert clock.longest_sleep == pytest.approx(30.0)  # Retry-After is a floor
    # Never a PUT on a dead URL: the fake storage would have answered RESIGN ("expired").
    assert ran.outcome.counters.retries == 1 and ran.outcome.counters.failed == 0


async def test_a_stop_class_error_ends_the_run_with_provider_as_its_reason(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider(clock)
    provider.fail("acquire", "k3", refusal(Action.STOP, "no_balance"))
    ran = await run(tmp_path, provider, clock)
    assert ran.outcome.stop_reason is StopReason.PROVIDER
    assert ran.outcome.stop_message is not None and "no_balance" in ran.outcome.stop_message
    assert ran.outcome.counters.failed == 0  # a stop fails no item: a resume redoes the rest
    assert "k3" not in ran.journal.unfinished or ran.journal.unfinished["k3"]["s"] != "fail"


async def test_a_streak_of_identical_failures_trips_the_circuit_breaker(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider(clock)
    keys = [f"k{i}" for i in range(40)]
    for key in keys:
        provider.fail_always("acquire", key, refusal(Action.FAIL_ITEM, "http_500"))
    settings = RunSettings(api_concurrency=1, put_concurrency=1, lookahead=1, circuit_breaker=5)
    ran = await run_engine(tmp_path, provider, manifest(tmp_path, keys), clock, run=settings)
    assert ran.outcome.stop_reason is StopReason.CIRCUIT_BREAKER
    assert ran.outcome.stop_message is not None
    assert "5 items in a row" in ran.outcome.stop_message
    assert ran.outcome.counters.failed == 5 == ran.journal.counts()["failed"]


async def test_a_success_resets_the_streak(tmp_path: Path) -> None:
    clock = FakeClock()
    provider = FakeProvider(clock)
    keys = [f"k{i}" for i in range(12)]
    for key in keys[::2]:  # every other item fails: never 3 in a row
        provider.fail_always("acquire", key, refusal(Action.FAIL_ITEM, "http_500"))
    settings = RunSettings(api_concurrency=1, put_concurrency=1, lookahead=1, circuit_breaker=3)
    ran = await run_engine(tmp_path, provider, manifest(tmp_path, keys), clock, run=settings)
    assert ran.outcome.stop_reason is None
    assert (ran.outcome.counters.failed, ran.outcome.counters.done) == (6, 6)


class Stopper(FakeProvider):
    """Calls `engine.abort()` or `engine.drain()` at its `after`-th PUT."""

    def __init__(self, clock: FakeClock, how: str, after: int) -> None:
        super().__init__(clock)
        self.how, self.after = how, after

    async def transfer(self, source: Source, target: Target) -> Target:
        target = await super().transfer(source, target)
        if len(self.calls("transfer")) == self.after:
            assert self.engine is not None
            self.engine.abort() if self.how == "abort" else self.engine.drain()
        return target


@pytest.mark.parametrize(
    ("how", "reason", "drained"), [("abort", StopReason.INTERRUPTED, False), ("drain", None, True)]
)
async def test_abort_and_drain(
    tmp_path: Path, how: str, reason: StopReason | None, drained: bool
) -> None:
    clock = FakeClock()
    provider = Stopper(clock, how, after=3)
    ran = await run(tmp_path, provider, clock)
    assert ran.outcome.stop_reason is reason
    assert ran.outcome.drained is drained
    assert ran.outcome.counters.done < len(KEYS)
    assert ran.outcome.counters.failed == 0  # neither counts anything as failed


# --- finalize ---------------------------------------------------------------------------------

# errors raised for k0's finalize, then: k0's final state, finalize calls of k0, its action
FINALIZE = [
    ([], "done", 1, None),
    ([retry("finalize")], "done", 2, None),  # about the whole call: the batch is retried
    ([refusal(Action.FAIL_ITEM, "gone", op="finalize")], "fail", 1, "fail_item"),
    ([retry("finalize")] * 3, "fail", 3, "retry"),  # a resume finalizes it (triage's table)
]


@pytest.mark.parametrize(("errors", "state", "calls", "action"), FINALIZE)
async def test_finalize_outcomes_are_per_item(
    tmp_path: Path, errors: list[TransferError], state: str, calls: int, action: str | None
) -> None:
    clock = FakeClock()
    provider = FakeProvider(clock, finalize=True, finalize_batch=4)
    provider.fail("finalize", "k0", *errors)
    ran = await run(tmp_path, provider, clock)
    assert ran.outcome.stop_reason is None
    assert len(provider.calls("finalize", "k0")) == calls
    assert len(provider.calls("transfer", "k0")) == 1  # finalize never uploads again
    if state == "done":
        assert ran.journal.is_done("k0")
    else:
        rec = ran.journal.unfinished["k0"]
        assert rec["s"] == "fail" and rec["a"] == action
        # What landed is kept whatever the failure: its target and the file's fingerprint.
        assert (rec.get("st"), rec.get("r"), rec.get("z")) == ("up", "r-k0", 2_000)
    c = ran.outcome.counters
    assert c.done + c.failed == len(KEYS)
    if action == "fail_item":
        assert c.failed == 1  # one item's refusal, returned in its place: the others land
    if action == "retry":  # the whole call failed: so did every item batched with k0
        assert all(
            rec["s"] == "fail" and rec.get("st") == "up" for rec in ran.journal.unfinished.values()
        )
