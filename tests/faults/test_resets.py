"""Connections reset in the middle of an upload's body.

A PUT cut mid-body never lands (storage records only complete bodies), is
retried, and the retry lands the exact bytes once: small bodies sent whole
and large ones streamed alike.
"""

from __future__ import annotations

from pathlib import Path

from tests.images import make_dataset, make_image, write_jsonl_manifest
from tests.simproc import sim_process
from tests.torture import config, finish, spec

NOVITA = spec("novita")


def test_resets_mid_body_are_retried_and_land_once(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "images", 80, min_size=512, max_size=64 * 1024, seed=71)
    for index in range(6):  # streamed in chunks, so the cut lands inside the body
        big = tmp_path / "images" / f"big-{index}.png"
        make_image(big, "png", 1_500_000 + index * 70_001, seed=700 + index)
        paths.append(big)
    manifest = write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")
    settings = config(tmp_path / "ingest.toml", max_attempts=12, backoff_base_s=0.02)
    with sim_process("--faults", "seed=11,put.reset=0.3") as sim:
        run = finish(NOVITA, sim, manifest, paths, "--config", str(settings))
    assert run.proc.returncode == 0, run.proc.stderr
    assert run.verdict is not None and run.verdict.lost == run.verdict.duplicates == 0
    assert run.summary["failed"] == 0
    resets = run.stats["resets"]
    assert resets >= 10
    assert run.stats["storage_puts"] == {"200": len(paths)}
    assert run.summary["this_run"]["retries"] == resets
    assert run.summary["this_run"]["puts"] == len(paths) + resets
