"""Seeded, named fault plans and the per-request decisions drawn from them.

Owns the fault-plan grammar (`FaultPlan.parse` / `str`), the token bucket of
``api.rate``, and `FaultInjector`, which turns a plan into decisions. A plan
is a value; the injector holds the random streams and the bucket, and is
replaced whole when the plan changes at runtime.

Grammar: comma-separated ``name=value`` items, order free, each name at most
once; the empty string (or ``none``) is the plan with no faults.

    seed=INT                 random seed (default 0)
    api.429=P api.500=P api.503=P   chance an API request gets that status
    api.stall=P              chance an API request is held unanswered
    api.latency=S            mean delay added to every API request (seconds)
    api.retry_after=S|none   Retry-After on injected API 429s (default 1; none = no header)
    api.rate=R|none          token bucket, R requests/s with burst R, on API routes
    api.route=TEXT|none      the api.429/500/503, api.stall and api.latency faults hit only
                             API requests whose path contains TEXT (e.g. /complete); the
                             others draw the same numbers but are spared (api.rate: all)
    put.429=P put.500=P put.503=P   chance a storage PUT gets that status (after its body)
    put.reset=P              chance a storage PUT is cut mid-body (TCP reset)
    put.stall=P              chance a storage PUT is held unanswered
    put.latency=S            mean delay added to every storage PUT (seconds)
    put.retry_after=S|none   Retry-After on injected storage 429/503s (default none)
    skew=S                   the emulator's clock runs S seconds off real time (signed)
    lifetime=S|none          overrides the URL lifetime of newly issued URLs

Invariants: probabilities are in [0, 1] and the status/reset probabilities of
one side sum to at most 1; every request draws the same number of random
numbers from its side's stream (``api`` or ``put``, each seeded from `seed`),
so a seed gives the same sequence of decisions whatever the mix of traffic.
Latency is drawn uniformly from [0.5 S, 1.5 S]. TEXT may not contain a comma.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

_Kind = Literal[
    "int", "prob", "seconds", "seconds_or_none", "rate_or_none", "signed", "text_or_none"
]

# name in the grammar -> (field name, kind); the order here is the order of `str()`.
_ITEMS: dict[str, tuple[str, _Kind]] = {
    "seed": ("seed", "int"),
    "api.429": ("api_429", "prob"),
    "api.retry_after": ("api_retry_after", "seconds_or_none"),
    "api.500": ("api_500", "prob"),
    "api.503": ("api_503", "prob"),
    "api.latency": ("api_latency", "seconds"),
    "api.stall": ("api_stall", "prob"),
    "api.rate": ("api_rate", "rate_or_none"),
    "api.route": ("api_route", "text_or_none"),
    "put.429": ("put_429", "prob"),
    "put.500": ("put_500", "prob"),
    "put.503": ("put_503", "prob"),
    "put.retry_after": ("put_retry_after", "seconds_or_none"),
    "put.latency": ("put_latency", "seconds"),
    "put.reset": ("put_reset", "prob"),
    "put.stall": ("put_stall", "prob"),
    "skew": ("skew", "signed"),
    "lifetime": ("lifetime", "seconds_or_none"),
}


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """A named, seeded set of faults; the default instance injects nothing."""

    seed: int = 0
    api_429: float = 0.0
    api_retry_after: float | None = 1.0
    api_500: float = 0.0
    api_503: float = 0.0
    api_latency: float = 0.0
    api_stall: float = 0.0
    api_rate: float | None = None
    api_route: str | None = None
    put_429: float = 0.0
    put_500: float = 0.0
    put_503: float = 0.0
    put_retry_after: float | None = None
    put_latency: float = 0.0
    put_reset: float = 0.0
    put_stall: float = 0.0
    skew: float = 0.0
    lifetime: float | None = None

    def __post_init__(self) -> None:
        for name, (field, kind) in _ITEMS.items():
            _check(name, kind, getattr(self, field))
        if self.api_429 + self.api_500 + self.api_503 > 1.0:
            raise ValueError("fault plan: api.429 + api.500 + api.503 must not exceed 1")
        if self.put_429 + self.put_500 + self.put_503 + self.put_reset > 1.0:
            raise ValueError(
                "fault plan: put.429 + put.500 + put.503 + put.reset must not exceed 1"
            )

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """Parse ``name=value,...``; raise ValueError naming the offending item."""
        text = text.strip()
        if text in ("", "none"):
            return cls()
        values: dict[str, object] = {}
        for raw in text.split(","):
            item = raw.strip()
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name:
                raise ValueError(f"fault plan item {item!r}: expected name=value")
            if name not in _ITEMS:
                known = ", ".join(_ITEMS)
                raise ValueError(f"fault plan item {item!r}: unknown name (known: {known})")
            field, kind = _ITEMS[name]
            if field in values:
                raise ValueError(f"fault plan item {item!r}: {name} given twice")
            values[field] = _convert(item, kind, value)
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"fault plan {text!r}: {exc}") from None

    def __str__(self) -> str:
        default = FaultPlan()
        parts = [f"seed={self.seed}"]
        for name, (field, _) in _ITEMS.items():
            value = getattr(self, field)
            if name != "seed" and value != getattr(default, field):
                parts.append(f"{name}={_format(value)}")
        return ",".join(parts)

    def replace(self, **changes: float | int | str | None) -> FaultPlan:
        """A copy with some fields changed (validated like any plan)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _convert(item: str, kind: _Kind, value: str) -> object:
    if kind in ("seconds_or_none", "rate_or_none", "text_or_none") and value.lower() == "none":
        return None
    if kind == "text_or_none":
        return value
    try:
        return int(value) if kind == "int" else float(value)
    except ValueError:
        raise ValueError(f"fault plan item {item!r}: {value!r} is not a number") from None


def _check(name: str, kind: _Kind, value: object) -> None:
    if value is None and kind in ("seconds_or_none", "rate_or_none", "text_or_none"):
        return
    if kind == "text_or_none":
        if not isinstance(value, str) or not value or "," in value:
            raise ValueError(f"{name} must be non-empty text without commas")
        return
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer")
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    if kind == "prob" and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value} must be a probability in [0, 1]")
    if kind in ("seconds", "seconds_or_none") and value < 0:
        raise ValueError(f"{name}={value} must be seconds >= 0")
    if kind == "rate_or_none" and value <= 0:
        raise ValueError(f"{name}={value} must be requests/s > 0")


def _format(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; time is passed in."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._last = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if granted, else the seconds until one is available."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do to one request. At most one of `stall`, `reset`, `status` is set."""

    delay: float = 0.0
    stall: bool = False
    reset: bool = False
    status: int | None = None


class FaultInjector:
    """Draws decisions for requests from a plan; owns the random streams and the bucket."""

    __slots__ = ("_api_rng", "_bucket", "_monotonic", "_put_rng", "plan")

    def __init__(self, plan: FaultPlan, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.plan = plan
        self._monotonic = monotonic
        self._api_rng = random.Random(f"{plan.seed}:api")
        self._put_rng = random.Random(f"{plan.seed}:put")
        self._bucket = (
            TokenBucket(plan.api_rate, plan.api_rate, monotonic())
            if plan.api_rate is not None
            else None
        )

    def throttle_api(self) -> float | None:
        """None if the API rate limit lets this request through, else seconds to wait."""
        if self._bucket is None:
            return None
        wait = self._bucket.take(self._monotonic())
        return wait if wait > 0.0 else None

    def decide_api(self, path: str | None = None) -> Decision:
        """The injected fate of one API request (to `path`, for ``api.route``)."""
        p = self.plan
        decision = _decide(
            self._api_rng,
            p.api_latency,
            p.api_stall,
            ((429, p.api_429), (500, p.api_500), (503, p.api_503)),
            0.0,
        )
        if p.api_route is not None and path is not None and p.api_route not in path:
            return Decision()
        return decision

    def decide_put(self) -> Decision:
        """The injected fate of one storage PUT."""
        p = self.plan
        return _decide(
            self._put_rng,
            p.put_latency,
            p.put_stall,
            ((429, p.put_429), (500, p.put_500), (503, p.put_503)),
            p.put_reset,
        )


def _decide(
    rng: random.Random,
    latency: float,
    stall: float,
    statuses: tuple[tuple[int, float], ...],
    reset: float,
) -> Decision:
    # Always three draws, so the stream stays aligned whatever the outcome.
    u_stall, u_outcome, u_delay = rng.random(), rng.random(), rng.random()
    delay = latency * (0.5 + u_delay) if latency > 0 else 0.0
    if u_stall < stall:
        return Decision(delay=delay, stall=True)
    edge = 0.0
    for status, chance in statuses:
        edge += chance
        if u_outcome < edge:
            return Decision(delay=delay, status=status)
    if u_outcome < edge + reset:
        return Decision(delay=delay, reset=True)
    return Decision(delay=delay)


def retry_after_header(seconds: float | None) -> str | None:
    """A Retry-After value (whole seconds, rounded up) or None for no header."""
    return None if seconds is None else str(math.ceil(seconds))
