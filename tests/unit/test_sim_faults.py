"""Fault plans: grammar, round trip, validation, seeded determinism, token bucket."""

from __future__ import annotations

from collections import Counter

import pytest

from ingest.sim.faults import Decision, FaultInjector, FaultPlan, TokenBucket

FULL = (
    "seed=7,api.429=0.1,api.retry_after=2,api.500=0.05,api.503=0.05,api.latency=0.05,"
    "put.503=0.05,put.500=0.02,put.429=0.02,put.latency=0.2,put.reset=0.05,put.stall=0.01,"
    "api.stall=0.01,api.rate=20,skew=-300"
)


def test_parse_full_plan() -> None:
    plan = FaultPlan.parse(FULL)
    assert plan.seed == 7
    assert plan.api_429 == 0.1
    assert plan.api_retry_after == 2.0
    assert plan.api_rate == 20.0
    assert plan.put_reset == 0.05
    assert plan.put_stall == 0.01
    assert plan.skew == -300.0
    assert plan.lifetime is None


def test_str_round_trips() -> None:
    plan = FaultPlan.parse(FULL)
    assert FaultPlan.parse(str(plan)) == plan
    assert str(plan).startswith("seed=7,api.429=0.1,api.retry_after=2,")
    assert str(FaultPlan()) == "seed=0"
    odd = FaultPlan.parse("api.retry_after=none,lifetime=0.5,skew=3600, put.retry_after = 1")
    assert odd.api_retry_after is None
    assert FaultPlan.parse(str(odd)) == odd


@pytest.mark.parametrize("text", ["", "  ", "none"])
def test_empty_plan_injects_nothing(text: str) -> None:
    assert FaultPlan.parse(text) == FaultPlan()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("api.418=0.1", "api.418=0.1"),
        ("seed", "seed"),
        ("=3", "=3"),
        ("api.429=lots", "api.429=lots"),
        ("seed=1.5", "seed=1.5"),
        ("api.429=1.5", "api.429"),
        ("api.latency=-1", "api.latency"),
        ("api.rate=0", "api.rate"),
        ("skew=nan", "skew"),
        ("api.429=0.1,api.429=0.2", "api.429=0.2"),
        ("api.429=0.6,api.500=0.6", "api.429 + api.500"),
        ("put.reset=0.7,put.503=0.4", "put.reset"),
    ],
)
def test_bad_plans_name_the_item(text: str, named: str) -> None:
    with pytest.raises(ValueError, match="fault plan") as info:
        FaultPlan.parse(text)
    assert named in str(info.value)


def _decisions(plan: FaultPlan, n: int) -> tuple[list[Decision], list[Decision]]:
    injector = FaultInjector(plan)
    return [injector.decide_api() for _ in range(n)], [injector.decide_put() for _ in range(n)]


def test_same_seed_same_decisions() -> None:
    plan = FaultPlan.parse(FULL)
    assert _decisions(plan, 500) == _decisions(plan, 500)
    assert _decisions(plan, 500) != _decisions(plan.replace(seed=8), 500)


def test_streams_do_not_depend_on_traffic_mix() -> None:
    plan = FaultPlan.parse(FULL)
    mixed = FaultInjector(plan)
    apis = []
    for _ in range(100):
        apis.append(mixed.decide_api())
        mixed.decide_put()
    assert apis == _decisions(plan, 100)[0]


def test_decisions_follow_the_probabilities() -> None:
    plan = FaultPlan.parse("seed=1,put.503=0.25,put.reset=0.25,put.stall=0.1,put.latency=2")
    _, puts = _decisions(plan, 4000)
    outcome = Counter("stall" if d.stall else "reset" if d.reset else str(d.status) for d in puts)
    assert 300 < outcome["stall"] < 500
    assert 800 < outcome["503"] < 1200
    assert 800 < outcome["reset"] < 1200
    assert all(1.0 <= d.delay <= 3.0 for d in puts)
    apis, _ = _decisions(plan, 100)
    assert all(d == Decision() for d in apis)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0, now=100.0)
    assert bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == pytest.approx(0.5)  # refused: next token in 0.5 s
    assert bucket.take(100.25) == pytest.approx(0.25)
    assert bucket.take(100.5) == 0.0
    assert bucket.take(200.0) == 0.0  # refilled, but never above the burst
    assert bucket.take(200.0) == 0.0
    assert bucket.take(200.0) > 0.0


def test_injector_rate_limit_uses_its_clock() -> None:
    now = [0.0]
    injector = FaultInjector(FaultPlan.parse("api.rate=3"), monotonic=lambda: now[0])
    assert [injector.throttle_api() for _ in range(4)] == [None, None, None, pytest.approx(1 / 3)]
    now[0] = 1.0
    assert injector.throttle_api() is None
    assert FaultInjector(FaultPlan()).throttle_api() is None
