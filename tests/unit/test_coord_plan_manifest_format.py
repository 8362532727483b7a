"""A coordinated run planned with `--format` records it in its plan, and its export reads the
manifest as that format, not by its name (a JSON lines manifest named `.txt` is a list)."""

from __future__ import annotations

from pathlib import Path

import orjson

from ingest.coord.exporting import SharedRun, check, manifest_format, rows
from ingest.coord.plan import binding, known_layout, lay_out
from tests.images import make_dataset, write_jsonl_manifest


def test_a_forced_format_is_recorded_in_the_plan_and_read_by_the_export(tmp_path: Path) -> None:
    manifest = write_jsonl_manifest(make_dataset(tmp_path / "img", 3), tmp_path / "m.txt")
    layout = lay_out(manifest, "jsonl")
    plan = binding(layout, "novita", "x", {})
    assert plan["manifest_format"] == "jsonl"
    stored = orjson.loads(orjson.dumps(plan))  # as Redis holds it
    joined = known_layout(stored, layout.fingerprint)
    assert joined is not None and joined.manifest_format == "jsonl"
    done = {
        line: orjson.dumps({"k": f"item-{line - 1:06d}", "line": line, "id": f"r{line}"}).decode()
        for line in (1, 2, 3)
    }
    run = SharedRun("r", stored, done, None)
    assert manifest_format(run) == "jsonl"
    assert check(run, manifest) is None  # read by name (a list of 3 lines of JSON): refused
    exported = list(rows(run, manifest, False))
    assert [row["remote_id"] for row in exported] == ["r1", "r2", "r3"]
    assert all(str(row["path"]).startswith(str(tmp_path / "img")) for row in exported)


def test_a_plan_read_by_name_records_none() -> None:
    from ingest.coord.plan import Layout

    assert binding(Layout("d" * 64, 0, ()), "novita", "x", {})["manifest_format"] is None
