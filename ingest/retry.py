"""Backoff policy: exponential with full jitter, Retry-After honoured up to a cap.

Owns how long to wait before attempt n+1 and when to give up. It never sleeps
itself; the engine does (on its clock), so tests can drive it with a fake RNG
and a fake clock. Its values come from `[run]` (`EngineSettings` builds it);
it has no defaults of its own.

Giving up is bounded by count *and* time: a step is retried until it has been
tried `max_attempts` times and `window_s` seconds have passed since its first
failure. A count alone was spent in a few seconds when the first waits were
short (8 tries with full jitter from 0.2 s: a 20 s storage outage failed 96 %
of the items it caught); the window makes any outage shorter than it fail
nothing, while a step that fails fast and for good still stops at the count
once the window is over.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts every try of one step, the first included.

    `window_s` is the least time a step is retried, from its first failure
    (`[run] retry_window_s`); `max_wait_s` caps a server's Retry-After
    (`[run] max_pause_s`).
    """

    max_attempts: int
    window_s: float
    base_s: float
    cap_s: float
    max_resigns: int
    max_wait_s: float

    def gives_up(self, attempt: int, failing_for_s: float) -> bool:
        """Whether failed attempt number `attempt` (1-based) is the last one.

        `failing_for_s`: seconds since the step's first failure. Both bounds
        must be reached: the count, and the time window.
        """
        return attempt >= self.max_attempts and failing_for_s >= self.window_s

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based).

        Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^n)].
        A server's Retry-After is a floor, never shortened by jitter, but never
        longer than `max_wait_s` (the engine counts the waits it cut).
        """
        ceiling = min(self.cap_s, self.base_s * (2 ** (attempt - 1)))
        wait = rng.uniform(0.0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_wait_s))
        return wait


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from `retry-after-ms`, else `Retry-After` (delta or HTTP date), if present.

    The millisecond header first, as Scenario's SDK reads them (scenario-sdk
    2.4.0 ``_base_client.py::_parse_retry_after_header``; the OpenAI/Stainless
    clients share it). A value that is no finite number of at least 0 is as
    good as absent (the SDK's ``_calculate_retry_timeout`` ignores a negative
    one too), so the next header still counts.
    """
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return seconds
    import email.utils  # a date Retry-After is rare: not on every run's start

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _finite(text: str | None) -> float | None:
    """`text` as a finite number >= 0, else None ("nan", "inf", "-5", "soon" are None)."""
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
