"""Throttles: the adapter classifies (one item's refusal, or the plane's pace), the engine obeys.

Found by review: the engine read `status == 429` itself and paused every API
call for the Retry-After, whatever the adapter had said, with no cap. One
Autoenhance "same file name" refusal (a 429 that fails only its item) with
`Retry-After: 3600` stalled the whole run for an hour. Now an error carries
its `Scope`, set where it is built; only `Scope.PLANE` pauses the plane, and
no pause or wait outlasts `[run] max_pause_s`, which the run reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ingest.clock import FakeClock
from ingest.config import RunSettings
from ingest.errors import Action, Scope, TransferError
from ingest.http import Response, http_error
from ingest.providers.autoenhance import AutoenhanceProvider
from ingest.storage import classify_storage_error
from tests.fakeapi import Canned, FakeApi, context, source
from tests.fakeprovider import FakeProvider, Ran, refusal, run_engine, write_manifest
from tests.images import make_image

pytestmark = pytest.mark.anyio

HOUR = {"Retry-After": "3600"}
SAME_NAME = {
    "message": "Too many images with the same file name: 30 per 3600 s",
    "detail": {"rule": "same_file_name", "image_name": "a.jpg", "limit": 30},
}
RATE = {"message": "Too Many Requests", "detail": "Rate limit exceeded: 300 requests per second"}


# --- where the scope is set -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "action", "scope"),
    [
        (429, {}, Action.RETRY, Scope.PLANE),
        (429, HOUR, Action.RETRY, Scope.PLANE),
        (503, HOUR, Action.RETRY, Scope.PLANE),  # "come back later" for everyone
        (503, {}, Action.RETRY, Scope.ITEM),  # an outage, not a pace: retried, nobody waits
        (500, HOUR, Action.RETRY, Scope.ITEM),
        (401, {}, Action.STOP, Scope.ITEM),
        (404, {}, Action.FAIL_ITEM, Scope.ITEM),
    ],
)
def test_http_triage_sets_the_scope(
    status: int, headers: dict[str, str], action: Action, scope: Scope
) -> None:
    err = http_error(
        Response(status, headers, b"", 0.0, 0.0), provider="p", op="acquire", code="c", message="m"
    )
    assert (err.action, err.scope) == (action, scope)


def test_an_adapter_that_fails_the_item_on_a_429_is_not_a_throttle() -> None:
    err = http_error(
        Response(429, HOUR, b"", 0.0, 0.0),
        provider="p",
        op="acquire",
        code="quota",
        message="m",
        action=Action.FAIL_ITEM,
    )
    assert err.scope is Scope.ITEM and err.retry_after == 3600


@pytest.mark.parametrize(
    ("status", "code", "headers", "scope"),
    [
        (429, "TooManyRequests", {}, Scope.PLANE),
        (503, "SlowDown", {}, Scope.PLANE),  # S3's "reduce your request rate"
        (503, "ServiceUnavailable", {"Retry-After": "5"}, Scope.PLANE),
        (503, "ServiceUnavailable", {}, Scope.ITEM),
        (500, "InternalError", {}, Scope.ITEM),
    ],
)
def test_storage_triage_sets_the_scope(
    status: int, code: str, headers: dict[str, str], scope: Scope
) -> None:
    body = f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode()
    assert classify_storage_error(status, body, headers, provider="p").scope is scope


@pytest.mark.parametrize(
    ("body", "wait", "action", "scope"),
    [
        (SAME_NAME, 3600, Action.FAIL_ITEM, Scope.ITEM),
        # A rate limit's own wait; one of a minute or more on a named create is read
        # as the name rule whatever its body (test_autoenhance_fidelity.py).
        (RATE, 30, Action.RETRY, Scope.PLANE),
    ],
)
async def test_autoenhance_tells_its_two_429s_apart(
    tmp_path: Path, body: dict[str, Any], wait: int, action: Action, scope: Scope
) -> None:
    err = await autoenhance_refusal(tmp_path, body, {"Retry-After": str(wait)})
    assert (err.status, err.action, err.scope, err.retry_after) == (429, action, scope, wait)


async def autoenhance_refusal(
    tmp_path: Path, body: dict[str, Any], headers: dict[str, str] = HOUR
) -> TransferError:
    """The error the real Autoenhance adapter raises for a 429 with this body (an hour's wait)."""
    api = FakeApi(Canned(429, body, headers))
    adapter = AutoenhanceProvider(context(api, "autoenhance", {"order_id": "o-1"}))
    with pytest.raises(TransferError) as info:
        await adapter.acquire(source(tmp_path))
    return info.value


# --- what the engine does with it -----------------------------------------------------------

KEYS = [f"k{i}" for i in range(12)]


async def run(tmp_path: Path, provider: FakeProvider, clock: FakeClock, **run: Any) -> Ran:
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"path": "a.png", "id": k} for k in KEYS])
    settings = RunSettings(api_concurrency=2, put_concurrency=2, lookahead=1, **run)
    return await run_engine(tmp_path, provider, manifest, clock, run=settings)


async def test_an_item_level_429_with_an_hour_s_retry_after_never_pauses_the_others(
    tmp_path: Path,
) -> None:
    refused = await autoenhance_refusal(tmp_path, SAME_NAME)
    clock = FakeClock()
    start = clock.now()
    provider = FakeProvider(clock)
    provider.fail_always("acquire", "k0", refused)
    ran = await run(tmp_path, provider, clock)
    c = ran.outcome.counters
    assert (c.done, c.failed, c.throttles, c.waits_capped) == (len(KEYS) - 1, 1, 0, 0)
    assert ran.events.failed == [("k0", "same_name_limit")]
    assert ran.engine.api_pacer.stats().throttles == 0
    assert clock.now() == start and clock.longest_sleep == 0  # nobody waited at all
    assert all(call.at == start for call in provider.log)


@pytest.mark.parametrize("cap", [60.0, 5.0])
async def test_a_plane_throttle_pauses_every_call_for_at_most_the_cap(
    tmp_path: Path, cap: float
) -> None:
    clock = FakeClock()
    start = clock.now()
    provider = FakeProvider(clock)
    provider.fail(
        "acquire", "k0", refusal(Action.RETRY, "rate_limited", retry_after=3600, scope=Scope.PLANE)
    )
    ran = await run(tmp_path, provider, clock, max_pause_s=cap)
    c = ran.outcome.counters
    assert (c.done, c.failed, c.throttles, c.waits_capped) == (len(KEYS), 0, 1, 1)
    assert ran.engine.api_pacer.stats().paused_for <= cap
    acquires = [call.at - start for call in provider.calls("acquire")]
    # Only the calls already in flight with the refused one (at most api_concurrency)
    # started before the pause ended; every later call waited for it, nobody for an hour.
    assert sum(1 for at in acquires if at < cap) <= 2
    assert min(at for at in acquires if at >= cap) == pytest.approx(cap)
    assert clock.now() - start < 2 * cap


async def test_an_item_s_own_retry_after_delays_only_that_item_and_is_capped(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    start = clock.now()
    provider = FakeProvider(clock)
    provider.fail("acquire", "k0", refusal(Action.RETRY, "busy", retry_after=3600))
    ran = await run(tmp_path, provider, clock, max_pause_s=60.0)
    c = ran.outcome.counters
    assert (c.done, c.failed, c.throttles, c.retries, c.waits_capped) == (len(KEYS), 0, 0, 1, 1)
    k0 = [call.at - start for call in provider.calls("acquire", "k0")]
    assert k0 == [0.0, pytest.approx(60.0)]  # waited the cap, not the hour
    others = [call.at - start for call in provider.log if call.key != "k0"]
    assert max(others) == 0.0  # everyone else went on at once
