"""Whole `ingest run --provider autoenhance` processes against `ingest sim` in its own process.

Besides landing every image byte-identical and once, a run must keep every
image in one order: the order id bound in the journal header on the first
run, kept by every resume, and listed by the emulator's own
``GET /v3/orders/{id}``, one image per file: a re-sign makes a new image
(Autoenhance cannot re-issue a URL) and deletes the one it replaces.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.images import make_dataset
from tests.integration.runkit import Provider, check_landed, manifest_for
from tests.simproc import SimProcess, json_events, run_ingest, sim_process

AE = Provider("autoenhance", "AUTOENHANCE_API_KEY", "ae-test-0123456789abcdef")


def order(sim: SimProcess, order_id: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{sim.base_url}/v3/orders/{order_id}", headers={"x-api-key": AE.key}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def check_order(sim: SimProcess, journal: Path, rows: list[dict[str, Any]]) -> str:
    """Every done image is in the journal's one order, uploaded; returns the order id."""
    header = json.loads(journal.read_text().splitlines()[0])
    order_id = header["bind"]["order_id"]
    assert {row["order_id"] for row in rows} == {order_id}
    listed = {image["image_id"]: image for image in order(sim, order_id)["images"]}
    for row in rows:
        assert listed[row["remote_id"]]["status"] == "processing"
    assert AE.export_document(journal) == {
        "order_id": order_id,
        "image_ids": [row["remote_id"] for row in rows],
    }
    return str(order_id)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("ae-data")
    return make_dataset(root / "images", 300, min_size=1024, max_size=512 * 1024, seed=31)


def test_run_lands_every_image_once_in_one_order(dataset: list[Path], tmp_path: Path) -> None:
    manifest = manifest_for(dataset, tmp_path)
    journal = AE.journal(manifest)
    with sim_process() as sim:
        done = run_ingest(AE.run_args(manifest, sim, "--json"), env=AE.env())
        assert done.returncode == 0, done.stderr
        rows = check_landed(AE, sim, dataset, journal)
        order_id = check_order(sim, journal, rows)
        assert order(sim, order_id)["total_images"] == 300
        stats = sim.stats()
    assert stats["storage_with_authorization"] == stats["storage_with_api_key"] == 0
    summary = json_events(done.stdout)[-1]
    assert (summary["done"], summary["failed"]) == (300, 0)


def test_faults_and_the_legacy_url_field_fail_nothing(dataset: list[Path], tmp_path: Path) -> None:
    paths = dataset[:150]
    manifest = manifest_for(paths, tmp_path)
    journal = AE.journal(manifest)
    # The emulator's own 300 requests/s limit, lowered, gives the 429s (with Retry-After).
    plan = "seed=6,api.503=0.1,api.500=0.05,put.503=0.1,put.429=0.05,put.reset=0.02"
    args = (
        "--faults",
        plan,
        "--autoenhance-rate",
        "100",
        "--autoenhance-url-field",
        "s3PutObjectUrl",
    )
    with sim_process(*args) as sim:
        done = run_ingest(
            AE.run_args(manifest, sim, "--json", "--max-attempts", "10", "--order-id", "o-faults"),
            env=AE.env(),
        )
        assert done.returncode == 0, done.stderr
        sim.set_faults("")  # the checks below read the order through the (faulted) API
        rows = check_landed(AE, sim, paths, journal)
        assert check_order(sim, journal, rows) == "o-faults"
    summary = json_events(done.stdout)[-1]
    assert summary["failed"] == 0
    assert summary["this_run"]["retries"] > 0
    assert summary["this_run"]["throttles"] > 0


def test_short_url_lifetime_is_survived_by_resigning(dataset: list[Path], tmp_path: Path) -> None:
    paths = dataset[:60]
    manifest = manifest_for(paths, tmp_path)
    journal = AE.journal(manifest)
    config = tmp_path / "ingest.toml"
    config.write_text("[run]\nput_concurrency = 4\nlookahead = 16\napi_concurrency = 8\n")
    args = ("--lifetime", "3", "--faults", "seed=5,put.latency=0.5,put.503=0.05")
    with sim_process(*args) as sim:
        done = run_ingest(
            AE.run_args(manifest, sim, "--json", "--config", str(config)), env=AE.env()
        )
        assert done.returncode == 0, done.stderr
        rows = check_landed(AE, sim, paths, journal)
        order_id = check_order(sim, journal, rows)
        listed = order(sim, order_id)
        stats = sim.stats()
    summary = json_events(done.stdout)[-1]
    assert summary["failed"] == 0
    resigns = summary["this_run"]["resigns"]
    assert resigns > 0, summary
    # Each re-sign created one more image and deleted the one it replaced.
    assert stats["api_requests"]["POST /v3/images/"] == {"200": len(paths) + resigns}
    assert stats["api_requests"]["DELETE /v3/images/{image_id}"] == {"204": resigns}
    assert listed["total_images"] == len(paths)


def test_same_file_name_rule_fails_only_the_items_over_it(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "images", 12, min_size=2048, max_size=8192, seed=33)
    lines = []
    for index, path in enumerate(paths):
        entry = {"id": f"item-{index:06d}", "path": str(path)}
        if index < 8:
            entry["name"] = "listing.jpg"  # eight items share one file name
        lines.append(json.dumps(entry))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    with sim_process("--autoenhance-name-limit", "5") as sim:
        done = run_ingest(AE.run_args(manifest, sim, "--json"), env=AE.env())
        assert done.returncode == 1, done.stderr
        assert len(sim.objects()) == 12 - 3
    failed = [e for e in json_events(done.stdout) if e["event"] == "item_failed"]
    assert len(failed) == 3
    assert {(e["action"], e["code"]) for e in failed} == {("fail_item", "same_name_limit")}
    assert "same file name" in failed[0]["reason"]
    info = AE.status(AE.journal(manifest))
    assert (info["done"], info["failed"]) == (9, 3)
    assert info["problems"] == {"fail_item/same_name_limit": 3}
    [summary] = [e for e in json_events(done.stdout) if e["event"] == "summary"]
    assert summary["this_run"]["retries"] == 0  # the name rule is never retried


def test_too_large_files_and_bad_keys_are_actionable(dataset: list[Path], tmp_path: Path) -> None:
    paths = dataset[:30]
    manifest = manifest_for(paths, tmp_path)
    limit_mb = 0.1
    big = sum(1 for p in paths if p.stat().st_size > limit_mb * 2**20)
    assert big > 0
    config = tmp_path / "small.toml"
    config.write_text(f"[providers.autoenhance]\nmax_size_mb = {limit_mb}\n")
    with sim_process() as sim:
        local = run_ingest(
            AE.run_args(manifest, sim, "--plain", "--config", str(config)), env=AE.env()
        )
        assert local.returncode == 1, local.stderr
        assert len(sim.objects()) == len(paths) - big
    assert "too large" in local.stderr
    assert AE.status(AE.journal(manifest))["rejected"] == big
    AE.journal(manifest).unlink()
    with sim_process("--key", AE.key) as sim:
        wrong = run_ingest(AE.run_args(manifest, sim, "--plain"), env=AE.env("ae-wrong-key-000"))
        assert wrong.returncode == 3, wrong.stderr
        assert "401 unauthorized" in wrong.stderr and "Invalid API key" in wrong.stderr
        assert "ae-wrong-key-000" not in wrong.stderr + wrong.stdout
        assert sim.objects() == []
        missing = run_ingest(AE.run_args(manifest, sim, "--plain"), env=AE.env(""))
        assert missing.returncode == 2
        assert "AUTOENHANCE_API_KEY" in missing.stderr


@pytest.mark.slow
def test_thousand_images(tmp_path: Path) -> None:
    paths = make_dataset(tmp_path / "images", 1000, min_size=1024, max_size=64 * 1024, seed=35)
    manifest = manifest_for(paths, tmp_path)
    journal = AE.journal(manifest)
    with sim_process() as sim:
        done = run_ingest(AE.run_args(manifest, sim, "--json"), env=AE.env())
        assert done.returncode == 0, done.stderr
        rows = check_landed(AE, sim, paths, journal)
        check_order(sim, journal, rows)
    assert json_events(done.stdout)[-1]["done"] == 1000
