"""`ingest export` and `ingest status --failed` list a journal's items in manifest line order,
held entries (those the duplicate filter checks after the others) in their place, as a
coordinated export does; the ordered read takes the passes an unordered one does."""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson
import pytest

from ingest.errors import ManifestError
from ingest.item import Item
from ingest.journal import Header
from ingest.journal.exporting import export
from ingest.journal.report import failures
from ingest.manifest import read_manifest
from tests.unit.test_seenkeys import tiny_tables


def _manifest(tmp_path: Path, lines: int = 300) -> Path:
    rng = random.Random(11)
    rows = [orjson.dumps({"id": f"k{rng.randrange(lines * 7 // 10)}", "path": "a.png"})
            for _ in range(lines)]  # fmt: skip
    rows[40] = b"{not json"
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    (tmp_path / "a.png").write_bytes(b"x")
    return path


def _said(entry: Item | ManifestError) -> str:
    return entry.key if isinstance(entry, Item) else f"! {entry.reason}"


def test_an_ordered_read_gives_every_verdict_in_line_order(tmp_path: Path) -> None:
    path = _manifest(tmp_path)
    with tiny_tables():
        plain = list(read_manifest(path))
        ordered = list(read_manifest(path, ordered=True))
    lines = [e.line or 0 for e in plain]
    assert lines != sorted(lines)  # some held: the unordered read gives them last
    assert [e.line for e in ordered] == sorted(lines)
    assert {e.line: _said(e) for e in ordered} == {e.line: _said(e) for e in plain}


def _journal(tmp_path: Path, manifest: Path, items: list[Item]) -> Path:
    """Items on even lines done, on odd lines failed (each key's first line decides)."""
    path = tmp_path / "j.journal"
    header = Header(provider="novita", manifest=str(manifest), created=time.time())
    records: list[dict[str, object]] = [dict(header.to_record())]
    for item in items:
        if item.line % 2:
            records.append({"s": "fail", "k": item.key, "l": item.line, "a": "fail_item",
                            "c": "x", "e": "refused"})  # fmt: skip
        else:
            records += [{"s": "acq", "k": item.key, "r": f"r{item.line}"},
                        {"s": "done", "k": item.key, "r": f"r{item.line}", "z": 1, "m": 0}]  # fmt: skip
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def test_export_and_status_failed_list_in_line_order(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    with tiny_tables():
        items = [e for e in read_manifest(manifest) if isinstance(e, Item)]
        journal = _journal(tmp_path, manifest, items)
        ids = [row["remote_id"] for row in export(journal)]
        listed = [f.line or 0 for f in failures(journal)]
    done = sorted(i.line for i in items if i.line % 2 == 0)
    assert ids == [f"r{line}" for line in done]  # the old code gave held rows last
    assert listed == sorted(listed) and len(listed) > len(items) - len(done)  # with the errors


@pytest.mark.anyio
async def test_a_forced_format_is_what_export_reads_the_manifest_as(tmp_path: Path) -> None:
    import ingest
    from tests.images import make_dataset, write_jsonl_manifest

    images = make_dataset(tmp_path / "img", 3, max_size=2048)
    manifest = write_jsonl_manifest(images, tmp_path / "m.txt")
    journal = tmp_path / "j.journal"
    await ingest.upload(manifest, provider="novita", sim=True, journal=journal, format="jsonl")
    rows = list(ingest.export(journal))  # read by its name (a list), the old code found none
    assert [row["key"] for row in rows] == ["item-000000", "item-000001", "item-000002"]


def test_an_ordered_read_keeps_no_message_for_a_duplicate_past_the_first_held_line(
    tmp_path: Path,
) -> None:
    """A key of the exact table listed again past the first held line (a captions file listing
    each image once a caption) is told in the first pass; what is kept of it for the second
    is its line and first line (16 bytes, as a held entry), not its message."""
    import tracemalloc

    rows = [orjson.dumps({"id": f"k{n}", "path": "a.png"}) for n in range(8)]
    rows += [orjson.dumps({"id": "x", "path": "a.png"})] * 2  # past the exact table: held
    rows += [orjson.dumps({"id": "k0", "path": "a.png"})] * 2_000
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    (tmp_path / "a.png").write_bytes(b"x")
    with tiny_tables():
        tracemalloc.start()
        try:
            count = 0
            for entry in read_manifest(path, ordered=True):
                count += 1
                if count == 11:  # the second pass's first duplicate: every one told is kept
                    kept, _ = tracemalloc.get_traced_memory()
                    assert isinstance(entry, ManifestError) and "first at line 1" in entry.reason
        finally:
            tracemalloc.stop()
    assert count == len(rows)
    assert kept < 600_000, kept  # the old code: 2,000 ManifestErrors, ~1.3 MB
