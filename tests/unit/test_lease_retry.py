"""Leases (expiry from field, URL or default, corrected for skew) and the backoff policy."""

from __future__ import annotations

import random

from multidict import CIMultiDict, CIMultiDictProxy

from ingest.errors import Scope
from ingest.http import Response, http_error
from ingest.lease import lease_for, server_skew, url_expiry
from ingest.retry import RetryPolicy, parse_retry_after
from ingest.storage import classify_storage_error

URL = (
    "https://b.s3.amazonaws.com/k.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20231102%2Fap-southeast-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20231102T060519Z&X-Amz-Expires=120&X-Amz-SignedHeaders=host&x-id=PutObject"
    "&X-Amz-Signature=abc"
)
SIGNED_AT = 1698905119.0  # 2023-11-02T06:05:19Z


def test_url_expiry_from_amz_query() -> None:
    assert url_expiry(URL) == SIGNED_AT + 120
    assert url_expiry("https://x/y?Expires=1700000000&Signature=s") == 1700000000
    assert url_expiry("https://x/y") is None


def test_skew_from_date_header() -> None:
    assert server_skew("Thu, 02 Nov 2023 06:05:19 GMT", SIGNED_AT - 300) == 300
    assert server_skew(None, 0.0) == 0.0
    assert server_skew("garbage", 0.0) == 0.0


def test_lease_is_corrected_for_a_server_clock_ahead_of_ours() -> None:
    local_now = SIGNED_AT - 300  # our clock is 5 minutes behind the server's
    lease = lease_for(
        url=URL,
        expires_at=None,
        date_header="Thu, 02 Nov 2023 06:05:19 GMT",
        sent_at=local_now,
        received_at=local_now,
        default_lifetime=600,
    )
    assert lease is not None
    assert lease.source == "url"
    # Date has one-second resolution: the server's clock may have read up to
    # 06:05:19.999, so the lease is taken a second short rather than a second long.
    assert lease.time_left(local_now) == 119
    assert lease.granted_s == 119


def test_lease_prefers_the_expires_at_field() -> None:
    lease = lease_for(
        url=URL,
        expires_at="2023-11-02T06:20:19Z",
        date_header=None,
        sent_at=SIGNED_AT,
        received_at=SIGNED_AT,
        default_lifetime=None,
    )
    assert lease is not None and lease.source == "field"
    assert lease.time_left(SIGNED_AT) == 900


def test_lease_default_counts_from_the_request() -> None:
    lease = lease_for(
        url="https://x/y",
        expires_at=None,
        date_header=None,
        sent_at=10.0,
        received_at=12.0,
        default_lifetime=120,
    )
    assert lease is not None and lease.expires_at == 130.0 and lease.granted_s == 118.0
    assert (
        lease_for(
            url=None,
            expires_at=None,
            date_header=None,
            sent_at=0,
            received_at=0,
            default_lifetime=None,
        )
        is None
    )


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(
        max_attempts=8, window_s=0.0, base_s=0.5, cap_s=8.0, max_resigns=8, max_wait_s=60.0
    )
    rng = random.Random(1)
    for attempt in range(1, 10):
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        waits = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # really spread, not constant


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(
        max_attempts=8, window_s=0.0, base_s=0.1, cap_s=1.0, max_resigns=8, max_wait_s=60.0
    )
    rng = random.Random(2)
    assert all(policy.delay(1, rng, retry_after=3.0) >= 3.0 for _ in range(50))


def test_retry_after_is_capped_at_the_longest_wait() -> None:
    policy = RetryPolicy(
        max_attempts=8, window_s=0.0, base_s=0.1, cap_s=1.0, max_resigns=8, max_wait_s=60.0
    )
    rng = random.Random(3)
    assert all(policy.delay(1, rng, retry_after=3600.0) == 60.0 for _ in range(50))


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert (
        parse_retry_after({"Retry-After": "Thu, 02 Nov 2023 06:05:29 GMT"}, now=SIGNED_AT) == 10.0
    )
    assert parse_retry_after({}) is None
    assert parse_retry_after({"Retry-After": "soon"}) is None


def test_retry_after_ms_first_and_a_value_that_is_no_wait_counts_as_absent() -> None:
    # scenario-sdk _base_client.py: retry-after-ms before retry-after; a negative wait ignored.
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "7"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "-5", "Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "nan", "Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "inf"}) is None
    assert parse_retry_after({"Retry-After": "nan"}) is None
    assert parse_retry_after({"Retry-After": "-1"}) is None


def test_both_http_layers_read_retry_after_ms_in_any_case() -> None:
    # aiohttp hands over a case-insensitive multidict; the header as a server may spell it.
    headers = CIMultiDictProxy(CIMultiDict({"Retry-After-Ms": "1500"}))
    api = http_error(
        Response(503, headers, b"", 0.0, 0.0), provider="p", op="acquire", code="x", message="m"
    )
    assert (api.retry_after, api.scope) == (1.5, Scope.PLANE)  # a 503 that says when: the pace
    put = classify_storage_error(503, b"", headers, provider="p")
    assert (put.retry_after, put.scope) == (1.5, Scope.PLANE)


def test_a_date_with_a_two_digit_year_is_read_as_email_utils_reads_it() -> None:
    """`Sun, 06 Nov 94 08:49:37 GMT` (RFC 5322's obsolete year, which email.utils reads as
    1994) is not IMF-fixdate: lease._http_date's own reading took it as the year 94, a skew
    of 1,900 years that no lease survives (or that makes one never expire)."""
    import email.utils

    for value in ("Sun, 06 Nov 94 08:49:37 GMT", "Fri, 27 Nov 26 08:49:37 GMT"):
        expected = email.utils.parsedate_to_datetime(value).timestamp()
        assert server_skew(value, expected) == 0.0, value
