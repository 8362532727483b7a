"""A closed output pipe (`ingest run … --json | head -n N`): a clean stop, never a false exit 0.

Real `ingest run` processes against `ingest sim` in its own process. The
test reads N lines of the run's stdout (or none of its stderr, in `--plain`
mode), then closes its end of the pipe, as `head` does. The run must then
drain: no traceback, one line on stderr saying why it stopped, exit 141
unless the journal says every item is done (then 0), and a journal that
agrees with the emulator; the same command then finishes the job with no
item landing twice. The old code exited 0 with nothing uploaded (`head -1`)
or died with an ExceptionGroup of BrokenPipeErrors (`head -n 50`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import pytest

from tests.images import make_dataset, write_jsonl_manifest
from tests.simproc import ingest_cmd, run_ingest, sim_process
from tests.torture import spec, verify_run

NOVITA = spec("novita")
EXIT_OUTPUT_CLOSED = 141
ITEMS = 300


@pytest.mark.parametrize(
    ("stream", "lines"), [("stdout", 1), ("stdout", 50), ("stderr", 0)], ids=str
)
def test_a_closed_pipe_stops_the_run_cleanly(
    tmp_path: Path, stream: Literal["stdout", "stderr"], lines: int
) -> None:
    paths = make_dataset(tmp_path / "images", ITEMS, min_size=512, max_size=4 * 1024, seed=401)
    manifest = write_jsonl_manifest(paths, tmp_path / "manifest.jsonl")
    journal = NOVITA.journal(manifest)
    # PUTs take 25-75 ms, two at a time: the run lasts seconds, so the pipe closes mid-run.
    with sim_process("--faults", "seed=3,put.latency=0.05") as sim:
        flags = ["--json"] if stream == "stdout" else ["--plain", "--status-interval-s", "0.05"]
        args = [*NOVITA.run_args(manifest, sim, *flags), "--put-concurrency", "2"]
        with tempfile.TemporaryFile("w+") as other:
            proc = subprocess.Popen(
                ingest_cmd(*args),
                env=NOVITA.env(),
                text=True,
                stdout=subprocess.PIPE if stream == "stdout" else other,
                stderr=subprocess.PIPE if stream == "stderr" else other,
            )
            pipe = proc.stdout if stream == "stdout" else proc.stderr
            assert pipe is not None
            for _ in range(lines):
                assert pipe.readline(), "the run ended before its output was closed"
            pipe.close()
            code = proc.wait(timeout=120)
            other.seek(0)
            text = other.read()
        assert "Traceback" not in text and "Error" not in text.replace("BrokenPipeError", ""), text
        status = run_ingest(["status", str(journal), "--json"], env=NOVITA.env())
        info = json.loads(status.stdout)
        complete = info["done"] == ITEMS and info["complete"]
        assert code == (0 if complete else EXIT_OUTPUT_CLOSED), (code, info, text)
        if stream == "stdout":
            assert "ingest: stdout was closed" in text
            if not complete:
                assert "stopped because its output was closed" in text
        assert info["failed"] == 0 and info["in_flight"] == 0  # drained: nothing left mid-way
        resumed = run_ingest([*NOVITA.run_args(manifest, sim, "--quiet")], env=NOVITA.env())
        assert resumed.returncode == 0, resumed.stderr
        verdict = verify_run(NOVITA, sim, paths, journal)
    assert verdict.lost == verdict.duplicates == 0
    assert verdict.status["done"] == ITEMS
