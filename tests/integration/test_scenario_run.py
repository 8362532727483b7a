"""Whole `ingest run --provider scenario` processes against `ingest sim` in its own process.

Checks against the emulator's record (``/_sim/scenario/models``) that every
image is a training image of the model exactly once, byte-identical, in
assets mode (small files and multipart ones) and inline mode; through
503/429 storms; after SIGKILLs; after a kill between an attach and its
journal record; and that a bad key, a missing model id and the dataset
ceiling stop with a clear message.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.images import Kind, make_dataset, make_image, write_jsonl_manifest
from tests.simproc import (
    SimProcess,
    ingest_cmd,
    ingest_env,
    json_events,
    run_ingest,
    sha256_file,
    sim_process,
)

KEY, SECRET = "scn-key-0123456789", "scn-secret-abcdefghij"
MODEL = "model_integration0000001"
ATTACH_ROUTE = "POST /v1/models/{modelId}/training-images"


def env(**extra: str) -> dict[str, str]:
    return ingest_env(SCENARIO_API_KEY=KEY, SCENARIO_API_SECRET=SECRET, **extra)


def run_args(manifest: Path, sim: SimProcess, *extra: str) -> list[str]:
    return [
        "run",
        str(manifest),
        "--provider",
        "scenario",
        "--base-url",
        sim.base_url + "/v1",
        "--model-id",
        MODEL,
        *extra,
    ]


def scenario_sim(*extra: str) -> Any:
    return sim_process("--scenario-model", MODEL, *extra)


def training_images(sim: SimProcess) -> list[dict[str, Any]]:
    models = {m["id"]: m for m in sim.get("/_sim/scenario/models")["models"]}
    return list(models[MODEL]["training_images"])


def set_attach_fault(sim: SimProcess, mode: str, count: int = 1) -> None:
    body = json.dumps({"after_attach": mode, "count": count}).encode()
    req = urllib.request.Request(
        sim.base_url + "/_sim/scenario/attach-fault", data=body, method="PUT"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def status(journal: Path) -> dict[str, Any]:
    done = run_ingest(["status", str(journal), "--json"], env=env())
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def check_attached_once(sim: SimProcess, paths: list[Path], journal: Path) -> None:
    """Each file is one training image, with its exact bytes; journal and export agree."""
    images = training_images(sim)
    by_sha: dict[str, list[dict[str, Any]]] = {}
    for image in images:
        by_sha.setdefault(image["sha256"], []).append(image)
    digests = [sha256_file(p) for p in paths]
    for path, digest in zip(paths, digests, strict=True):
        attached = by_sha.get(digest, [])
        assert len(attached) == 1, f"{path.name} is attached {len(attached)} times"
        assert attached[0]["size"] == path.stat().st_size
    assert len(images) == len(paths)
    exported = run_ingest(["export", str(journal), "--format", "provider"], env=env())
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert document["model_id"] == MODEL
    ids = {image["id"]: image["sha256"] for image in images}
    rows = {row["key"]: row["asset_id"] for row in document["training_images"]}
    for index, digest in enumerate(digests):
        assert ids[rows[f"item-{index:06d}"]] == digest
    assets = [o for o in sim.objects() if o["key"].startswith("scenario-assets/")]
    assert all(o["puts"] == 1 for o in assets)
    info = status(journal)
    assert info["done"] == len(paths) == info["total"]
    assert info["failed"] == info["rejected"] == info["in_flight"] == 0
    assert info["complete"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """200 small images and two of 6 MB or more (multipart: 2 and 3 parts)."""
    root = tmp_path_factory.mktemp("scenario") / "images"
    paths = make_dataset(root, 200, min_size=512, max_size=96 * 1024, seed=23)
    big: tuple[tuple[str, Kind, int, int], ...] = (
        ("big-a.png", "png", 6_000_000, 71),
        ("big-b.jpg", "jpeg", 12_500_000, 72),
    )
    for name, kind, size, seed in big:
        make_image(root / name, kind, size, seed)
        paths.append(root / name)
    return paths


def manifest_for(paths: list[Path], where: Path) -> tuple[Path, Path]:
    manifest = write_jsonl_manifest(paths, where / "manifest.jsonl", ids=True)
    return manifest, where / "manifest.jsonl.scenario.journal"


def test_assets_mode_attaches_each_image_once(dataset: list[Path], tmp_path: Path) -> None:
    manifest, journal = manifest_for(dataset, tmp_path)
    flags = ["--scenario-batch-response", "list", "--scenario-entity-id", "upload"]
    flags += ["--scenario-pending-polls", "1"]
    with scenario_sim(*flags) as sim:
        done = run_ingest(run_args(manifest, sim, "--json"), env=env())
        assert done.returncode == 0, done.stderr
        check_attached_once(sim, dataset, journal)
        stats = sim.stats()
        images = training_images(sim)
        listed = sim.get("/_sim/scenario/models")
    assert sorted(i["source"] for i in images).count("multipart") == 2
    assert stats["api_requests"]["POST /v1/uploads"] == {"200": 2}
    # The 6 and 12.5 MB images went in parts: no JSON body came near the 6 MB cap.
    assert listed["json_too_long"] == 0 and listed["largest_json"] < 200_000
    # Each job was asked until it succeeded, naming no asset (--scenario-entity-id
    # upload); then each upload named it.
    assert stats["api_requests"]["GET /v1/jobs/{jobId}"] == {"200": 4}
    assert stats["api_requests"]["GET /v1/uploads/{uploadId}"] == {"200": 2}
    assert stats["storage_puts"] == {"200": 5}  # 2 + 3 parts
    assert stats["storage_with_authorization"] == 0
    summary = json_events(done.stdout)[-1]
    assert summary["event"] == "summary" and summary["done"] == len(dataset)


def test_inline_mode(dataset: list[Path], tmp_path: Path) -> None:
    paths = dataset[:40]
    manifest, journal = manifest_for(paths, tmp_path)
    with scenario_sim() as sim:
        done = run_ingest(run_args(manifest, sim, "--mode", "inline", "--plain"), env=env())
        assert done.returncode == 0, done.stderr
        check_attached_once(sim, paths, journal)
        stats = sim.stats()["api_requests"]
    assert "POST /v1/assets" not in stats
    assert stats[ATTACH_ROUTE] == {"200": 40}


def test_inline_mode_sends_large_files_in_parts(dataset: list[Path], tmp_path: Path) -> None:
    paths = [*dataset[:3], dataset[-2]]  # three small, one of 6 MB (two parts)
    manifest, journal = manifest_for(paths, tmp_path)
    with scenario_sim() as sim:
        done = run_ingest(run_args(manifest, sim, "--mode", "inline", "--plain"), env=env())
        assert done.returncode == 0, done.stderr
        check_attached_once(sim, paths, journal)
        images = training_images(sim)
        stats = sim.stats()["api_requests"]
    assert sorted(i["source"] for i in images).count("multipart") == 1
    assert stats["POST /v1/uploads"] == {"200": 1}
    assert stats[ATTACH_ROUTE] == {"200": 4}  # three inline posts, one attach of the upload


def test_faults_503_and_429_fail_nothing(dataset: list[Path], tmp_path: Path) -> None:
    paths = [*dataset[:60], *dataset[-2:]]
    manifest, journal = manifest_for(paths, tmp_path)
    plan = "seed=4,api.429=0.08,api.retry_after=0.2,api.503=0.1,put.503=0.2,put.429=0.05"
    with scenario_sim("--faults", plan) as sim:
        done = run_ingest(run_args(manifest, sim, "--json", "--max-attempts", "12"), env=env())
        assert done.returncode == 0, done.stderr
        check_attached_once(sim, paths, journal)
        stats = sim.stats()
    summary = json_events(done.stdout)[-1]
    assert summary["failed"] == 0
    assert summary["this_run"]["retries"] > 0
    assert stats["api_429"] > 0


def test_kill_between_attach_and_journal_then_resume(dataset: list[Path], tmp_path: Path) -> None:
    paths = dataset[:30]
    manifest, journal = manifest_for(paths, tmp_path)
    with scenario_sim() as sim:
        set_attach_fault(sim, "hold", 1)  # the next attach lands, its answer never comes
        proc = subprocess.Popen(
            ingest_cmd(*run_args(manifest, sim, "--quiet")),
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while sim.get("/_sim/scenario/models")["held_attaches"] < 1:
                assert proc.poll() is None, "the run ended before its attach was held"
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        held = len(training_images(sim))
        assert held >= 1
        done = run_ingest(run_args(manifest, sim, "--plain"), env=env())
        assert done.returncode == 0, done.stderr
        check_attached_once(sim, paths, journal)
        attaches = sim.stats()["api_requests"][ATTACH_ROUTE]
    # The resumed run re-sent the held attach and took "already attached" as done.
    assert attaches.get("400", 0) >= 1


def test_bad_key_stops_and_missing_model_id_is_named(dataset: list[Path], tmp_path: Path) -> None:
    manifest, _journal = manifest_for(dataset[:10], tmp_path)
    with scenario_sim("--key", f"{KEY}:{SECRET}") as sim:
        wrong = run_ingest(
            run_args(manifest, sim, "--plain"),
            env=ingest_env(SCENARIO_API_KEY=KEY, SCENARIO_API_SECRET="wrong-secret-0000"),
        )
        assert wrong.returncode == 3, wrong.stderr
        assert "401" in wrong.stderr
        assert "SCENARIO_API_KEY" in wrong.stderr and "SCENARIO_API_SECRET" in wrong.stderr
        assert "wrong-secret-0000" not in wrong.stderr + wrong.stdout
        assert sim.objects() == []
        args = run_args(manifest, sim, "--plain", "--journal", str(tmp_path / "other.journal"))
        missing = run_ingest([a for a in args if a not in ("--model-id", MODEL)], env=env())
        assert missing.returncode == 2, missing.stderr
        assert "providers.scenario.model_id" in missing.stderr
        assert "--model-id" in missing.stderr
        # The stopped run's journal resumes to completion with the right key.
        ok = run_ingest(run_args(manifest, sim, "--plain"), env=env())
        assert ok.returncode == 0, ok.stderr
        assert len(training_images(sim)) == 10


def test_dataset_ceiling_stops_with_a_clear_message(dataset: list[Path], tmp_path: Path) -> None:
    manifest, journal = manifest_for(dataset[:12], tmp_path)
    with scenario_sim("--scenario-image-limit", "5") as sim:
        done = run_ingest(run_args(manifest, sim, "--plain"), env=env())
        assert done.returncode == 3, done.stderr
        assert len(training_images(sim)) <= 5
    assert "add-training-image limit 5" in done.stderr
    assert "smaller batches cannot" in done.stderr
    info = status(journal)
    assert info["done"] <= 5 and not info["complete"]


@pytest.mark.slow
def test_thousand_images(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "images", 1000, min_size=1024, max_size=64 * 1024, seed=37)
    manifest, journal = manifest_for(paths, tmp_path)
    with scenario_sim() as sim:
        done = run_ingest(run_args(manifest, sim, "--quiet"), env=env())
        assert done.returncode == 0, done.stderr
        check_attached_once(sim, paths, journal)
