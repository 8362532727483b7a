"""Checks shared by the whole-run tests of one provider: journal, export and emulator agree.

`Provider` names a provider and the key variable its runs use; `check_landed`
is the acceptance check every run ends with: each file landed byte-identical
in the emulator's storage, no more duplicates than allowed, and the journal's
`status --json` and `export` name the same items.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.images import write_jsonl_manifest
from tests.simproc import SimProcess, ingest_env, read_journal, sha256_file


@dataclass(frozen=True)
class Provider:
    name: str
    key_env: str
    key: str

    def env(self, key: str | None = None) -> dict[str, str]:
        return ingest_env(**{self.key_env: self.key if key is None else key})

    def run_args(self, manifest: Path, sim: SimProcess, *extra: str) -> list[str]:
        return ["run", str(manifest), "--provider", self.name, "--base-url", sim.base_url, *extra]

    def journal(self, manifest: Path) -> Path:
        return manifest.with_name(f"{manifest.name}.{self.name}.journal")

    def export_rows(self, journal: Path) -> list[dict[str, Any]]:
        done = read_journal(["export", str(journal)])
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    def export_document(self, journal: Path) -> Any:
        done = read_journal(["export", str(journal), "--format", "provider"])
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def status(self, journal: Path) -> dict[str, Any]:
        done = read_journal(["status", str(journal), "--json"])
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))


def manifest_for(paths: list[Path], where: Path) -> Path:
    return write_jsonl_manifest(paths, where / "manifest.jsonl", ids=True)


def check_landed(
    provider: Provider,
    sim: SimProcess,
    paths: list[Path],
    journal: Path,
    *,
    max_duplicates: int = 0,
) -> list[dict[str, Any]]:
    """Every file landed byte-identical; journal, export and emulator agree. Returns export rows."""
    objects = sim.objects()
    by_sha: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_sha.setdefault(obj["sha256"], []).append(obj)
    rows = provider.export_rows(journal)
    exported = {row["key"]: row for row in rows}
    duplicates = 0
    for index, path in enumerate(paths):
        landed = by_sha.get(sha256_file(path), [])
        assert landed, f"{path.name} never landed"
        assert all(obj["size"] == path.stat().st_size for obj in landed)
        assert all(obj["provider"] == provider.name for obj in landed)
        duplicates += len(landed) - 1
        # The journal's remote id is one of the objects holding exactly these bytes.
        row = exported[f"item-{index:06d}"]
        assert row["remote_id"] in {str(obj["remote_id"]) for obj in landed}
    assert duplicates <= max_duplicates, f"{duplicates} duplicate uploads"
    assert all(obj["puts"] == 1 for obj in objects)
    info = provider.status(journal)
    assert info["done"] == len(paths) == info["total"] == len(rows)
    assert info["failed"] == info["rejected"] == info["in_flight"] == 0
    assert info["complete"]
    return rows


def wait_for(predicate: Any, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll `predicate()` until true (for watching another process; not a race guard)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
