"""Defects found by session 10's second reader (reader10): a fetched source rejected after
its body was opened lets go of that body at once, as a failed one does."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import ingest
from ingest.api.wiring import sim_settings
from ingest.remote import Fetcher
from tests.images import image_bytes
from tests.loopback import serving
from tests.results import journal_of


def test_a_fetched_source_over_the_limit_with_convert_lets_its_open_body_go_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With --convert a URL is fetched without the size limit (it might be converted) and a
    # PNG kept as it is is checked after (`Preparer._within_limit`): since it became a
    # rejection (`bad`, 6591b0f), its streamed body stayed open, its connection held, to
    # the run's end: 100 such URLs took every connection aiohttp pools, and the run hung.
    body = image_bytes("png", 6_000, seed=3)
    held: list[int] = []
    close = Fetcher.aclose

    async def aclose(self: Fetcher) -> None:
        held.append(len(self._bodies))  # every item has ended: none should still hold one
        await close(self)

    monkeypatch.setattr(Fetcher, "aclose", aclose)
    with serving(lambda request: (200, body)) as base:
        manifest = tmp_path / "m.jsonl"
        manifest.write_bytes(orjson.dumps({"path": f"{base}/big.png"}) + b"\n")
        result = ingest.upload_sync(
            manifest,
            provider="novita",
            sim=sim_settings(store_dir=tmp_path / "store"),
            convert=True,
            max_size_mb=0.001,  # 1,048 bytes
        )
    assert (result.done, result.failed, result.rejected) == (0, 0, 1)
    records = map(orjson.loads, journal_of(result).read_bytes().splitlines()[1:])
    [bad] = [r for r in records if r.get("s") == "bad"]
    assert "too large" in bad["e"]
    assert held == [0]
