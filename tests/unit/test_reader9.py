"""Faults the second reader of session 9 found in that session's changes, each proved here."""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path

from ingest.item import Item
from ingest.validate import NameLimit


def _item(n: int) -> Item:
    return Item(key=f"k{n}", path=Path(f"/d/{n}/img.png"), line=n)


def test_a_held_item_passes_at_any_moment_after_the_time_its_line_gives() -> None:
    # The one earlier create ages out at 40 s past a minute: a line saying "after HH:MM" of
    # that minute sends the user back while it is still held (for up to 59 s).
    minute = (int(time.time()) // 60) * 60
    created = minute - 3600 + 40
    held = NameLimit(1, "autoenhance", earlier=lambda name: [created], now=lambda: minute)
    refused = held.check(_item(1))
    assert refused is not None
    stated = re.search(r"it can go after ((?:\d{4}-\d\d-\d\d )?\d\d:\d\d)", refused.reason)
    assert stated is not None
    day = time.strftime("%Y-%m-%d ", time.localtime(minute))
    told = time.mktime(time.strptime(day + stated[1][-5:], "%Y-%m-%d %H:%M"))
    told += 86400 if told < minute else 0  # past midnight
    for after in (told + 1, told + 30, told + 59):
        again = NameLimit(
            1, "autoenhance", earlier=lambda name: [created], now=functools.partial(float, after)
        )
        assert again.check(_item(1)) is None, (stated, after - minute)
