"""Autoenhance's same-name counts, shared by every worker on the account through Redis.

The emulator refuses a 31st create of one file name within its window with a
bare 429 (`body_429="generic"`) and a short Retry-After, so only the count
tells it from a rate limit. Two workers (of two runs on one key: the rule is
the account's) create 16 images named `same.png` each, one after the other:
the second worker made only 14 itself, yet it knows the 429s of its last two
are the name rule (failed `same_name_limit` at once, nothing paused), because
the first worker's 16 are in the shared count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.coord.connection import connect
from ingest.coord.names import RunKeys
from ingest.coord.record import Record
from ingest.coord.worker import run_worker
from ingest.sim import SimSettings
from ingest.sim.server import serve
from ingest.sim.settings import AutoenhanceSimSettings
from tests.images import make_dataset

pytestmark = pytest.mark.anyio
KEY, EACH = "k-names", 16


def _named_manifest(root: Path, prefix: str) -> Path:
    paths = make_dataset(root / prefix, EACH, max_size=2048, seed=len(prefix))
    manifest = root / f"{prefix}.jsonl"
    rows = [{"id": f"{prefix}{i}", "path": str(p), "name": "same.png"} for i, p in enumerate(paths)]
    manifest.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return manifest


async def test_a_worker_counts_the_names_every_worker_created(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOENHANCE_API_KEY", KEY)
    sim_settings = SimSettings(
        api_keys=frozenset({KEY}),
        autoenhance=AutoenhanceSimSettings(same_name_window_s=20.0, body_429="generic"),
    )
    async with serve(sim_settings) as sim:
        # One create at a time: a count is a lower bound, short of the creates still in flight.
        where: dict[str, Any] = {"base_url": sim.base_url, "coordinator": redis_url,
                                 "api_concurrency": 1, "max_attempts": 1, "retry_window_s": 0,
                                 "max_pause_s": 0.2}  # fmt: skip
        first = await run_worker(
            _named_manifest(tmp_path, "a"), provider="autoenhance", run_name="a", **where
        )
        assert (first.counts.done, first.this_worker.api_calls) == (EACH, EACH)
        second = await run_worker(
            _named_manifest(tmp_path, "b"), provider="autoenhance", run_name="b", **where
        )
        assert (second.counts.done, second.counts.failed) == (30 - EACH, 2 * EACH - 30)
        assert second.this_worker.throttles == 0  # told from a rate limit: nothing paused
        async with connect(redis_url) as conn:
            failed = await Record(conn, RunKeys("b")).records("failed")
        assert [r["code"] for r in failed] == ["same_name_limit"] * (2 * EACH - 30)
