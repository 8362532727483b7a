"""Wording found last session (fixes9b): a shard's entries are named by member or row, not
"line N"; `bench` says which throughput counts start-up and names no bottleneck from equal
medians; an interrupted run says so once."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ingest.api import StopReason
from ingest.bench.reference import render_reference
from ingest.bench.verdict import verdict
from ingest.cli.main import main
from ingest.cli.report import Reporter
from ingest.cli.run import exit_code
from ingest.cli.status import failure_line
from ingest.cli.wording import member_where, problem_where
from ingest.engine import Progress
from ingest.errors import ManifestError
from ingest.journal.report import Failure
from tests.images import image_bytes
from tests.unit.test_api import result


def test_a_shards_entries_are_named_by_member_or_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A shard given as the manifest said "line 2: not an image …: /abs/s.tar#s/001.png" (its
    # "line" the member's place in the shard), a Parquet file "line 2" for row-1.
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in (("s/000.png", image_bytes("png", 300, 1)), ("s/001.png", b"text")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert main(["validate", str(shard), "--provider", "novita"]) == 1
    said = capsys.readouterr().out.splitlines()[0]
    assert said == "member s/001.png of s.tar: not an image (content looks like text ('text'))"
    reason = f"not an image: {tmp_path}/t.parquet#row-1"
    failed = Failure("t.parquet#row-1", 2, "bad", "not an image", reason)
    assert failure_line(failed, packed=True) == "row 1 of t.parquet: rejected: not an image"
    assert member_where("a.zip#x#y.png") == "member x#y.png of a.zip"
    assert member_where("a.png") is None
    # A manifest line that names a member keeps its line (only a shard's own entries change).
    assert problem_where(3, "s.tar#s/1.png", "gone", "m.jsonl") == "line 3 s.tar#s/1.png"
    err = io.StringIO()
    reporter = Reporter("plain", err=err)
    reporter.packed = True
    reporter.item_rejected(
        "s.tar#s/001.png", ManifestError("bad: /x/s.tar#s/001.png", source="s.tar", line=2)
    )
    assert err.getvalue() == "rejected member s/001.png of s.tar: bad\n"


def _reference() -> dict[str, Any]:
    figures = {
        "files_per_s": 500.0,
        "transfer_files_per_s": 800.0,
        "cpu_ms_per_file": 1.0,
        "peak_rss_mib": 50.0,
        "api_calls_per_file": 1.0,
        "sink_cores": 0.1,
        "signer_cores": 0.1,
    }
    return {
        "bare": figures,
        "engine": figures,
        "share": {"files_per_s": 1.0, "transfer_files_per_s": 1.0, "cpu_per_file": 1.0},
        "rounds": 3,
        "problems": [],
        "load_1m_before": 0.1,
    }


def test_bench_says_which_throughput_counts_start_up_and_no_stage_from_equal_medians() -> None:
    lines = render_reference(_reference())
    assert lines[0].startswith("reference  bare 500 files/s start-up included (800 in its")
    report: dict[str, Any] = {
        "client": {"process_wall_s": 2.0, "cpu_s": 1.0, "loop_busy": 0.4, "cpu_ms_per_file": 0.5},
        "emulator": None,
        "throttling": {"per_1000_files": 0.0},
        "latency_ms": {"api": {"p50": 28.1}, "put": {"p50": 28.2}},
    }
    bottleneck, why = verdict(report, cores=2)  # was "storage bandwidth" (newcomer8)
    assert bottleneck is None and why.startswith("no stage stands out: a PUT takes 28.2 ms")
    report["latency_ms"]["put"]["p50"] = 40.0
    assert verdict(report, cores=2)[0] == "storage bandwidth"


def test_an_interrupted_run_says_so_in_one_line() -> None:
    # A second Ctrl-C ended the summary with "stopped: interrupted", then the exit line.
    stopped = result(40, 26, in_flight=3, read_all=False, stop=StopReason.INTERRUPTED)
    outcome = dataclasses.replace(stopped, stop_message="interrupted")
    err = io.StringIO()
    reporter = Reporter("plain", err=err)
    counted = Progress(done=26, total=300, estimated=True)
    reporter.summary(outcome, counted)
    exit_code(outcome, reporter, interrupted=True, progress=counted)
    said = err.getvalue().splitlines()
    assert [line for line in said if "interrupted" in line] == [
        "interrupted; run the same command again to resume (26 of ~300 done so far)"
    ]
