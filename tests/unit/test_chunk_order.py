"""A coordinated run's chunks feed every manifest line once, whatever the hash seed.

The manifest reader yields the entries its duplicate filter holds after all
others, and which ones it holds depends on the process's hash seed
(`digestset.digest64`). The plan (`plan.read_layout`) must not depend on that
order (its digest binds every worker of a run, each a process of its own), and
a chunk's read (`entries.ChunkReader`), which stops at the first line past its
chunk, must still yield the held lines of its range. The tests provoke held
entries by the hundred by shrinking the exact table and the filter.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ingest.coord.entries import ChunkReader
from ingest.coord.plan import Layout, read_layout
from ingest.errors import ManifestError
from ingest.item import Item
from ingest.manifest import read_manifest
from ingest.manifest.dedupe import DuplicateKey
from ingest.manifest.seenkeys import Duplicates
from tests.unit.test_seenkeys import expected, tiny_tables

# Run in a process of another hash seed: the layout of the manifest at argv[1], as JSON.
_OTHER_SEED = """
import sys
import orjson
from pathlib import Path
from ingest.coord.plan import lay_out
from ingest.manifest.seenkeys import SeenKeys, _Bloom
SeenKeys.EXACT_KEYS, _Bloom.BITS_PER_KEY = 8, 1
layout = lay_out(Path(sys.argv[1]), None, int(sys.argv[2]))
print(orjson.dumps([layout.digest, layout.entries, layout.chunks, layout.duplicates.text()]).decode())
"""


def _manifest(tmp_path: Path, lines: int = 500) -> tuple[Path, list[str]]:
    rng = random.Random(7)
    keys = [f"k{rng.randrange(lines * 7 // 10)}" for _ in range(lines)]
    rows = [orjson.dumps({"id": k, "path": "a.png"}) for k in keys]
    rows[40] = b"{not json"  # an error with a line: an entry of the run too
    keys[40] = "!"
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    return path, keys


def _verdicts(entries: list[Item | ManifestError]) -> dict[int, str]:
    out: dict[int, str] = {}
    for entry in entries:
        assert entry.line is not None and entry.line not in out, entry.line  # once each
        if isinstance(entry, DuplicateKey):
            out[entry.line] = f"dup {entry.first}"
        elif isinstance(entry, ManifestError):
            out[entry.line] = "!"
        else:
            out[entry.line] = entry.key
    return out


def _fed(reader: ChunkReader, layout: Layout) -> list[Item | ManifestError]:
    fed: list[Item | ManifestError] = []
    for first, last, _count in layout.chunks:
        got = list(reader.entries(first, last))
        assert [e.line for e in got] == sorted(e.line or 0 for e in got)  # in line order
        fed += got
    reader.close()
    return fed


def _want(keys: list[str]) -> dict[int, str]:
    want = expected([k if k != "!" else f"!{i}" for i, k in enumerate(keys)])
    return {line: "!" if v.startswith("!") else v for line, v in want.items()}


@pytest.mark.parametrize("keep", [0, 1_000], ids=["read-again", "kept"])
def test_every_line_reaches_exactly_one_chunk_with_its_verdict(tmp_path: Path, keep: int) -> None:
    path, keys = _manifest(tmp_path)
    with tiny_tables():
        layout, kept = read_layout(path, None, 50, keep)
        held = [e.line or 0 for e in read_manifest(path)]
        assert held != sorted(held)  # the reader did hold some: the case under test
        fed = _fed(ChunkReader(path, None, kept, duplicates=layout.duplicates), layout)
    assert _verdicts(fed) == _want(keys)
    assert layout.entries == len(keys) == sum(n for _f, _l, n in layout.chunks)
    ranges = [(f, last) for f, last, _n in layout.chunks]
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))  # no overlap


def test_the_layout_is_the_same_in_a_process_of_another_hash_seed(tmp_path: Path) -> None:
    path, _keys = _manifest(tmp_path)
    with tiny_tables():
        ours = read_layout(path, None, 50)[0]
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", _OTHER_SEED, str(path), "50"],
        env=env, capture_output=True, check=True, timeout=60, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    digest, entries, chunks, dups = orjson.loads(out.stdout)
    assert (digest, entries) == (ours.digest, ours.entries)  # a joiner is not refused
    assert [tuple(c) for c in chunks] == list(ours.chunks)
    assert Duplicates.parse(dups) == ours.duplicates


def test_a_chunk_read_answers_from_the_plan_in_one_pass_holding_nothing(tmp_path: Path) -> None:
    path, keys = _manifest(tmp_path, 300)
    with tiny_tables():
        found = read_layout(path, None, 1_000)[0].duplicates
        entries = list(read_manifest(path, duplicates=found))
    assert [e.line for e in entries] == list(range(1, 301))
    assert _verdicts(entries) == _want(keys)
    assert Duplicates.parse(found.text()) == found and len(found) == sum(
        v.startswith("dup") for v in _want(keys).values()
    )


def test_the_digest_does_not_name_the_manifest_by_the_path_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _keys = _manifest(tmp_path, 50)  # line 41 is an error: its message names the file
    monkeypatch.chdir(tmp_path)
    assert read_layout(path, None)[0].digest == read_layout(Path("m.jsonl"), None)[0].digest


def test_a_coordinated_export_lists_its_rows_in_line_order(tmp_path: Path) -> None:
    from ingest.coord.exporting import SharedRun, rows

    path, _keys = _manifest(tmp_path, 200)
    with tiny_tables():
        layout = read_layout(path, None, 1_000)[0]
        items = [e for e in read_manifest(path) if isinstance(e, Item)]
        assert [i.line for i in items] != sorted(i.line for i in items)  # some held
        done = {
            i.line: orjson.dumps(
                {"k": i.key, "line": i.line, "id": f"r{i.line}", "size": 1}
            ).decode()
            for i in items
        }
        run = SharedRun("t", {"entries": layout.entries}, done, None, layout.duplicates)
        ids = [row["remote_id"] for row in rows(run, path, include_removed=False)]
    assert ids == [f"r{line}" for line in sorted(done)]


def test_a_manifest_changed_under_the_planning_read_is_not_planned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.manifest import dedupe

    path, _keys = _manifest(tmp_path, 200)
    identities = iter([(1, 1, 1, 1), (1, 1, 1, 2)])  # before and after the first pass
    monkeypatch.setattr(dedupe, "_identity", lambda _path: next(identities))
    with tiny_tables(), pytest.raises(ManifestError, match="changed while it was read to plan"):
        read_layout(path, None, 50)
