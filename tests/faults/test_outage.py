"""Provider outages: a short one is waited out; a long one trips the circuit breaker.

A storage outage shorter than `retry_window_s`, in the middle of a run,
fails nothing: the items it catches are retried through it with backoff and
the run ends with exit 0 (the count alone, 3 tries here, failed them within
a second and the breaker stopped the run). An outage where every call fails
for good is stopped by the circuit breaker (with the window at 0, so the
test is quick): the run stops within a bounded number of calls (the
breaker's streak, plus what was already in flight, times the attempts per
step) with exit code 3 and a message that names the cause and the way on;
only the items that were actually tried are recorded as failed (retry
class), the others have no record at all, and the same command finishes the
job once the provider is back.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.images import make_dataset, write_jsonl_manifest
from tests.simproc import ingest_cmd, run_ingest, sim_process
from tests.torture import api_calls, config, journal_records, spec, verify_run

NOVITA = spec("novita")
BREAKER, ATTEMPTS, API, PUT, LOOKAHEAD = 10, 3, 4, 4, 2


@pytest.mark.parametrize("plane", ["api", "storage"])
def test_outage_trips_the_circuit_breaker_then_resume(tmp_path: Path, plane: str) -> None:
    paths = make_dataset(tmp_path / "images", 200, min_size=512, max_size=8 * 1024, seed=101)
    manifest = write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")
    journal = NOVITA.journal(manifest)
    settings = config(
        tmp_path / "ingest.toml",
        circuit_breaker=BREAKER,
        max_attempts=ATTEMPTS,
        retry_window_s=0,  # the count alone: this is the breaker's test, not the window's
        backoff_base_s=0.01,
        api_concurrency=API,
        put_concurrency=PUT,
        lookahead=LOOKAHEAD,
    )
    outage = "api.503=1" if plane == "api" else "put.500=1"
    with sim_process("--faults", f"seed=16,{outage}") as sim:
        args = NOVITA.run_args(manifest, sim, "--plain", "--config", str(settings))
        stopped = run_ingest(args, env=NOVITA.env())
        stats = sim.stats()
        assert stopped.returncode == 3, stopped.stderr
        assert "Traceback" not in stopped.stderr
        assert "circuit breaker" in stopped.stderr
        assert f"{BREAKER} items in a row failed" in stopped.stderr
        assert "re-run the same command" in stopped.stderr.lower()
        # Bounded: the streak, plus the items already in flight, each tried ATTEMPTS times.
        in_flight = API if plane == "api" else PUT + LOOKAHEAD
        if plane == "api":
            assert api_calls(stats) <= (BREAKER + API) * ATTEMPTS
        else:
            assert sum(stats["storage_puts"].values()) <= (BREAKER + PUT) * ATTEMPTS
            assert api_calls(stats) <= BREAKER + PUT + LOOKAHEAD
        failed = [r for r in journal_records(journal) if r.get("s") == "fail"]
        assert BREAKER <= len(failed) <= BREAKER + in_flight
        assert all(r["a"] == "retry" for r in failed)  # retried by the next run, not given up
        assert not any(r.get("s") == "done" for r in journal_records(journal))
        sim.set_faults("")
        resumed = run_ingest(args, env=NOVITA.env())
        assert resumed.returncode == 0, resumed.stderr
        verdict = verify_run(NOVITA, sim, paths, journal)
    assert verdict.lost == verdict.duplicates == 0
    assert verdict.status["done"] == len(paths) and verdict.status["failed"] == 0


OUTAGE_S = 5.0  # as long as the outage lasts at least (it also waits for refusals to be seen)


def test_a_short_storage_outage_mid_run_fails_nothing(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "images", 150, min_size=512, max_size=4 * 1024, seed=102)
    manifest = write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")
    journal = NOVITA.journal(manifest)
    settings = config(
        tmp_path / "ingest.toml",
        max_attempts=ATTEMPTS,
        backoff_base_s=0.05,
        backoff_cap_s=0.5,  # retried every half second at most: the count is spent at once
        retry_window_s=30.0,
        put_concurrency=PUT,
        lookahead=LOOKAHEAD,
    )
    slow = "seed=17,put.latency=0.05"  # the run lasts seconds, so the outage lands mid-run
    with sim_process("--faults", slow) as sim:
        args = NOVITA.run_args(manifest, sim, "--json", "--config", str(settings))
        events = tmp_path / "events.jsonl"
        with events.open("w") as out:
            proc = subprocess.Popen(
                ingest_cmd(*args), env=NOVITA.env(), stdout=out, stderr=subprocess.PIPE, text=True
            )
            try:
                while events.read_text().count('"item_done"') < 10:  # progress seen
                    assert proc.poll() is None, "the run ended before the outage"
                    time.sleep(0.05)
                sim.set_faults(f"{slow},put.503=1")
                began = time.monotonic()
                # Every PUT slot refused more often than the count allows, and OUTAGE_S passed.
                while (
                    sim.stats()["storage_puts"].get("503", 0) < PUT * ATTEMPTS * 2
                    or time.monotonic() - began < OUTAGE_S
                ):
                    assert proc.poll() is None, "the run ended during the outage"
                    time.sleep(0.05)
                sim.set_faults(slow)
                _, stderr = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert proc.returncode == 0, stderr
        assert '"item_failed"' not in events.read_text()
        verdict = verify_run(NOVITA, sim, paths, journal)
    assert verdict.lost == verdict.duplicates == 0
    assert verdict.status["done"] == len(paths) and verdict.status["failed"] == 0
