"""Test kit: wait for state another task sets (a watch, the shipper), never a fixed delay."""

from __future__ import annotations

from collections.abc import Callable

import anyio


async def until(condition: Callable[[], bool]) -> None:
    """Return once `condition()` holds (looked at every millisecond); fail after 5 s."""
    with anyio.fail_after(5):
        while not condition():  # noqa: ASYNC110 (state another task sets: no event to await)
            await anyio.sleep(0.001)
