"""Small defects a new user met (session 8): counts, exit codes and wording of the CLI.

- `validate`'s captions line counted the entries it rejected;
- empty input exited 0 (an empty `.jsonl`), 2 (an empty CSV) or 1 (a folder with no image);
- a full disk at the journal's opening exited 2, mid-run 3;
- the resume line's "N already done" (the journal's) and the summary's "already done before:
  M" (this run's skips) read as one figure that disagreed;
- a misspelt flag got argparse's usage and bare message, no "did you mean";
- at 40 columns the live bar cut its totals (``435/~…``) and its counts (``faile…``).
"""

from __future__ import annotations

import errno
import io
from pathlib import Path

import orjson
import pytest

from ingest.cli.main import main
from ingest.cli.report import Reporter
from tests.images import make_image, touch


def test_validate_counts_the_captions_of_the_entries_that_upload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_image(tmp_path / "a.png", "png", 256, 1)
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "c.png").write_text("not a png")  # rejected, though captioned
    (tmp_path / "c.txt").write_text("c")
    assert main(["validate", str(tmp_path), "--provider", "novita"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert (
        f"{tmp_path}: captions: 1 from caption files, 0 from metadata, 0 without a caption"
        " (not counted: 1 entry with a problem)"
    ) in out
    assert main(["validate", str(tmp_path), "--provider", "novita", "--json"]) == 1
    captions = orjson.loads(capsys.readouterr().out)["captions"]
    assert (captions["from_caption_files"], captions["without"]) == (1, 0)


def _empty_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    (tmp_path / "list.txt").write_text("# nothing yet\n\n")
    (tmp_path / "header.csv").write_text("path,caption\n")
    touch(tmp_path / "notes", "readme.txt")
    (tmp_path / "nothing").mkdir()
    return {
        "jsonl": (tmp_path / "empty.jsonl", "no entries (the file is empty or holds only blank"),
        "blank": (tmp_path / "blank.jsonl", "no entries"),
        "list": (tmp_path / "list.txt", "only blank lines and # comments"),
        "csv": (tmp_path / "header.csv", "no entries (no row below the header)"),
        "folder": (tmp_path / "notes", "no images found (skipped 1 non-image file (readme.txt))"),
        "bare": (tmp_path / "nothing", "no images found"),
    }


@pytest.mark.parametrize("kind", ["jsonl", "blank", "list", "csv", "folder", "bare"])
def test_nothing_to_upload_is_refused_alike_whatever_the_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    manifest, why = _empty_inputs(tmp_path)[kind]
    before = sorted(tmp_path.rglob("*"))
    for command in (
        ["validate", str(manifest), "--provider", "novita"],
        ["run", str(manifest), "--provider", "novita", "--sim", "--plain"],
        ["run", str(manifest), "--provider", "novita", "--sim", "--dry-run"],
    ):
        assert main(command) == 2, command
        captured = capsys.readouterr()
        [line] = captured.err.splitlines()
        assert line.startswith("ingest: error: ") and why in line, line
        assert line.endswith(": nothing to upload"), line
        assert captured.out == ""
    assert sorted(tmp_path.rglob("*")) == before  # no journal, no lock file, nothing


def test_a_full_disk_at_the_journal_opening_exits_3_as_one_mid_run_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_image(tmp_path / "a.png", "png", 256, 1)

    def full(fd: int, data: bytes, offset: int) -> int:  # the lock file's pid: the first write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("ingest.journal.maintenance.os.pwrite", full)
    assert main(["run", str(tmp_path), "--provider", "novita", "--sim", "--plain"]) == 3
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("ingest: stopped: cannot open ") and "the disk is full" in line


def test_the_resume_line_and_the_summary_name_their_counts_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in range(3):
        make_image(photos / f"{n}.png", "png", 256, n)
    args = ["run", str(photos), "--provider", "novita", "--sim", "--plain"]
    assert main(args) == 0
    first = capsys.readouterr().err  # a first run has no earlier runs to count (newcomer8)
    assert "starting novita upload of" in first and "done by earlier runs" not in first
    (photos / "0.png").unlink()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "3 items done by earlier runs)" in err
    assert "skipped 2 done before (of the journal's 3 done: 1 no longer in the manifest);" in err
    assert main(args) == 0
    assert "skipped 2 done before (of the journal's 3 done: 1 no longer" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["run", "m.jsonl", "--providr", "novita"], "--providr (did you mean --provider?)"),
        (
            ["run", "m.jsonl", "--provider", "novita", "--put-concurency", "8"],
            "--put-concurency (did you mean --put-concurrency?), 8",
        ),
        (["validate", "m.jsonl", "--provider", "novita", "--jsn"], "--jsn (did you mean --json?)"),
        (["run", "m.jsonl", "--provider", "novit"], "'novit' (choose from"),
        (["rnu", "m.jsonl"], "(did you mean run?)"),
    ],
)
def test_a_misspelt_flag_gets_one_line_with_the_closest_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    command = "ingest" if argv[0] == "rnu" else f"ingest {argv[0]}"
    assert line.startswith(f"{command}: error: ") and said in line, line
    assert line.endswith("--help'") and "usage:" not in captured.err


@pytest.mark.anyio
@pytest.mark.parametrize("columns", [40, 80])
async def test_a_narrow_terminal_drops_the_bar_and_keeps_every_count(
    monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    from tests.unit.test_progress import RESUMED, Script, watch

    monkeypatch.setenv("COLUMNS", str(columns))  # the width rich draws the live display at
    err = io.StringIO()
    await watch(Reporter("live", err=err), Script(RESUMED, until=2))
    shown = err.getvalue()  # not a terminal: rich renders the last frame when it stops
    assert all(len(line) <= columns for line in shown.splitlines())
    for figure in ("435/~1010", "eta ~1:58", "3.2 files/s", "failed 0", "rejected 197"):
        assert figure in shown, shown
    assert "…" not in shown
    assert ("━" in shown) == (columns == 80)  # the bar only where it fits beside the figures


def test_bench_reference_says_each_servers_figure_once_with_its_meaning() -> None:
    from ingest.bench.reference import render_reference, servers_said

    def client(sink: float, signer: float) -> dict[str, float]:
        figures = dict.fromkeys(("files_per_s", "transfer_files_per_s", "cpu_ms_per_file"), 1.0)
        return (
            figures
            | {"peak_rss_mib": 50.0, "api_calls_per_file": 1.0}
            | {
                "sink_cores": sink,
                "signer_cores": signer,
            }
        )

    engine, bare = client(0.12, 0.08), client(0.31, 0.2)
    reference = {"bare": bare, "engine": engine, "rounds": 3, "load_1m_before": 0.0}
    reference |= {
        "problems": [],
        "share": dict.fromkeys(("files_per_s", "transfer_files_per_s", "cpu_per_file"), 1.0),
    }
    [servers] = [line for line in render_reference(reference) if "servers" in line]
    # Was "sink (nginx) 0.31 cores, signer 0.20 cores at most" (the larger of the two clients')
    # beside a verdict of "nginx (0.12 cores) and the signer (0.08)": two figures, one name.
    assert servers == (
        "  servers  while the engine ran: nginx 0.12 cores and the signer 0.08 cores; "
        "while the bare loop ran: nginx 0.31 cores and the signer 0.20 cores (medians)"
    )
    assert servers_said(engine) in servers  # the verdict's words for the engine's run
