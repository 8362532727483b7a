"""5xx from the API and from storage: steady mixes and bursts where everything fails.

Every 5xx is retried (with backoff) and nothing fails, lands twice or gets
lost; a burst where every call fails for a while is ridden out without
tripping the circuit breaker.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.images import make_dataset, write_jsonl_manifest
from tests.simproc import json_events, sim_process
from tests.torture import config, finish, popen_ingest, spec, summary_of, verify_run

NOVITA = spec("novita")


def five_hundreds(stats: dict[str, object]) -> int:
    api = stats["api_requests"]
    puts = stats["storage_puts"]
    assert isinstance(api, dict) and isinstance(puts, dict)
    total: int = sum(
        n for by in api.values() for code, n in by.items() if code.startswith("5")
    ) + sum(n for code, n in puts.items() if code.startswith("5"))
    return total


def test_steady_5xx_from_api_and_storage_fail_nothing(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "images", 150, min_size=512, max_size=400 * 1024, seed=61)
    manifest = write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")
    plan = "seed=7,api.500=0.15,api.503=0.15,put.500=0.15,put.503=0.15"
    settings = config(tmp_path / "ingest.toml", max_attempts=12, backoff_base_s=0.02)
    with sim_process("--faults", plan) as sim:
        run = finish(NOVITA, sim, manifest, paths, "--config", str(settings))
    assert run.proc.returncode == 0, run.proc.stderr
    assert run.verdict is not None and run.verdict.lost == run.verdict.duplicates == 0
    assert run.summary["failed"] == 0
    errors = five_hundreds(run.stats)
    assert errors > 50
    # Each 5xx answer was retried exactly once: no error swallowed, none retried twice.
    assert run.summary["this_run"]["retries"] == errors


def test_burst_where_every_call_fails_is_ridden_out(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "images", 100, min_size=512, max_size=16 * 1024, seed=62)
    manifest = write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")
    settings = config(tmp_path / "ingest.toml", put_concurrency=8, backoff_base_s=0.1)
    with sim_process("--faults", "seed=8,put.latency=0.05") as sim:
        proc = popen_ingest(
            NOVITA.run_args(manifest, sim, "--json", "--config", str(settings)),
            env=NOVITA.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            while sim.stats()["objects"] < 20:  # mid-run, then the provider breaks down
                assert proc.poll() is None
                time.sleep(0.01)
            sim.set_faults("seed=8,api.500=0.5,api.503=0.5,put.500=0.5,put.503=0.5")
            while five_hundreds(sim.stats()) < 60:
                assert proc.poll() is None
                time.sleep(0.01)
            sim.set_faults("seed=8,put.latency=0.05")
        finally:
            out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        verdict = verify_run(NOVITA, sim, paths, NOVITA.journal(manifest))
    summary = summary_of(json_events(out))
    assert verdict.lost == verdict.duplicates == 0
    assert summary["failed"] == 0 and summary["stop_reason"] is None
    assert summary["this_run"]["retries"] >= 60
