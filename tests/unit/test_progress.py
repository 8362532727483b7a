"""Progress against the whole manifest (newcomer finding U1): the engine's `Progress` and the
display of it (status lines, the live bar, `--json` stats).

Found by a new user: the bar showed `564/?` with no ETA until reading ended near the finish,
counted rejected items as done and labelled them failed, and on resume counted this run only.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import anyio
import orjson
import pytest

from ingest.cli.report import Reporter, plural
from ingest.clock import FakeClock
from ingest.config import RunSettings
from ingest.engine import Counters, Engine, EngineSettings, Progress, Snapshot
from ingest.journal import Header, Journal
from ingest.manifest import SeekAhead, SkippedFiles, read_manifest
from ingest.pacing import PacerStats
from tests.fakeprovider import FakeProvider, run_engine, write_manifest
from tests.images import make_image

pytestmark = pytest.mark.anyio


def snapshot(
    progress: Progress,
    *,
    counters: Counters | None = None,
    elapsed_s: float = 10.0,
    paused_for: float = 0.0,
    skipped: SkippedFiles | None = None,
) -> Snapshot:
    return Snapshot(
        counters=counters or Counters(),
        total=None if progress.estimated else progress.total,
        elapsed_s=elapsed_s,
        api_pacer=PacerStats(rate=None, throttles=0, paused_for=paused_for),
        reading_done=not progress.estimated and progress.total is not None,
        progress=progress,
        skipped=skipped,
    )


RESUMED = snapshot(
    Progress(done=435, failed=0, rejected=197, total=1010, estimated=True),
    counters=Counters(done=32, skipped=403, rejected=197),
)


class Script:
    """A run's snapshots in order (the last one repeats); `asked` is set at the `until`-th call."""

    def __init__(self, *snaps: Snapshot, until: int) -> None:
        self._snaps = snaps
        self._until = until
        self.calls = 0
        self.asked = anyio.Event()

    def snapshot(self) -> Snapshot:
        snap = self._snaps[min(self.calls, len(self._snaps) - 1)]
        self.calls += 1
        if self.calls == self._until:
            self.asked.set()
        return snap


async def watch(reporter: Reporter, run: Script) -> None:
    """Run `reporter.watch(run)` until it has asked for `run.until` snapshots, then stop it.

    Whatever the display does with that last snapshot it does before its next wait, so
    the output holds it too.
    """
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reporter.watch, run)
            await run.asked.wait()
            tg.cancel_scope.cancel()


# --- the status line ----------------------------------------------------------------------


def test_status_line_shows_the_journal_done_of_the_estimated_total_and_an_eta() -> None:
    line = Reporter("plain").status_line(RESUMED)
    assert line.startswith("done 435/~1010 (3.2 files/s, ")
    assert "failed 0 rejected 197" in line
    # 1010 - 435 done - 197 rejected = 378 left, at 3.2 files/s: 118 s; "~" while estimated
    assert line.endswith(" eta ~1:58")


def test_status_line_once_reading_ended_drops_the_marks() -> None:
    snap = snapshot(
        Progress(done=435, failed=3, rejected=197, total=1010), counters=Counters(done=32)
    )
    line = Reporter("plain").status_line(snap)
    assert line.startswith("done 435/1010 ")
    assert "failed 3 rejected 197" in line
    assert line.endswith(" eta 1:57")


def test_status_line_with_no_total_yet() -> None:
    line = Reporter("plain").status_line(snapshot(Progress(done=5), counters=Counters(done=5)))
    assert line.startswith("done 5/? ") and "eta" not in line


def test_a_short_pause_is_not_shown_as_zero_seconds() -> None:
    snap = snapshot(Progress(done=1, total=2), paused_for=0.3)
    assert " paused 1s" in Reporter("plain").status_line(snap)


async def test_the_first_status_line_waits_for_the_seek_ahead_count() -> None:
    counting = snapshot(Progress(done=0, counting=True))
    counted = snapshot(Progress(done=0, total=1000, estimated=True))
    run = Script(counting, counting, counting, counted, until=4)
    err = io.StringIO()
    await watch(Reporter("plain", interval=0, err=err), run)
    first = err.getvalue().splitlines()[0]
    assert first.startswith("done 0/~1000 "), first


@pytest.mark.parametrize("folder", [True, False])  # a folder's walk, or a shard's members
async def test_a_folders_skipped_files_are_noted_once(folder: bool) -> None:
    skipped = SkippedFiles(files=3, loops=1, examples=("Thumbs.db", "a.txt", "b.txt"))
    run = Script(snapshot(Progress(done=1, total=4), skipped=skipped), until=3)
    err = io.StringIO()
    reporter = Reporter("plain", interval=0, err=err)
    reporter.folder = folder
    await watch(reporter, run)
    assert err.getvalue().count("done 1/4") >= 3
    notes = [line for line in err.getvalue().splitlines() if line.startswith("skipped")]
    where = "folder" if folder else "shard"
    assert notes == [
        f"skipped 3 non-image files (Thumbs.db, a.txt, b.txt), 1 symlinked loop in the {where}"
    ]


# --- the live bar and --json --------------------------------------------------------------


async def test_the_live_bar_shows_done_rejected_and_failed_apart() -> None:
    run = Script(RESUMED, until=2)
    err = io.StringIO()
    await watch(Reporter("live", err=err), run)
    shown = err.getvalue()  # not a terminal: rich renders the last frame when it stops
    assert "435/~1010" in shown
    assert "eta ~1:58" in shown
    assert "failed 0 rejected 197" in shown
    assert "failed 197" not in shown


async def test_json_stats_carry_the_early_total_and_the_journal_done() -> None:
    run = Script(RESUMED, until=2)  # the first is to look for a folder's skipped files
    out = io.StringIO()
    await watch(Reporter("json", interval=0, out=out), run)
    [stats, *_] = (
        e for e in map(orjson.loads, out.getvalue().splitlines()) if e["event"] == "stats"
    )
    assert (stats["total"], stats["total_estimated"], stats["journal_done"]) == (1010, True, 435)
    assert (stats["done"], stats["rejected"], stats["skipped"]) == (32, 197, 403)


def test_plurals() -> None:
    assert [plural(n, "entry") for n in (0, 1, 2)] == ["0 entries", "1 entry", "2 entries"]
    assert [plural(n, "file") for n in (1, 2)] == ["1 file", "2 files"]
    assert plural(1, "key") == "1 key" and plural(2, "key") == "2 keys"
    assert plural(2, "damaged line") == "2 damaged lines"


# --- the engine's Progress ----------------------------------------------------------------


async def test_progress_counts_the_journal_and_the_early_total(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", "png", 200, seed=1)
    manifest = tmp_path / "m.jsonl"
    clock = FakeClock()
    write_manifest(manifest, [{"path": "a.png", "id": f"i{n}"} for n in range(50)])
    first = await run_engine(tmp_path, FakeProvider(clock), manifest, clock)
    assert first.outcome.counters.done == 50

    # The manifest grows by 50 items and 2 missing files; the run resumes it.
    entries = [{"path": "a.png", "id": f"i{n}"} for n in range(100)]
    write_manifest(manifest, [*entries, {"path": "gone.png"}, {"path": "gone2.png"}])
    ahead = SeekAhead(manifest)
    ahead.wait()
    journal, state = Journal.open(
        tmp_path / "journal", Header(provider="fake", manifest=str(manifest))
    )
    with journal:
        engine = Engine(
            FakeProvider(clock),
            journal,
            state,
            EngineSettings(RunSettings()),
            clock=clock,
            rng=random.Random(7),
            ahead=ahead,
        )
        before = engine.snapshot().progress
        await engine.run(read_manifest(manifest))
        after = engine.snapshot().progress
    # Before reading a line: the journal's 50 done, of the seek-ahead's 102 (an estimate).
    assert before == Progress(done=50, failed=0, rejected=0, total=102, estimated=True)
    # At the end: rejected items are not done, and the total is the one read.
    assert after == Progress(done=100, failed=0, rejected=2, total=102, estimated=False)
    assert after.left == 0
