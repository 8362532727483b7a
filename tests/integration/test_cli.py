"""Each command's output and exit codes, run as a user would (child processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.cli.main import COMMANDS
from tests.images import make_dataset, write_jsonl_manifest
from tests.simproc import ingest_env, json_events, run_ingest, sim_process

KEY = "sk-cli-sentinel-987654321"


@pytest.fixture
def good_manifest(tmp_path: Path) -> Path:
    paths = make_dataset(tmp_path / "img", 12, max_size=64 * 1024, seed=4)
    return write_jsonl_manifest(paths, tmp_path / "m.jsonl", captions=True)


@pytest.fixture
def bad_manifest(tmp_path: Path, good_manifest: Path) -> Path:
    (tmp_path / "text.png").write_text("hello")
    lines = good_manifest.read_text().splitlines()[:3]
    lines += ['{"path": "missing.png"}', "{oops", '{"path": "text.png"}', lines[0]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    return bad


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_complete_help(command: str) -> None:
    done = run_ingest([command, "--help"], env=ingest_env())
    assert done.returncode == 0
    assert "usage: ingest" in done.stdout
    assert len(done.stdout.splitlines()) > 4


def test_validate_good_and_bad(good_manifest: Path, bad_manifest: Path) -> None:
    ok = run_ingest(["validate", str(good_manifest), "--provider", "novita"], env=ingest_env())
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "12 ok" in ok.stdout and "0 problems" in ok.stdout
    bad = run_ingest(["validate", str(bad_manifest), "--provider", "novita"], env=ingest_env())
    assert bad.returncode == 1
    for line, words in ((4, "not found"), (5, "JSON"), (6, "not an image"), (7, "duplicate")):
        assert any(f"line {line}" in t and words in t for t in bad.stdout.splitlines()), bad.stdout
    assert "4 problems" in bad.stdout
    as_json = run_ingest(
        ["validate", str(bad_manifest), "--provider", "novita", "--json"], env=ingest_env()
    )
    doc = json.loads(as_json.stdout)
    assert as_json.returncode == 1
    assert doc["ok"] == 3 and doc["entries"] == 7 and not doc["valid"]
    assert sorted(p["line"] for p in doc["problems"]) == [4, 5, 6, 7]


def test_validate_needs_no_key_and_no_network(good_manifest: Path) -> None:
    env = ingest_env(NOVITA_API_KEY="")
    done = run_ingest(
        [
            "validate",
            str(good_manifest),
            "--provider",
            "novita",
            "--base-url",
            "http://192.0.2.1:9",
        ],
        env=env,
    )
    assert done.returncode == 0, done.stderr


def test_dry_run_calls_no_api(bad_manifest: Path) -> None:
    with sim_process() as sim:
        done = run_ingest(
            [
                "run",
                str(bad_manifest),
                "--provider",
                "novita",
                "--base-url",
                sim.base_url,
                "--dry-run",
                "--json",
            ],
            env=ingest_env(NOVITA_API_KEY=KEY),
        )
        assert sim.stats()["api_requests"] == {}
    assert done.returncode == 1
    events = json_events(done.stdout)
    kinds = [e["event"] for e in events]
    assert kinds.count("would_upload") == 3
    assert kinds.count("item_rejected") == 4
    assert events[-1] == {**events[-1], "event": "summary", "upload": 3, "rejected": 4, "skip": 0}
    assert not (bad_manifest.parent / "bad.jsonl.novita.journal").exists()


def test_json_events_and_quiet_output(good_manifest: Path) -> None:
    with sim_process() as sim:
        args = ["run", str(good_manifest), "--provider", "novita", "--base-url", sim.base_url]
        done = run_ingest([*args, "--json"], env=ingest_env(NOVITA_API_KEY=KEY))
        assert done.returncode == 0, done.stderr
        events = json_events(done.stdout)
        assert len(events) == len(done.stdout.splitlines()), "stdout holds only JSON events"
        assert events[0]["event"] == "start"
        assert [e["event"] for e in events].count("item_done") == 12
        assert all(
            {"key", "remote_id", "line", "size", "t"} <= e.keys()
            for e in events
            if e["event"] == "item_done"
        )
        summary = events[-1]
        assert summary["event"] == "summary" and summary["done"] == 12 and summary["total"] == 12
        again = run_ingest([*args, "--quiet"], env=ingest_env(NOVITA_API_KEY=KEY))
    assert again.returncode == 0
    assert again.stdout == ""
    assert "starting" not in again.stderr and "resuming" not in again.stderr
    assert "skipped 12 done before;" in again.stderr


def test_status_and_export(good_manifest: Path, tmp_path: Path) -> None:
    journal = tmp_path / "m.jsonl.novita.journal"
    with sim_process() as sim:
        args = ["run", str(good_manifest), "--provider", "novita", "--base-url", sim.base_url]
        assert run_ingest(args, env=ingest_env(NOVITA_API_KEY=KEY)).returncode == 0
    status = run_ingest(["status", str(journal)], env=ingest_env())
    assert status.returncode == 0
    assert "done      12" in status.stdout and "complete" in status.stdout
    rows = run_ingest(["export", str(journal)], env=ingest_env()).stdout.splitlines()
    assert len(rows) == 12
    first = json.loads(rows[0])
    assert first["key"] == "item-000000" and first["remote_id"] and first["caption"]
    document = json.loads(
        run_ingest(["export", str(journal), "--format", "provider"], env=ingest_env()).stdout
    )
    assert len(document["image_dataset_items"]) == 12
    assert all(
        isinstance(i["assets_id"], str) and i["caption"] for i in document["image_dataset_items"]
    )
    csv_out = run_ingest(["export", str(journal), "--format", "csv"], env=ingest_env()).stdout
    assert csv_out.splitlines()[0] == "key,path,remote_id,url,caption"
    for command in ("status", "export"):
        missing = run_ingest([command, str(tmp_path / "nope.journal")], env=ingest_env())
        assert missing.returncode == 2 and "no journal" in missing.stderr


def test_config_show_masks_secrets_and_names_bad_keys(tmp_path: Path) -> None:
    shown = run_ingest(
        ["config", "show", "--provider", "novita", "--put-concurrency", "3"],
        env=ingest_env(NOVITA_API_KEY=KEY),
    )
    assert shown.returncode == 0
    assert "put_concurrency = 3" in shown.stdout
    assert KEY not in shown.stdout and "NOVITA_API_KEY: set" in shown.stdout
    bad = tmp_path / "c.toml"
    bad.write_text("[run]\nput_concurency = 3\n")
    done = run_ingest(["config", "show", "--config", str(bad)], env=ingest_env())
    assert done.returncode == 2 and "run.put_concurency" in done.stderr
    run_bad = run_ingest(
        ["run", str(tmp_path), "--provider", "novita", "--config", str(bad)],
        env=ingest_env(NOVITA_API_KEY=KEY),
    )
    assert run_bad.returncode == 2 and "run.put_concurency" in run_bad.stderr


def test_retry_failed_reruns_the_journal(good_manifest: Path, tmp_path: Path) -> None:
    journal = tmp_path / "m.jsonl.novita.journal"
    with sim_process("--faults", "seed=1,put.503=1") as sim:
        args = ["run", str(good_manifest), "--provider", "novita", "--base-url", sim.base_url]
        failed = run_ingest(
            [
                *args,
                "--max-attempts",
                "2",
                "--retry-window-s",
                "0",
                "--backoff-base-s",
                "0.01",
                "--circuit-breaker",
                "100",
                "--plain",
            ],
            env=ingest_env(NOVITA_API_KEY=KEY),
        )
        assert failed.returncode == 1, failed.stderr
        assert "retry/SlowDown" in failed.stderr or "retry/" in failed.stderr
        sim.set_faults("")
        retried = run_ingest(
            ["retry-failed", str(journal), "--base-url", sim.base_url, "--json"],
            env=ingest_env(NOVITA_API_KEY=KEY),
        )
    assert retried.returncode == 0, retried.stderr
    assert json_events(retried.stdout)[-1]["done"] == 12
