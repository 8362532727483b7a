"""A closed output asks for a resume only when something is left.

The line at the close said "run the same command to resume" before the run had ended;
a run that then finished every entry said "the run is complete" after it, the two at odds.
"""

from __future__ import annotations

import io

from ingest.cli.exits import EXIT_OK, EXIT_OUTPUT_CLOSED
from ingest.cli.report import Reporter
from ingest.cli.run import exit_code
from tests.unit.test_api import result
from tests.unit.test_report_pipe import Gone


def closed() -> tuple[Reporter, io.StringIO]:
    err = io.StringIO()
    reporter = Reporter("json", out=Gone(), err=err)
    reporter.event("note", message="m")  # EPIPE: the output closes
    assert reporter.output.closed and "stdout was closed" in err.getvalue()
    return reporter, err


def test_a_run_complete_after_its_output_closed_says_no_resume() -> None:
    reporter, err = closed()
    assert exit_code(result(3, 3), reporter) == EXIT_OK
    assert "the run is complete" in err.getvalue() and "resume" not in err.getvalue()


def test_a_run_with_work_left_after_its_output_closed_says_resume_once() -> None:
    reporter, err = closed()
    left = result(3, 1, read_all=False, drained=True)
    assert exit_code(left, reporter) == EXIT_OUTPUT_CLOSED
    assert err.getvalue().count("run the same command to resume") == 1
