"""The engine's settings: the `[run]` section plus what one invocation asks for.

Owns nothing but the derivation. Every tunable a user can set lives in
`RunSettings` (with its default and help line in `config.py`); this holds it
whole, adds the two per-call flags (`--retry-failed`, `--reupload-changed`)
and two internal sizes no user sets, and derives what the engine reads
(`retry`, `lookahead ≥ 1`, `api_rate` as `None` for unlimited) in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.config import RunSettings
from ingest.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class EngineSettings:
    run: RunSettings = field(default_factory=RunSettings)
    retry_failed: bool = False  # re-queue items a provider rejected in an earlier run
    reupload_changed: bool = False  # upload again items whose file changed since upload
    read_batch: int = 128  # manifest entries triaged per reader-thread hop
    read_ahead_bytes: int = 16 << 20  # small files read while validated (0: at upload)
    retry: RetryPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        run = self.run
        policy = RetryPolicy(
            max_attempts=run.max_attempts,
            window_s=run.retry_window_s,
            base_s=run.backoff_base_s,
            cap_s=run.backoff_cap_s,
            max_resigns=run.max_resigns,
            max_wait_s=run.max_pause_s,
        )
        object.__setattr__(self, "retry", policy)

    @property
    def api_concurrency(self) -> int:
        return self.run.api_concurrency

    @property
    def put_concurrency(self) -> int:
        return self.run.put_concurrency

    @property
    def lookahead(self) -> int:
        return max(1, self.run.lookahead)

    @property
    def api_rate(self) -> float | None:
        return self.run.api_rate or None  # 0: unlimited until the provider throttles

    @property
    def resign_margin_s(self) -> float:
        return self.run.resign_margin_s

    @property
    def circuit_breaker(self) -> int:
        return self.run.circuit_breaker

    @property
    def max_pause_s(self) -> float:
        return self.run.max_pause_s
