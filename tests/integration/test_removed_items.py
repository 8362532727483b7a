"""Entries removed between a `kill -9` and the resume (W3), as a user runs it: real processes.

The user's report: a JSONL manifest edited between a SIGKILL and the resume
gave `"total":299,"done":309`, and `export` had 309 rows including the 10
removed ids. Here a run is killed once progress is seen in its journal (never
after a fixed delay), 5 items it had uploaded and 5 it had not are removed
from the manifest (or the folder) and 3 are added, then the same command runs
to the end: it must exit 0 with done == total == the manifest's entries,
report the 5 uploaded ones as removed, and `status` / `export` must agree.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Literal

import orjson
import pytest

from tests.images import make_dataset, make_image, write_jsonl_manifest
from tests.integration.runkit import wait_for
from tests.simproc import ingest_env, json_events, run_ingest
from tests.torture import done_records, journal_records, popen_ingest, summary_of

ITEMS, REMOVED_DONE, REMOVED_NOT_DONE, ADDED = 120, 5, 5, 3


def run_args(source: Path, *extra: str) -> list[str]:
    return ["run", str(source), "--provider", "novita", "--sim", *extra]


def listed_keys(source: Path, kind: str) -> list[str]:
    if kind == "folder":
        return sorted(p.name for p in source.iterdir() if p.is_file())
    return [orjson.loads(line)["id"] for line in source.read_bytes().splitlines()]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["jsonl", "folder"])
def test_entries_removed_between_a_kill_and_the_resume(
    kind: Literal["jsonl", "folder"], tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    paths = make_dataset(folder, ITEMS, max_size=8 * 1024, seed=8)
    if kind == "folder":
        source, journal = folder, folder / ".ingest" / "novita.journal"
    else:
        source = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
        journal = tmp_path / "m.jsonl.novita.journal"
    env = ingest_env()
    slow = run_args(source, "--sim-faults", "seed=1,put.latency=0.1", "--put-concurrency", "2")
    proc = popen_ingest([*slow, "--quiet"], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: done_records(journal) >= 10 or proc.poll() is not None, what="progress")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    done = [rec["k"] for rec in journal_records(journal) if rec.get("s") == "done"]
    assert 10 <= len(done) < ITEMS - REMOVED_NOT_DONE, "the run ended before the kill"

    before = listed_keys(source, kind)
    gone_done = done[:REMOVED_DONE]
    gone_other = [key for key in reversed(before) if key not in done][:REMOVED_NOT_DONE]
    gone = set(gone_done + gone_other)
    if kind == "folder":
        for name in gone:
            (folder / name).unlink()
        for n in range(ADDED):
            make_image(folder / f"new-{n}.png", "png", 2048, 100 + n)
    else:
        kept = [
            line
            for line in source.read_bytes().splitlines()
            if orjson.loads(line)["id"] not in gone
        ]
        new = [folder / f"new-{n}.png" for n in range(ADDED)]
        for n, path in enumerate(new):
            make_image(path, "png", 2048, 100 + n)
        added = [orjson.dumps({"path": str(p), "id": f"new-{n}"}) for n, p in enumerate(new)]
        source.write_bytes(b"".join(line + b"\n" for line in kept + added))
    now = listed_keys(source, kind)
    assert len(now) == ITEMS - len(gone) + ADDED

    final = run_ingest(run_args(source, "--json"), env=env)
    assert final.returncode == 0, final.stderr
    summary = summary_of(json_events(final.stdout))
    counts = (summary["done"], summary["total"], summary["removed"])
    assert counts == (len(now), len(now), REMOVED_DONE)
    assert (
        f"{REMOVED_DONE} items uploaded earlier are no longer in the manifest" not in final.stdout
    )

    status = orjson.loads(run_ingest(["status", str(journal), "--json"], env=env).stdout)
    counts = (status["done"], status["total"], status["removed"])
    assert counts == (len(now), len(now), REMOVED_DONE)
    assert status["complete"] and status["next_steps"] == []

    exported = run_ingest(["export", str(journal)], env=env)
    rows = [orjson.loads(line) for line in exported.stdout.splitlines()]
    assert [row["key"] for row in rows] == now
    every = run_ingest(["export", str(journal), "--include-removed"], env=env)
    extra = [orjson.loads(line) for line in every.stdout.splitlines()][len(now) :]
    assert sorted(row["key"] for row in extra) == sorted(gone_done)
    assert all(row["removed"] == "true" for row in extra)
    provider = run_ingest(["export", str(journal), "--format", "provider"], env=env).stdout
    documents = [orjson.loads(line) for line in provider.splitlines()]  # one task a line, <= 50
    assert all(len(d["image_dataset_items"]) <= 50 for d in documents)
    assert sum(len(d["image_dataset_items"]) for d in documents) == len(now)
