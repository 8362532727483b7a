"""Backoff policy: exponential with full jitter, Retry-After honoured.

Owns how long to wait before attempt n+1 and when to give up. It never sleeps
itself; the scheduler does, so tests can drive it with a fake RNG.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts every try of one step, the first included."""

    max_attempts: int = 8
    base_s: float = 0.2
    cap_s: float = 30.0
    max_resigns: int = 8

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based).

        Full jitter (AWS architecture blog): uniform in [0, min(cap, base·2^n)].
        A server's Retry-After is a floor, never shortened by jitter.
        """
        ceiling = min(self.cap_s, self.base_s * (2 ** (attempt - 1)))
        wait = rng.uniform(0.0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap_s * 4))
        return wait


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from `Retry-After` (delta or HTTP date) or `retry-after-ms`, if present."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
