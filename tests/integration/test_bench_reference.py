"""`ingest bench --reference` wired end to end on a tiny workload: nginx, the signer, bare, engine.

Skipped, saying why, where nginx is not installed (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from ingest.bench.procs import find_tool, process_cpu_s
from ingest.bench.reference import run_reference
from ingest.bench.runner import BenchOptions, render
from ingest.bench.sink import SHM, NginxSink

pytestmark = pytest.mark.skipif(
    find_tool("nginx") is None,
    reason="nginx is not installed (Debian: apt-get install nginx-light; .ci/run installs it)",
)


def own_sink_folders() -> list[Path]:
    return list(SHM.glob(f"ingest-sink-{os.getpid()}-*"))


def test_reference_runs_bare_and_engine_and_reports_the_share(tmp_path: Path) -> None:
    options = BenchOptions(count=8, size=4096, workdir=tmp_path)
    report = run_reference(options, rounds=1)
    assert (report["result"]["done"], report["result"]["failed"]) == (8, 0)
    ref = report["reference"]
    assert ref["problems"] == []  # the sink held one object per file after each client
    for who in ("bare", "engine"):
        assert ref[who]["files_per_s"] > 0
        assert ref[who]["cpu_ms_per_file"] > 0
        assert ref[who]["sink_cores"] >= 0
        assert ref[who]["signer_cores"] >= 0
        assert ref[who]["api_calls_per_file"] == 1.0  # Novita: one acquire per file
    assert ref["bare"]["reader"] in ("aiofiles", "executor")
    share = ref["share"]
    assert share["files_per_s"] == pytest.approx(
        ref["engine"]["files_per_s"] / ref["bare"]["files_per_s"], rel=0.01
    )
    assert report["config"]["endpoint"].startswith("reference")
    assert report["verdict"]["bottleneck"] == "client CPU"  # nginx and the signer ran free
    assert "ran free" in report["verdict"]["reason"]
    assert " of the ceiling's files/s" in render(report)
    assert own_sink_folders() == []  # the sink's /dev/shm folder went with it


def test_sink_stores_puts_and_stops_by_pid() -> None:
    with NginxSink.start() as sink:
        body = b"x" * 5000
        put = urllib.request.Request(
            sink.base_url + "/b/k/img.png?X-Amz-Signature=abc", data=body, method="PUT"
        )
        with urllib.request.urlopen(put, timeout=10) as resp:
            assert resp.status == 201
        assert sink.stored() == 1
        assert (sink.root / "data" / "b" / "k" / "img.png").read_bytes() == body
        sink.clear()
        assert sink.stored() == 0
        master, workers = sink.proc.pid, list(sink.workers)
        assert workers and process_cpu_s(workers[0]) >= 0
    assert sink.proc.poll() is not None
    for pid in (master, *workers):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not sink.root.exists()


def test_a_sink_left_by_a_dead_process_is_removed_on_the_next_start() -> None:
    stale = SHM / "ingest-sink-999999999-leftover"  # above any pid_max: no such process
    (stale / "data").mkdir(parents=True, exist_ok=True)
    try:
        with NginxSink.start():
            assert not stale.exists()
    finally:
        shutil.rmtree(stale, ignore_errors=True)
