"""Whole `ingest run --provider modelhunter` processes against `ingest sim` in its own process.

Each image is uploaded, then completed: the emulator's file record tells
which file ids were completed, with which bytes, so every test can check that
each image ended as exactly one completed file whose CDN url the journal and
the export carry, whatever faults, expiries and crashes happened on the way.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.images import make_dataset
from tests.integration.runkit import Provider, check_landed, manifest_for, wait_for
from tests.simproc import SimProcess, ingest_cmd, json_events, run_ingest, sha256_file, sim_process

MH = Provider("modelhunter", "MODELHUNTER_API_KEY", "river_test_0123456789abcdef0123456789ab")


def files(sim: SimProcess) -> dict[str, dict[str, Any]]:
    return {f["file_id"]: f for f in sim.get("/_sim/modelhunter/files")["files"]}


def check_completed(sim: SimProcess, paths: list[Path], rows: list[dict[str, Any]]) -> None:
    """Each image is exactly one completed file: the one the journal names, with its CDN url."""
    record = files(sim)
    objects = {obj["remote_id"]: obj["sha256"] for obj in sim.objects()}
    completed = Counter(objects[fid] for fid, f in record.items() if f["completed"])
    assert all(completed[sha256_file(p)] == 1 for p in paths), "an image completed twice or never"
    for row in rows:
        file = record[row["remote_id"]]
        assert file["completed"]
        assert (
            row["url"] == file["url"] == f"{sim.base_url}/cdn/files/{row['remote_id']}.{_ext(row)}"
        )


def _ext(row: dict[str, Any]) -> str:
    return {"png": "png", "jpg": "jpg", "webp": "webp"}[str(row["path"]).rsplit(".", 1)[1]]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("mh-data")
    return make_dataset(root / "images", 300, min_size=1024, max_size=512 * 1024, seed=21)


def test_run_lands_every_image_once_and_exports_cdn_urls(
    dataset: list[Path], tmp_path: Path
) -> None:
    manifest = manifest_for(dataset, tmp_path)
    journal = MH.journal(manifest)
    with sim_process() as sim:
        done = run_ingest(MH.run_args(manifest, sim, "--json"), env=MH.env())
        assert done.returncode == 0, done.stderr
        rows = check_landed(MH, sim, dataset, journal)
        check_completed(sim, dataset, rows)
        assert all(f["completes"] == 1 for f in files(sim).values())
        stats = sim.stats()
    assert stats["storage_with_authorization"] == 0
    assert stats["api_requests"]["POST /api/v1/files/{file_id}/complete"] == {"200": 300}
    document = MH.export_document(journal)
    assert [f["file_id"] for f in document["files"]] == [r["remote_id"] for r in rows]
    assert all(f["url"].startswith(sim.base_url + "/cdn/files/") for f in document["files"])
    summary = json_events(done.stdout)[-1]
    assert (summary["event"], summary["done"], summary["failed"]) == ("summary", 300, 0)


def test_faults_503_and_429_fail_nothing(dataset: list[Path], tmp_path: Path) -> None:
    paths = dataset[:150]
    manifest = manifest_for(paths, tmp_path)
    # 429s as a rate-limited API gives them (a token bucket, with Retry-After), plus
    # random 5xx on both API routes and 429/503/resets on storage. (Random API 429s
    # at a fixed rate would measure the pacer's patience, not the adapter.)
    plan = "seed=4,api.503=0.1,api.500=0.05,api.rate=100,put.503=0.1,put.429=0.05,put.reset=0.02"
    with sim_process("--faults", plan) as sim:
        done = run_ingest(
            MH.run_args(manifest, sim, "--json", "--max-attempts", "10"), env=MH.env()
        )
        assert done.returncode == 0, done.stderr
        rows = check_landed(MH, sim, paths, MH.journal(manifest))
        check_completed(sim, paths, rows)
        complete_answers = sim.stats()["api_requests"]["POST /api/v1/files/{file_id}/complete"]
    summary = json_events(done.stdout)[-1]
    assert summary["failed"] == 0
    assert summary["this_run"]["retries"] > 0
    assert summary["this_run"]["throttles"] > 0
    assert set(complete_answers) > {"200"}, "the complete route saw no faults"


def test_short_url_lifetime_is_survived_by_resigning(dataset: list[Path], tmp_path: Path) -> None:
    paths = dataset[:60]
    manifest = manifest_for(paths, tmp_path)
    config = tmp_path / "ingest.toml"
    # Few upload slots and a long lookahead: signed URLs wait longer than they live.
    config.write_text("[run]\nput_concurrency = 4\nlookahead = 16\napi_concurrency = 8\n")
    args = ("--lifetime", "3", "--faults", "seed=5,put.latency=0.5,put.503=0.05")
    with sim_process(*args) as sim:
        done = run_ingest(
            MH.run_args(manifest, sim, "--json", "--config", str(config)), env=MH.env()
        )
        assert done.returncode == 0, done.stderr
        rows = check_landed(MH, sim, paths, MH.journal(manifest))
        check_completed(sim, paths, rows)
    summary = json_events(done.stdout)[-1]
    assert summary["failed"] == 0
    assert summary["this_run"]["resigns"] > 0, summary


def _up_records(journal: Path) -> int:
    try:
        return journal.read_bytes().count(b'"s":"up"')
    except FileNotFoundError:
        return 0


def test_landed_but_not_completed_items_are_completed_on_resume_not_uploaded_again(
    dataset: list[Path], tmp_path: Path
) -> None:
    paths = dataset[:30]
    manifest = manifest_for(paths, tmp_path)
    journal = MH.journal(manifest)
    # Every complete is held unanswered: the PUTs land, the completes never come back.
    with sim_process("--faults", "api.route=/complete,api.stall=1") as sim:
        proc = subprocess.Popen(
            ingest_cmd(*MH.run_args(manifest, sim, "--quiet")),
            env=MH.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: len(sim.objects()) == 30, what="30 PUTs")
            wait_for(lambda: _up_records(journal) == 30, what="30 up records")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert not any(f["completed"] for f in files(sim).values())
        puts_before = sim.stats()["storage_puts"]
        sim.set_faults("")
        done = run_ingest(MH.run_args(manifest, sim, "--json"), env=MH.env())
        assert done.returncode == 0, done.stderr
        assert sim.stats()["storage_puts"] == puts_before, "a landed item was uploaded again"
        rows = check_landed(MH, sim, paths, journal)
        check_completed(sim, paths, rows)
    this_run = json_events(done.stdout)[-1]["this_run"]
    assert (this_run["done"], this_run["puts"], this_run["api_calls"]) == (30, 0, 30)


def test_too_large_files_and_bad_keys_are_actionable(dataset: list[Path], tmp_path: Path) -> None:
    paths = dataset[:40]
    manifest = manifest_for(paths, tmp_path)
    limit_mb = 0.1
    big = {f"item-{i:06d}" for i, p in enumerate(paths) if p.stat().st_size > limit_mb * 2**20}
    assert 0 < len(big) < 20  # fewer than the circuit breaker's streak
    # Over the local limit (max_size_mb): rejected before any call, naming the limit.
    config = tmp_path / "small.toml"
    config.write_text(f"[providers.modelhunter]\nmax_size_mb = {limit_mb}\n")
    with sim_process() as sim:
        local = run_ingest(
            MH.run_args(manifest, sim, "--plain", "--config", str(config)), env=MH.env()
        )
        assert local.returncode == 1, local.stderr
        assert len(sim.objects()) == len(paths) - len(big)
        assert sum(
            n for n in sim.stats()["api_requests"]["POST /api/v1/files/upload-url"].values()
        ) == len(paths) - len(big)
    assert "too large" in local.stderr.lower() or "limit" in local.stderr.lower(), local.stderr
    assert MH.status(MH.journal(manifest))["rejected"] == len(big)
    # Over the provider's limit only (422 FILE_TOO_LARGE): those items fail, the rest land.
    MH.journal(manifest).unlink()
    with sim_process("--modelhunter-max-mb", str(limit_mb * 2**20 / 1e6)) as sim:  # MB = 10^6
        remote = run_ingest(MH.run_args(manifest, sim, "--json"), env=MH.env())
        assert remote.returncode == 1, remote.stderr
        failed = [e for e in json_events(remote.stdout) if e["event"] == "item_failed"]
        assert {e["key"] for e in failed} == big
        assert {(e["action"], e["code"]) for e in failed} == {("fail_item", "FILE_TOO_LARGE")}
        assert "exceeds" in failed[0]["reason"]
        assert len(sim.objects()) == len(paths) - len(big)
    # A wrong key stops the run (exit 3) naming the code, without echoing the key.
    MH.journal(manifest).unlink()
    with sim_process("--key", MH.key) as sim:
        wrong = run_ingest(MH.run_args(manifest, sim, "--plain"), env=MH.env("river_test_wrong"))
        assert wrong.returncode == 3, wrong.stderr
        assert "AUTH_INVALID_TOKEN" in wrong.stderr
        assert "river_test_wrong" not in wrong.stderr + wrong.stdout
        assert sim.objects() == []
        missing = run_ingest(MH.run_args(manifest, sim, "--plain"), env=MH.env(""))
        assert missing.returncode == 2
        assert "MODELHUNTER_API_KEY" in missing.stderr


@pytest.mark.slow
def test_thousand_images(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "images", 1000, min_size=1024, max_size=64 * 1024, seed=23)
    manifest = manifest_for(paths, tmp_path)
    with sim_process() as sim:
        done = run_ingest(MH.run_args(manifest, sim, "--json"), env=MH.env())
        assert done.returncode == 0, done.stderr
        rows = check_landed(MH, sim, paths, MH.journal(manifest))
        check_completed(sim, paths, rows)
    assert json_events(done.stdout)[-1]["done"] == 1000
