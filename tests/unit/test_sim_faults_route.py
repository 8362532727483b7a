"""The ``api.route`` fault-plan item: grammar, round trip, and which requests it spares."""

from __future__ import annotations

import pytest

from ingest.sim.faults import Decision, FaultInjector, FaultPlan


def test_parse_and_round_trip() -> None:
    plan = FaultPlan.parse("seed=3,api.503=1,api.route=/complete")
    assert plan.api_route == "/complete"
    assert FaultPlan.parse(str(plan)) == plan
    assert str(plan) == "seed=3,api.503=1,api.route=/complete"
    assert FaultPlan.parse("api.route=none").api_route is None
    assert FaultPlan.parse("api.route=/a=b").api_route == "/a=b"


@pytest.mark.parametrize("text", ["api.route=", "api.route=/x,api.route=/y"])
def test_bad_route_items_are_named(text: str) -> None:
    with pytest.raises(ValueError, match=r"api\.route"):
        FaultPlan.parse(text)


def test_route_spares_other_paths_without_shifting_the_stream() -> None:
    plan = FaultPlan.parse("seed=5,api.503=0.5,api.stall=0.2,api.latency=1")
    routed = plan.replace(api_route="/complete")
    free, scoped = FaultInjector(plan), FaultInjector(routed)
    paths = ["/api/v1/files/upload-url", "/api/v1/files/f1/complete"] * 50
    for path in paths:
        expected = free.decide_api(path)
        got = scoped.decide_api(path)
        assert got == (expected if "/complete" in path else Decision())
    # Without a path (callers that do not know it) every request is eligible.
    assert FaultInjector(routed).decide_api() == FaultInjector(plan).decide_api()
