"""Upload-target leases: when a pre-signed URL stops working, on our clock.

Owns the rule that a lease's expiry comes from the response's
`expires_at`, else from the URL itself (`X-Amz-Date` + `X-Amz-Expires`, or a
SigV2/CloudFront `Expires` epoch), else from the provider's documented
lifetime; and it is corrected for the skew between the server's clock (its
`Date` header) and ours. All times are POSIX seconds on the local clock.
Also what a URL that arrived expired (or about to) by its own `X-Amz-Date`
and `X-Amz-Expires` on our clock is (`late_url`: one warning a run).
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Lease:
    """The life of one upload target, on the local clock."""

    expires_at: float
    granted_s: float  # the lifetime left when it was acquired
    source: str  # "field", "url", "default": where the expiry came from (for reports)
    # The URL's own X-Amz-Date (POSIX seconds, the signer's clock) and X-Amz-Expires, when it
    # carries both: read once, with the expiry, for `late_url`'s look on our clock.
    signed: tuple[float, int] | None = None

    def time_left(self, now: float) -> float:
        return self.expires_at - now


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


@functools.lru_cache(maxsize=64)
def _http_date(value: str) -> float | None:
    # Cached: every answer within one second carries the same `Date`. The IMF-fixdate
    # every server sends (RFC 9110 section 5.6.7: "Sun, 06 Nov 1994 08:49:37 GMT") is read
    # here; any other form by email.utils, imported only then (14 ms of a run's start).
    parts = value.split()
    year = parts[3] if len(parts) == 6 else ""
    # A four-digit year only: RFC 5322's obsolete two-digit one (94: 1994) is email.utils'.
    if len(year) == 4 and year.isdigit() and parts[5] == "GMT" and len(parts[4]) == 8:
        month = _MONTHS.get(parts[2])
        hms = parts[4].split(":")
        if month and parts[1].isdigit() and all(len(x) == 2 and x.isdigit() for x in hms):
            try:
                hour, minute, second = (int(x) for x in hms)
                when = datetime(
                    int(parts[3]), month, int(parts[1]), hour, minute, second, tzinfo=UTC
                )
            except ValueError:
                return None
            return when.timestamp()
    import email.utils  # the rare obsolete forms only

    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def server_skew(date_header: str | None, local_now: float) -> float:
    """Seconds the server's clock is ahead of ours (0 when unknown).

    The `Date` header has one-second resolution, so the result is accurate to
    about a second; callers keep a safety margin larger than that.
    """
    server_now = _http_date(date_header) if date_header else None
    return 0.0 if server_now is None else server_now - local_now


def _latest_skew(date_header: str | None, sent_at: float) -> float:
    """The largest skew the `Date` header allows (0 when there is none).

    The server stamped `Date` somewhere between `sent_at` and the answer, and
    truncated it to the second, so its clock read at most `Date + 1 s` when
    ours read `sent_at`. Taking that upper bound means a lease never
    overstates the time left: with equal clocks, the plain difference
    `Date - received_at` is up to a second (plus the round trip) too small,
    which pushed a short lease's expiry past the real one and let PUTs start
    on URLs that storage had already expired.
    """
    server_now = _http_date(date_header) if date_header else None
    return 0.0 if server_now is None else server_now + 1.0 - sent_at


@functools.lru_cache(maxsize=64)
def _parse_amz_date(value: str) -> float | None:
    # `YYYYMMDDTHHMMSSZ`; cached, as URLs signed within one second share it.
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        return None
    digits = value[:8] + value[9:15]
    if not digits.isdigit():
        return None
    try:
        moment = datetime(
            int(digits[:4]), int(digits[4:6]), int(digits[6:8]),
            int(digits[8:10]), int(digits[10:12]), int(digits[12:14]),
        )  # fmt: skip
    except ValueError:
        return None
    return float(calendar.timegm(moment.timetuple()))


def _parse_iso(value: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return float(calendar.timegm(parsed.timetuple())) + parsed.microsecond / 1e6
    return parsed.timestamp()


def _query(url: str) -> dict[str, str]:
    # Split by hand, not `parse_qsl`: this runs for every URL, and the values
    # read here are plain digits that are never percent-encoded.
    _, _, rest = url.partition("?")
    return dict(part.partition("=")[::2] for part in rest.partition("#")[0].split("&"))


def _amz_window(query: dict[str, str]) -> tuple[float, int] | None:
    """`X-Amz-Date` (POSIX seconds, the signer's clock) and `X-Amz-Expires`, if both."""
    amz_date, amz_expires = query.get("X-Amz-Date"), query.get("X-Amz-Expires")
    if amz_date and amz_expires and amz_expires.isdigit():
        start = _parse_amz_date(amz_date)
        if start is not None:
            return start, int(amz_expires)
    return None


@dataclass(frozen=True, slots=True)
class LateURL:
    """A signed URL that arrived expired, or within `ARRIVAL_MARGIN_S` of it, by its own
    `X-Amz-Date` + `X-Amz-Expires` read on the local clock (for a warning: no URL kept)."""

    age_s: float  # local clock minus its X-Amz-Date: the signer's clock skew plus the call
    lifetime_s: int  # its X-Amz-Expires


ARRIVAL_MARGIN_S = 5.0


def late_url(lease: Lease | None, now: float) -> LateURL | None:
    """The URL `lease` was built from as a `LateURL` if it arrived (at `now`, local) expired
    or about to by its own signing time (`Lease.signed`); None if it did not or carries no
    `X-Amz-Date`/`X-Amz-Expires`."""
    window = lease.signed if lease is not None else None
    if window is None or now - window[0] <= window[1] - ARRIVAL_MARGIN_S:
        return None
    return LateURL(now - window[0], window[1])


def url_expiry(url: str) -> float | None:
    """The server-clock expiry a signed URL carries in its query, if any."""
    query = _query(url)
    return _expiry_of(query, _amz_window(query))


def _expiry_of(query: dict[str, str], window: tuple[float, int] | None) -> float | None:
    """`url_expiry` of a URL's `query` whose `_amz_window` is `window`."""
    if window is not None:
        return window[0] + window[1]
    expires = query.get("Expires")
    if expires and expires.isdigit():
        return float(expires)
    return None


def lease_for(
    *,
    url: str | None,
    expires_at: str | None,
    date_header: str | None,
    sent_at: float,
    received_at: float,
    default_lifetime: float | None,
) -> Lease | None:
    """Build the lease of a freshly acquired target.

    `sent_at`/`received_at` bracket the API call on the local clock; the
    default lifetime counts from `sent_at` (the earliest the server can have
    signed), so it never overstates the time left; for the same reason a
    server-clock expiry is moved to ours with the largest skew the `Date`
    header allows (`_latest_skew`).
    """
    skew = _latest_skew(date_header, sent_at)
    query = _query(url) if url else {}
    signed = _amz_window(query)
    if expires_at:
        server_expiry = _parse_iso(expires_at)
        if server_expiry is not None:
            return Lease(server_expiry - skew, server_expiry - skew - received_at, "field", signed)
    server_expiry = _expiry_of(query, signed)
    if server_expiry is not None:
        return Lease(server_expiry - skew, server_expiry - skew - received_at, "url", signed)
    if default_lifetime is not None:
        return Lease(  # a URL without its own expiry: nothing `signed` either
            sent_at + default_lifetime, sent_at + default_lifetime - received_at, "default"
        )
    return None
