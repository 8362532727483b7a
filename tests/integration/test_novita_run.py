"""Whole `ingest run` processes against `ingest sim` in its own process (Novita).

These are the foundation's acceptance checks: a 1,000-image run lands every
object byte-identical and once; short URL lifetimes are survived by re-signing;
SIGKILL at random moments loses nothing; 503/429 storms fail nothing; bad lines
are named while the good items still land; a bad or missing key stops early.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.images import make_dataset, write_jsonl_manifest
from tests.simproc import (
    SimProcess,
    ingest_env,
    json_events,
    run_ingest,
    sha256_file,
    sim_process,
)

KEY = "sk-test-novita-0123456789"


def novita_env() -> dict[str, str]:
    return ingest_env(NOVITA_API_KEY=KEY)


def run_args(manifest: Path, sim: SimProcess, *extra: str) -> list[str]:
    return ["run", str(manifest), "--provider", "novita", "--base-url", sim.base_url, *extra]


def export(journal: Path) -> dict[str, str]:
    done = run_ingest(["export", str(journal)], env=novita_env())
    assert done.returncode == 0, done.stderr
    return {row["key"]: row["remote_id"] for row in map(json.loads, done.stdout.splitlines())}


def status(journal: Path) -> dict[str, Any]:
    done = run_ingest(["status", str(journal), "--json"], env=novita_env())
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def check_landed(
    sim: SimProcess, paths: list[Path], journal: Path, *, max_duplicates: int = 0
) -> list[dict[str, Any]]:
    """Every file landed byte-identical; journal, export and emulator agree."""
    objects = sim.objects()
    by_sha: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_sha.setdefault(obj["sha256"], []).append(obj)
    exported = export(journal)
    duplicates = 0
    for index, path in enumerate(paths):
        digest = sha256_file(path)
        landed = by_sha.get(digest, [])
        assert landed, f"{path.name} never landed"
        assert all(obj["size"] == path.stat().st_size for obj in landed)
        duplicates += len(landed) - 1
        # The journal's remote id is one of the objects holding exactly these bytes.
        assert exported[f"item-{index:06d}"] in {str(obj["remote_id"]) for obj in landed}
    assert duplicates <= max_duplicates, f"{duplicates} duplicate uploads"
    assert all(obj["puts"] == 1 for obj in objects)
    info = status(journal)
    assert info["done"] == len(paths) == info["total"]
    assert info["failed"] == info["rejected"] == info["in_flight"] == 0
    assert info["complete"]
    return objects


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("data")
    return make_dataset(root / "images", 1000, min_size=1024, max_size=2 * 1024 * 1024, seed=11)


def manifest_for(paths: list[Path], where: Path) -> Path:
    return write_jsonl_manifest(paths, where / "manifest.jsonl", ids=True)


@pytest.mark.slow
def test_thousand_images_land_byte_identical_once(dataset: list[Path], tmp_path: Path) -> None:
    manifest = manifest_for(dataset, tmp_path)
    with sim_process() as sim:
        done = run_ingest(run_args(manifest, sim, "--json"), env=novita_env())
        assert done.returncode == 0, done.stderr
        objects = check_landed(sim, dataset, tmp_path / "manifest.jsonl.novita.journal")
        assert len(objects) == 1000
        stats = sim.stats()
        # A second run of the same command (same endpoint: the journal is bound to it)
        # has nothing left to do.
        again = run_ingest(run_args(manifest, sim, "--json"), env=novita_env())
        assert again.returncode == 0, again.stderr
        assert sim.objects() == objects
    summary = json_events(done.stdout)[-1]
    assert summary["event"] == "summary" and summary["done"] == 1000
    assert stats["storage_auth_headers"] == 0 if "storage_auth_headers" in stats else True
    assert json_events(again.stdout)[-1]["this_run"]["skipped"] == 1000


def test_short_url_lifetime_is_survived_by_resigning(dataset: list[Path], tmp_path: Path) -> None:
    paths = dataset[:60]
    manifest = manifest_for(paths, tmp_path)
    config = tmp_path / "ingest.toml"
    # Few upload slots and a long lookahead: signed URLs wait longer than they live.
    config.write_text("[run]\nput_concurrency = 4\nlookahead = 16\napi_concurrency = 8\n")
    with sim_process("--lifetime", "3", "--faults", "seed=5,put.latency=0.6,put.503=0.05") as sim:
        done = run_ingest(
            run_args(manifest, sim, "--json", "--config", str(config)), env=novita_env()
        )
        assert done.returncode == 0, done.stderr
        check_landed(sim, paths, tmp_path / "manifest.jsonl.novita.journal")
        expired_rejections = sim.stats()
    summary = json_events(done.stdout)[-1]
    assert summary["failed"] == 0
    assert summary["this_run"]["resigns"] > 0, summary
    assert "resign" in json.dumps(summary)
    assert expired_rejections is not None


@pytest.mark.parametrize(
    ("count", "retry_after"),
    [
        (300, "none"),
        # Every 429 with Retry-After pauses the whole control plane (1 s at least):
        # fewer items keep the test short.
        (40, "1"),
    ],
)
def test_faults_503_and_429_fail_nothing(
    dataset: list[Path], tmp_path: Path, count: int, retry_after: str
) -> None:
    paths = dataset[:count]
    manifest = manifest_for(paths, tmp_path)
    plan = (
        f"seed=9,api.429=0.1,api.retry_after={retry_after},api.503=0.1,"
        "put.503=0.1,put.429=0.05,put.reset=0.02"
    )
    with sim_process("--faults", plan) as sim:
        done = run_ingest(
            run_args(manifest, sim, "--json", "--max-attempts", "10"), env=novita_env()
        )
        assert done.returncode == 0, done.stderr
        check_landed(sim, paths, tmp_path / "manifest.jsonl.novita.journal")
    summary = json_events(done.stdout)[-1]
    assert summary["failed"] == 0
    assert summary["this_run"]["retries"] > 0


def test_bad_lines_are_named_and_good_items_land(dataset: list[Path], tmp_path: Path) -> None:
    good = dataset[:10]
    (tmp_path / "notes.png").write_text("this is text, not an image\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    lines = [json.dumps({"id": f"item-{i:06d}", "path": str(p)}) for i, p in enumerate(good[:5])]
    lines.append(json.dumps({"id": "missing", "path": str(tmp_path / "nope.png")}))  # line 6
    lines.append("{not json")  # line 7
    lines.append(json.dumps({"id": "text", "path": str(tmp_path / "notes.png")}))  # line 8
    lines.append(json.dumps({"id": "empty", "path": str(tmp_path / "empty.jpg")}))  # line 9
    lines += [
        json.dumps({"id": f"item-{i:06d}", "path": str(p)}) for i, p in enumerate(good[5:], start=5)
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    with sim_process() as sim:
        done = run_ingest(run_args(manifest, sim, "--plain"), env=novita_env())
        assert done.returncode == 1, done.stderr
        landed = Counter(obj["sha256"] for obj in sim.objects())
    assert all(landed[sha256_file(p)] == 1 for p in good)
    assert sum(landed.values()) == len(good)
    for line, word in ((6, "not found"), (7, "JSON"), (8, "not an image"), (9, "empty")):
        matching = [text for text in done.stderr.splitlines() if f"line {line}" in text]
        assert matching, f"line {line} not reported:\n{done.stderr}"
        assert word.lower() in matching[0].lower(), matching[0]
    info = status(tmp_path / "manifest.jsonl.novita.journal")
    assert info["done"] == 10 and info["rejected"] == 4


def test_bad_key_stops_before_uploading_and_missing_key_is_named(
    tmp_path: Path, dataset: list[Path]
) -> None:
    manifest = manifest_for(dataset[:20], tmp_path)
    with sim_process("--key", KEY) as sim:
        wrong = run_ingest(
            run_args(manifest, sim, "--plain"), env=ingest_env(NOVITA_API_KEY="sk-wrong-key-000")
        )
        assert wrong.returncode == 3, wrong.stderr
        assert "INVALID_API_KEY" in wrong.stderr
        assert "sk-wrong-key-000" not in wrong.stderr + wrong.stdout
        assert sim.objects() == []
        missing = run_ingest(run_args(manifest, sim, "--plain"), env=ingest_env())
        assert missing.returncode == 2
        assert "NOVITA_API_KEY" in missing.stderr
        # The stopped run left a journal that the right key resumes to completion.
        ok = run_ingest(run_args(manifest, sim, "--plain"), env=novita_env())
        assert ok.returncode == 0, ok.stderr
        assert len(sim.objects()) == 20
