"""A server that accepts a request and never answers: timeouts fire, the item is retried.

With `read_timeout_s = 4`, stalled API calls and stalled uploads (small
bodies and streamed ones) time out, are retried, and the run finishes with
every item landed once; nothing waits for the emulator's stall cap. The
timeout is well above what an answer that is not stalled takes on a loaded
machine: at 1 s, a run at load 12 counted 27 retries for 21 stalls (answers
slowed past the timeout), and the check that each stall costs exactly one
retry depended on the machine's speed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images import make_dataset, make_image, write_jsonl_manifest
from tests.simproc import sim_process
from tests.torture import config, finish, spec

NOVITA = spec("novita")


@pytest.mark.timeout(90)
def test_stalled_requests_time_out_and_are_retried(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "images", 60, min_size=512, max_size=32 * 1024, seed=81)
    for index in range(4):
        big = tmp_path / "images" / f"big-{index}.jpg"
        make_image(big, "jpeg", 900_000 + index * 10_007, seed=800 + index)
        paths.append(big)
    manifest = write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")
    settings = config(
        tmp_path / "ingest.toml", read_timeout_s=4.0, max_attempts=12, backoff_base_s=0.02
    )
    with sim_process("--faults", "seed=12,api.stall=0.1,put.stall=0.15") as sim:
        run = finish(NOVITA, sim, manifest, paths, "--config", str(settings))
    assert run.proc.returncode == 0, run.proc.stderr
    assert run.verdict is not None and run.verdict.lost == run.verdict.duplicates == 0
    assert run.summary["failed"] == 0
    stalls = run.stats["api_stalls"] + run.stats["storage_stalls"]
    assert run.stats["api_stalls"] > 0 and run.stats["storage_stalls"] > 0
    # Every stall cost exactly one timeout and one retry.
    assert run.summary["this_run"]["retries"] == stalls
    assert run.summary["this_run"]["elapsed_s"] < 60  # far from the 300 s stall cap
