"""`ingest export --coordinator URL --run-name NAME` gives what `ingest export JOURNAL` gives.

One run, recorded twice: the in-process emulator's upload journals each item
locally and its events go to a `Shipper` (the observer every coordinated
worker ships its outcomes with) into a real redis-server, with the plan a
worker writes. Both exports of it then print the same bytes: JSON lines, CSV,
`--include-removed`, the provider's documents (Novita's, Scenario's), and the
same refusal for a caption style training lacks. The manifest the record is
matched to by line must hold the run's entries: a copy elsewhere (a caption
fixed in it) is used, one with other entries is refused in one line.
"""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

import ingest
from ingest.coord.connection import connect
from ingest.coord.names import RunKeys
from ingest.coord.plan import binding, lay_out, plan_run
from ingest.coord.record import Record, Shipper
from ingest.journal import peek_header
from tests.images import make_dataset, write_jsonl_manifest

ITEMS = 6


def _main(*args: str) -> tuple[int, str, str]:
    from ingest.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _manifest(tmp: Path) -> Path:
    """Six images with captions but the fourth; a seventh entry whose file is missing."""
    manifest = write_jsonl_manifest(
        make_dataset(tmp / "img", ITEMS, max_size=2048), tmp / "m.jsonl", captions=True
    )
    lines = manifest.read_text().splitlines()
    entry = orjson.loads(lines[3])
    del entry["caption"]
    lines[3] = orjson.dumps(entry).decode()
    lines.append('{"id": "gone", "path": "img/missing.png"}')  # rejected: not done
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


async def _recorded(manifest: Path, provider: str, url: str, name: str, **kw: Any) -> Path:
    """Upload `manifest` (journal beside it) and ship the same run's record to `url`."""
    journal = manifest.with_suffix(".journal")
    async with connect(url) as conn:
        keys = RunKeys(name)
        shipper = Shipper(Record(conn, keys))
        await ingest.upload(manifest, provider=provider, sim=True, journal=journal,
                            observer=shipper, **kw)  # fmt: skip
        await shipper.flush()
        header = peek_header(journal)
        assert header is not None
        layout = await anyio.to_thread.run_sync(lay_out, manifest, None)
        await plan_run(conn, keys, layout, binding(layout, provider, "x", header.bind))
        await conn.call(lambda: conn.client.set(keys.source, str(manifest.absolute())))
    return journal


@pytest.mark.parametrize(
    ("provider", "settings", "exports"),
    [
        (
            "novita",
            {},
            [[], ["--format", "csv"], ["--format", "csv", "--include-removed"],
             ["--include-removed"], ["--format", "provider"],
             ["--format", "provider", "--training", "style"]],
        ),
        ("scenario", {"model_id": "model_export"}, [["--format", "provider"], ["--format", "csv"]]),
    ],
)  # fmt: skip
def test_a_shared_run_exports_what_its_journal_exports(
    tmp_path: Path,
    redis_url: str,
    provider: str,
    settings: dict[str, Any],
    exports: list[list[str]],
) -> None:
    manifest = _manifest(tmp_path)
    journal = anyio.run(lambda: _recorded(manifest, provider, redis_url, "same", **settings))
    shared = ["--coordinator", redis_url, "--run-name", "same"]
    for flags in exports:
        local = _main("export", str(journal), *flags)
        code, out, err = _main("export", *shared, *flags)
        assert (code, out) == local[:2], flags
        problems = [line for line in err.splitlines() if "problem" in line or "error" in line]
        assert problems == [ln for ln in local[2].splitlines() if "problem" in ln or "error" in ln]
        if flags == ["--format", "csv"]:
            assert out.splitlines()[0] == "key,path,remote_id,url,caption"
            assert len(out.splitlines()) == ITEMS + 1 and "test image 0" in out
            assert f"exporting {ITEMS} of 7 items; 1 is not done" in err
    assert "style training needs a caption" in err if provider == "novita" else True


def test_the_manifest_must_hold_the_runs_entries(tmp_path: Path, redis_url: str) -> None:
    """Paths and captions come from the current manifest by line, once it is the run's."""
    manifest = _manifest(tmp_path / "run")
    anyio.run(lambda: _recorded(manifest, "novita", redis_url, "moved"))
    shared = ["export", "--coordinator", redis_url, "--run-name", "moved"]
    copy = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "run", copy)
    entries = [orjson.loads(line) for line in (copy / "m.jsonl").read_text().splitlines()]
    for entry in entries[:4]:
        entry["caption"] = "fixed"  # the fourth's added (the first three changed)
    fixed = "".join(orjson.dumps(entry).decode() + "\n" for entry in entries)
    (copy / "m.jsonl").write_text(fixed)
    code, out, err = _main(*shared, "--manifest", str(copy / "m.jsonl"))
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert code == 0, err
    assert [r["caption"] for r in rows][:5] == ["fixed"] * 4 + ["test image 4 (img-000004)"]
    assert all(r["path"].startswith(str(copy)) for r in rows)
    other = copy / "other.jsonl"
    other.write_text("\n".join(fixed.splitlines()[1:]) + "\n")  # one entry fewer: lines moved
    code, out, err = _main(*shared, "--manifest", str(other))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"ingest: error: {other}:1 holds 'item-000001' where run 'moved' uploaded 'item-000000':"
        " give --manifest PATH the manifest the run was planned with (the export reads each "
        "item's path and caption from it)"
    ]
    other.write_text(fixed + '{"id": "new", "path": "img/img-000000.png"}\n')  # one more
    code, out, err = _main(*shared, "--manifest", str(other))
    assert (code, out) == (2, "")
    assert f"ingest: error: {other} holds 8 entries, run 'moved' 7: give" in err
    shutil.rmtree(tmp_path / "run")  # where the run read it: gone, so no paths or captions
    code, out, err = _main(*shared, "--format", "csv")
    assert code == 0 and out.splitlines()[1].split(",")[1:] == ["", rows[0]["remote_id"], "", ""]
    assert "the manifest cannot be read (manifest not found" in err
