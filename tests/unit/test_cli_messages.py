"""What the commands say around their output: warnings, the first line, help text.

A new user found `ingest export --format provider` of a journal with 1 of 7
items done exit 0 with no word (the partial dataset passed for a whole one),
and `ingest validate` output that started with a blank line.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ingest.cli import exits
from ingest.cli.main import main
from ingest.journal import Header, Journal
from ingest.journal.records import completed, manifest_end, run_started
from tests.images import make_dataset, write_jsonl_manifest
from tests.unit.test_journal_report import make_run


@pytest.mark.parametrize("form", ["jsonl", "csv", "provider"])
def test_exporting_a_partial_journal_warns_and_still_succeeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    journal = make_run(tmp_path)  # 2 of its manifest's 6 entries done
    assert main(["export", str(journal), "--format", form]) == 0
    captured = capsys.readouterr()
    assert captured.out  # the export itself is written
    assert captured.err == (
        f"ingest: warning: exporting 2 of 6 items; 4 are not done (see ingest status {journal})\n"
    )


def test_exporting_a_complete_journal_says_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(orjson.dumps({"path": "a.png", "id": "a"}) + b"\n")
    journal = tmp_path / "m.jsonl.novita.journal"
    opened, _ = Journal.open(journal, Header(provider="novita", manifest=str(manifest)))
    with opened:
        for rec in (run_started(1.0, 1), completed("a", "1", 10, 1), manifest_end(1)):
            opened.record(rec)
    assert main(["export", str(journal), "--format", "provider"]) == 0
    assert capsys.readouterr().err == ""


def test_validate_starts_with_its_first_line_and_spaces_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = make_dataset(tmp_path / "images", 2, min_size=512, max_size=4096)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    assert main(["validate", str(manifest), "--provider", "novita"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{manifest}: 2 entries for novita: 2 ok")
    with manifest.open("a") as fh:
        fh.write('{"path": "missing.png", "id": "gone"}\n')
    assert main(["validate", str(manifest), "--provider", "novita"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "missing.png" in lines[0] and lines[1] == ""  # the problem, then a blank line
    assert lines[2].startswith(f"{manifest}: 3 entries for novita: 2 ok")


def test_the_readme_and_run_help_give_the_same_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert exits.markdown(exits.RUN) in readme
    assert exits.markdown(exits.DRY_RUN) in readme
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # the help's lines, unwrapped
    for code in (*exits.RUN, *exits.DRY_RUN):
        assert f"{code.code} {code.meaning.replace('`', '').replace(chr(92), '')}" in shown
    assert (
        "1 the run finished, but some items are not done: failed, rejected or unfinished" in shown
    )
    assert "It does not mean done == total: a dry run uploads nothing" in shown


def test_a_coordinated_export_to_a_closed_pipe_is_no_write_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ingest export --coordinator … | head -1` said 'ingest: error: cannot write None:
    Broken pipe' (exit 2): its rows are written inside the handler of the output file's
    errors. The closed pipe now reaches main, which exits as for a journal's export."""
    import sys
    from typing import Any

    from ingest.cli import shared_run
    from ingest.cli.export import run
    from ingest.cli.main import build_parser
    from ingest.coord.exporting import SharedRun

    async def rows(url: str, name: str) -> SharedRun:
        plan: dict[str, Any] = {"entries": 1, "provider": "novita"}
        return SharedRun(name, plan, {1: '{"k":"a.png","line":1,"id":"1","size":3}'}, None)

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(shared_run, "shared_run", rows)
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    args = build_parser("export").parse_args(
        ["export", "--coordinator", "redis://127.0.0.1:1/0", "--run-name", "r"]
    )
    with pytest.raises(BrokenPipeError):
        run(args)
    assert "ingest: error" not in capsys.readouterr().err  # (a warning: no manifest recorded)


def test_validate_reads_a_file_redirected_to_stdin_as_that_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `ingest validate /dev/stdin < m.jsonl` read it as a path list (by the name "stdin") with
    # paths relative to /dev: 2 problems 'file not found: /dev/{"path": …}' (newcomer8); a run
    # reads m.jsonl. /dev/fd/N of the open file is the same link, in process.
    paths = make_dataset(tmp_path / "images", 2, min_size=512, max_size=4096)
    manifest = write_jsonl_manifest(paths, tmp_path / "m.jsonl")
    with manifest.open("rb") as fh:
        given = f"/dev/fd/{fh.fileno()}"
        assert main(["validate", given, "--provider", "novita"]) == 0
    assert capsys.readouterr().out.startswith(f"{given}: 2 entries for novita: 2 ok")
