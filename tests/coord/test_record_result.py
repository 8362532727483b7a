"""A coordinated run's `Result`: `journal` is None (the record is the coordinator's), and the
CLI's summary names the run instead of printing an empty journal path."""

from __future__ import annotations

import io

import orjson

from ingest.cli.report import Reporter
from ingest.coord.front import _result
from ingest.coord.record import Counts
from ingest.coord.worker import WorkerResult
from ingest.engine.outcomes import Counters

WORKER = WorkerResult("photos", 3, Counts(3, 0, 0), Counters(read=2, done=2), 1, 0, False)


def test_a_coordinated_result_has_no_journal_and_its_summary_names_the_run() -> None:
    result = _result(WORKER, 1.0, drained=False)
    assert result.journal is None and result.run_name == "photos" and result.complete
    plain, err = io.StringIO(), io.StringIO()
    Reporter("plain", out=plain, err=err).summary(result)
    shown = plain.getvalue() + err.getvalue()
    assert "run 'photos': 3 done of 3, 0 failed" in shown and "journal" not in shown
    events = io.StringIO()
    Reporter("json", out=events).summary(result)
    assert orjson.loads(events.getvalue())["journal"] is None
