"""`--max-mbps`: the byte budget of upload bodies (`ingest.bandwidth`), local and in a real run.

On a fake clock the bucket is exact: a 16 MiB body goes out a piece at a time
and its last piece is released (size - burst) / rate after the first, never
ahead of rate x t + burst. A real run against the in-process emulator keeps
the bytes it has finished within rate x elapsed + burst, and takes at least
(total - burst) / rate.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest

import ingest
from ingest import bandwidth
from ingest.bandwidth import PIECE, LocalBytes
from ingest.clock import FakeClock
from ingest.config import load_settings
from ingest.engine.outcomes import ItemDone, Observer
from ingest.errors import ConfigError
from tests.images import make_dataset, write_jsonl_manifest

MiB = 1 << 20


class Recording:
    """A byte budget that notes when each piece was let go (on the budget's clock)."""

    def __init__(self, budget: LocalBytes, clock: FakeClock) -> None:
        self.budget, self.clock = budget, clock
        self.released: list[tuple[float, int]] = []

    async def take(self, n: int) -> None:
        await self.budget.take(n)
        self.released.append((self.clock.now(), n))


async def _send(body: bytes | AsyncGenerator[bytes, None]) -> int:
    """Read a body as a transport would; returns its length."""
    if isinstance(body, bytes):
        return len(body)
    return sum([len(chunk) async for chunk in body])


def _assert_within(released: list[tuple[float, int]], rate: float, burst: int) -> None:
    """Every window that starts at a release holds at most rate x W + burst bytes."""
    for i, (start, _) in enumerate(released):
        taken = 0
        for at, n in released[i:]:
            taken += n
            assert taken <= rate * (at - start) + burst + 1e-6, (start, at, taken)


@pytest.mark.anyio
async def test_a_16_mib_body_goes_out_piece_by_piece_at_the_rate() -> None:
    clock = FakeClock(0.0)
    rate = 8e6  # --max-mbps 8
    budget = LocalBytes(rate, clock=clock)
    assert budget.burst == 800_000  # a tenth of a second of the rate
    seen = Recording(budget, clock)
    data = bytes(16 * MiB)

    async def body() -> bytes:
        return data

    with bandwidth.using(seen):
        paced = bandwidth.paced(body)
    assert await _send(await paced()) == len(data)
    assert len(seen.released) == 16 * MiB // PIECE
    first, last = seen.released[0][0], seen.released[-1][0]
    # The last piece may go once all but a burst has been paid for: exact on this clock.
    assert last - first == pytest.approx((len(data) - budget.burst) / rate, abs=1e-9)
    _assert_within(seen.released, rate, budget.burst)
    assert clock.longest_sleep <= PIECE / rate + 1e-9  # smooth: no wait longer than one piece


@pytest.mark.anyio
async def test_concurrent_bodies_share_one_budget_and_a_closed_one_closes_its_reader() -> None:
    clock = FakeClock(0.0)
    rate = 4e6
    seen = Recording(LocalBytes(rate, clock=clock), clock)
    closed: list[bool] = []

    async def chunks() -> AsyncGenerator[bytes, None]:
        try:
            for _ in range(8):
                yield bytes(PIECE)
        finally:
            closed.append(True)

    async def streamed() -> AsyncGenerator[bytes, None]:
        return chunks()

    with bandwidth.using(seen):
        paced = bandwidth.paced(streamed)
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(lambda: _send_made(paced))
    assert sum(n for _, n in seen.released) == 3 * 8 * PIECE
    _assert_within(sorted(seen.released), rate, seen.budget.burst)
    assert clock.now() == pytest.approx((3 * 8 * PIECE - seen.budget.burst) / rate, abs=1e-9)
    # A body the transport abandons after one chunk closes the reader under it.
    abandoned = await paced()
    assert not isinstance(abandoned, bytes)
    await abandoned.__anext__()
    await abandoned.aclose()
    assert len(closed) == 4


async def _send_made(paced: Callable[[], Awaitable[bandwidth.Body]]) -> None:
    await _send(await paced())


def test_no_budget_leaves_the_body_alone() -> None:
    async def body() -> bytes:
        return b"x"

    assert bandwidth.paced(body) is body
    assert bandwidth.local(0.0) is None


def test_a_bad_max_mbps_is_one_line(tmp_path: Path) -> None:
    for value, message in (("-1", "must not be negative"), ("nan", "must be a finite number")):
        config = tmp_path / "c.toml"
        config.write_text(f"[run]\nmax_mbps = {value}\n")
        with pytest.raises(ConfigError, match=message) as caught:
            load_settings(config)
        assert "run.max_mbps" in str(caught.value) and "\n" not in str(caught.value)


class Finished(Observer):
    def __init__(self) -> None:
        self.done: list[tuple[float, int]] = []

    def item_done(self, done: ItemDone) -> None:
        self.done.append((time.monotonic(), done.size))


def test_a_run_against_the_emulator_keeps_its_bytes_within_rate_plus_burst(
    tmp_path: Path,
) -> None:
    paths = make_dataset(tmp_path / "images", 24, min_size=24_000, max_size=40_000, seed=7)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    total = sum(p.stat().st_size for p in paths)
    rate, burst = 1e6, bandwidth.default_burst(1e6)  # --max-mbps 1
    seen = Finished()
    began = time.monotonic()
    result = ingest.upload_sync(
        manifest, provider="novita", sim=True, max_mbps=1.0, observer=seen, put_concurrency=8
    )
    took = time.monotonic() - began
    assert result.done == len(paths)
    finished = 0
    for at, size in sorted(seen.done):
        finished += size
        assert finished <= rate * (at - began) + burst, (at - began, finished)
    assert took >= (total - burst) / rate
