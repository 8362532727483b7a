"""A coordinated worker's last line says plainly what it did: a worker that joined a run
already done said "12 of 12 done … (this worker: 0 done in 0 chunks, 0 API calls)", and one
stopped mid-chunk "508 done in 0 chunks" (closing note 5, noticed, not fixed)."""

from __future__ import annotations

import pytest

from ingest.cli.summary import worker_summary
from ingest.coord.record import Counts
from ingest.coord.worker import WorkerResult
from ingest.engine import Counters, StopReason


def ended(
    counts: Counts,
    *,
    done: int = 0,
    calls: int = 0,
    chunks: int = 0,
    stop: StopReason | None = None,
) -> WorkerResult:
    mine = Counters(done=done, api_calls=calls)
    return WorkerResult("novita-photos", 508, counts, mine, chunks, 0, False, stop_reason=stop)


@pytest.mark.parametrize(
    ("result", "line"),
    [
        (ended(Counts(508, 0, 0)), "run 'novita-photos': the run was already done: 508 items"),
        (
            ended(Counts(500, 6, 2)),
            "run 'novita-photos' had already ended: 500 of 508 done, 6 failed, 2 rejected "
            "(this worker took no chunk)",
        ),
        (
            ended(Counts(100, 0, 0), stop=StopReason.INTERRUPTED),
            "run 'novita-photos': 100 of 508 done, 0 failed, 0 rejected (this worker took no chunk)",
        ),
        (
            ended(Counts(508, 0, 0), done=508, calls=508, stop=StopReason.INTERRUPTED),
            "run 'novita-photos': 508 of 508 done, 0 failed, 0 rejected "
            "(this worker: 508 done, no chunk finished, 508 API calls)",
        ),
        (
            ended(Counts(508, 0, 0), done=300, calls=300, chunks=1),
            "run 'novita-photos': 508 of 508 done, 0 failed, 0 rejected "
            "(this worker: 300 done in 1 chunk, 300 API calls)",
        ),
    ],
)
def test_a_workers_last_line_says_what_it_did(result: WorkerResult, line: str) -> None:
    assert worker_summary(result) == line
