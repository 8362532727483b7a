"""A provider's cap on items sharing one file name, counted as items stream past.

Owns `NameLimit` (Autoenhance: 30 creates of one file name an hour; the source
of that limit is in docs/fidelity/autoenhance.md) and `clock_time`, the words
of the moment a held-back item can go. `validate.Checker` asks it after an
item's local checks pass.

Invariants: a held item is not failed, it is rejected with the `HELD` reason,
so every run checks it again; memory grows with the distinct names only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.reasons import HELD

# The unix times of the creates of one file name known before this run, oldest first
# (an adapter's `providers.base.NamesUsed`: Autoenhance's order as its API lists it).
EarlierUses = Callable[[str], Sequence[float]]


class NameLimit:
    """A provider's cap on items sharing one file name (Autoenhance: 30 an hour).

    Counts display names as items stream past, on top of the creates of each
    name an earlier run made within the window (`earlier`, when the provider can
    list them); an item over the cap is *held back*, with the time it can go
    when `now` (unix time) is given: when enough of those creates age out of the
    window (this run's own are taken as made now). A held item is not failed: a
    re-run after that time sends it. Memory grows with the number of distinct
    names, so it is only used for providers that declare the cap.
    """

    def __init__(
        self,
        limit: int,
        provider: str | None,
        *,
        window_s: float = 3600.0,
        earlier: EarlierUses | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.limit = limit
        self.provider = provider or "the provider"
        self._window_s = window_s
        self._earlier = earlier
        self._now = now
        self._passed: dict[str, int] = {}  # items of each name passed by this run
        self._held: dict[str, int] = {}  # and held back

    def check(self, item: Item) -> ManifestError | None:
        name = item.display_name
        passed = self._passed.get(name, 0)
        now = self._now() if self._now is not None else None
        earlier: list[float] = []
        if self._earlier is not None and now is not None:
            earlier = sorted(t for t in self._earlier(name) if t > now - self._window_s)
        if passed + len(earlier) < self.limit:
            self._passed[name] = passed + 1
            return None
        held = self._held.get(name, 0)
        self._held[name] = held + 1
        hour = "an hour" if self._window_s == 3600 else f"in {self._window_s:g} s"
        rule = f"{self.provider} accepts at most {self.limit} images of one file name {hour}"
        if now is None:  # validate: no run yet, so no time
            when = f"a run holds it back until {hour} after the first {self.limit} are uploaded"
        else:
            # The window's creates of this name, oldest first (this run's taken as made
            # now): this item, the held one after `held` others, can go once the k-th ages
            # out (a lower bound when k is past them: those held before it go first).
            times = earlier + [now] * passed
            k = len(times) + held + 1 - self.limit
            at = clock_time(times[min(k, len(times)) - 1] + self._window_s)
            whose = "counting earlier runs' creates this hour" if earlier else "by this run"
            when = (
                f"{self.limit} are uploaded or on their way, {whose}: it can go"
                f" {'after' if k <= len(times) else 'not before'} {at};"
                " run the same command again then"
            )
        return ManifestError(
            f"{HELD}: file name {name!r} is used by more than {self.limit} items; {rule} ({when})",
            source=str(item.path),
            line=item.line,
        )


def clock_time(unix: float) -> str:
    """`unix` as this machine's wall clock says it, to the minute ("14:05", or with the date
    when it is not today's), rounded up: an item that can go at 14:05:40 is told "after
    14:06", so a re-run at any moment after the time given finds it free."""
    moment = time.localtime(-(-unix // 60) * 60)
    today = time.strftime("%Y-%m-%d") == time.strftime("%Y-%m-%d", moment)
    return time.strftime("%H:%M" if today else "%Y-%m-%d %H:%M", moment)
