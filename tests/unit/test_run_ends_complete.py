"""A run stopped after its last entry was done is complete: it says so, and exits 0.

Found at a stop: a re-run of a complete journal whose output closed at once
(`ingest run … --json | head -1`) drained before reading its manifest, so it
said "60 done per the journal" with no total and exited 141 ("run the same
command to resume", which would do nothing); a Ctrl-C that came after the last
item said "run again to resume" too. A drain now still reads on while the
entries it meets were done before (it starts nothing), and the exit code asks
the journal (README, exit codes).
"""

from __future__ import annotations

import io

import orjson
import pytest

from ingest.api import Result, StopReason
from ingest.cli.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_OUTPUT_CLOSED
from ingest.cli.report import Reporter
from ingest.cli.run import exit_code
from ingest.engine import Progress
from tests.unit.test_api import result


def test_a_closed_pipe_after_the_whole_manifest_was_read_done_exits_0_with_the_total() -> None:
    # What the drained re-run now returns (test_engine_bookkeeping: it reads on through skips).
    err = io.StringIO()
    reporter = Reporter("quiet", err=err)
    reporter.output.closed = True
    assert exit_code(result(60, 0, skipped=60, drained=True), reporter) == EXIT_OK
    assert "ingest: its output was closed; 60 of 60 done: the run is complete" in err.getvalue()


def test_a_closed_pipe_with_work_left_exits_141() -> None:
    err = io.StringIO()
    reporter = Reporter("quiet", err=err)
    reporter.output.closed = True
    assert exit_code(result(3, 0, skipped=2, read_all=False, drained=True), reporter) == (
        EXIT_OUTPUT_CLOSED
    )
    assert "stopped because its output was closed; 2 done per the journal" in err.getvalue()


@pytest.mark.parametrize(
    "outcome",
    [
        result(3, 1, skipped=2, drained=True),  # Ctrl-C during the last item: it finished
        result(3, 3, stop=StopReason.INTERRUPTED),  # Ctrl-C twice, after the last one
    ],
)
def test_an_interrupted_run_that_finished_every_item_is_complete(outcome: Result) -> None:
    err = io.StringIO()
    assert exit_code(outcome, Reporter("quiet", err=err), interrupted=True) == EXIT_OK
    assert "interrupted, but 3 of 3 done: the run is complete" in err.getvalue()
    assert "resume" not in err.getvalue()


def test_an_interrupted_run_with_work_left_says_how_far_it_got() -> None:
    err = io.StringIO()
    outcome = result(3, 1, skipped=1, drained=True)
    assert exit_code(outcome, Reporter("quiet", err=err), interrupted=True) == EXIT_INTERRUPTED
    assert "run the same command again to resume (2 of 3 done so far)" in err.getvalue()


def test_an_interrupted_run_counts_done_failed_and_pending_against_the_count_ahead() -> None:
    # Ctrl-C / SIGTERM before reading ended: no total of its own, so the summary had none
    # ("26 done, 0 failed, 0 rejected, 3 unfinished"); it counts against the count ahead now.
    outcome = result(40, 26, failed=2, rejected=1, in_flight=3, read_all=False, drained=True)
    counted = Progress(done=26, failed=2, rejected=1, total=300, estimated=True)
    err = io.StringIO()
    reporter = Reporter("plain", err=err)
    reporter.summary(outcome, counted)
    assert exit_code(outcome, reporter, interrupted=True, progress=counted) == EXIT_INTERRUPTED
    lines = err.getvalue().splitlines()
    assert lines[2].endswith(": 26 done of ~300, 2 failed, 1 rejected, 271 pending (3 unfinished)")
    assert lines[-1] == "interrupted; run the same command again to resume (26 of ~300 done so far)"
    events = io.StringIO()
    Reporter("json", out=events).summary(outcome, counted)
    summary = orjson.loads(events.getvalue())
    assert (summary["total"], summary["total_estimated"], summary["done"]) == (300, True, 26)
