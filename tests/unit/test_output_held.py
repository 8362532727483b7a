"""`Output` holds stdout's unflushed text itself: PYTHONUNBUFFERED=1 must not make each line a write."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from ingest.cli.output import HELD_BYTES, Output
from tests.images import make_dataset, write_jsonl_manifest


class Counting(io.StringIO):
    """A stream that counts the writes that reach it, as an unbuffered stdout's write(2)s."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_lines_without_a_flush_reach_the_stream_at_the_next_flush_in_order() -> None:
    out, err = Counting(), Counting()
    output = Output(out, err)
    for n in range(100):
        output.write(out, f"item {n}\n", flush=False)
    assert out.writes == 0 and out.getvalue() == ""
    output.write(out, "summary\n", flush=True)
    assert out.writes == 1
    assert out.getvalue() == "".join(f"item {n}\n" for n in range(100)) + "summary\n"


def test_held_text_is_passed_on_at_its_size_bound_and_stderr_is_never_held() -> None:
    out, err = Counting(), Counting()
    output = Output(out, err)
    line = "x" * 1023 + "\n"
    for _ in range(HELD_BYTES // len(line) + 1):
        output.write(out, line, flush=False)
    assert out.writes == 1 and len(out.getvalue()) >= HELD_BYTES
    output.write(err, "a note\n", flush=False)
    assert err.getvalue() == "a note\n"


def test_a_run_passes_on_its_last_held_lines_before_it_returns(tmp_path: Path) -> None:
    """`ingest run --json`: the item lines after the last flush are written before `main` returns."""
    from ingest.cli.main import main

    paths = make_dataset(tmp_path / "images", 3, min_size=512, max_size=2048, seed=7)
    manifest = write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")
    out = Counting()
    with contextlib.redirect_stdout(out):
        code = main(["run", str(manifest), "--provider", "novita", "--sim", "--json"])
    assert code == 0
    assert out.getvalue().count('"event":"item_done"') == 3
