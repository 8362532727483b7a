"""Triage: each manifest entry's verdict from the journal and the local checks, on a fake provider.

Found by review: the old triage returned `(tag, error)` tuples whose first
element was both a tag ("changed", "failed") and an item key, so an item
whose id was "failed" or "changed" and whose file was missing was taken for
a previously-failed or changed item: not journaled `bad`, not counted as
rejected, and the run exited 0 with the item never done.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.clock import FakeClock
from ingest.config import RunSettings
from ingest.errors import Action
from tests.fakeprovider import FakeProvider, refusal, run_engine, write_manifest
from tests.images import make_image

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("key", ["failed", "changed", "bad", "done", "skipped", "plain"])
async def test_an_id_is_only_an_id_a_missing_file_is_rejected(tmp_path: Path, key: str) -> None:
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [{"path": "a.png", "id": "good"}, {"path": "missing.png", "id": key}],
    )
    clock = FakeClock()
    ran = await run_engine(tmp_path, FakeProvider(clock), manifest, clock)
    c = ran.outcome.counters
    assert (c.done, c.rejected, c.failed, c.changed) == (1, 1, 0, 0)
    assert [k for k, _reason in ran.events.rejected] == [key]
    assert ran.events.changed == []
    assert ran.journal.unfinished[key]["s"] == "bad"  # journaled as a rejection, under its key
    assert ran.journal.counts() == {"done": 1, "failed": 0, "rejected": 1, "in_flight": 0}
    assert ran.engine.tally.counts() == ran.journal.counts()


async def test_an_unreadable_line_is_rejected_without_a_key(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", "png", 2_000, seed=1)
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b'{"path": "a.png", "id": "good"}\n{not json\n')
    clock = FakeClock()
    ran = await run_engine(tmp_path, FakeProvider(clock), manifest, clock)
    assert ran.outcome.counters.rejected == 1 and ran.events.rejected[0][0] is None
    assert ran.journal.counts()["rejected"] == 1


# --- a second run over the same journal: the table ---------------------------------------


async def _first_run(tmp_path: Path, case: str) -> Path:
    """Leave the journal in the state `case` names for the item `it`."""
    make_image(tmp_path / "it.png", "png", 2_000, seed=1)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"path": "it.png", "id": "it"}])
    clock = FakeClock()
    finalize = case == "landed"
    provider = FakeProvider(clock, finalize=finalize)
    if case == "failed":
        provider.fail_always("acquire", "it", refusal(Action.FAIL_ITEM, "refused"))
    if case == "landed":  # the bytes land, the finalize call keeps failing: a resume finalizes
        provider.fail_always("finalize", "it", refusal(Action.RETRY, "busy", op="finalize"))
    await run_engine(tmp_path, provider, manifest, clock, run=RunSettings(max_attempts=2))
    if case == "changed":
        make_image(tmp_path / "it.png", "png", 3_000, seed=2)
    if case == "gone":
        (tmp_path / "it.png").unlink()
    return manifest


# case, flag, then what the second run does with the item: (acquires, finalizes, counter, state)
TABLE = [
    ("done", None, 0, 0, "skipped", "done"),
    ("gone", None, 0, 0, "skipped", "done"),
    ("changed", None, 0, 0, "changed", "done"),
    ("changed", "reupload_changed", 1, 0, "done", "done"),
    ("failed", None, 0, 0, "failed", "fail"),
    ("failed", "retry_failed", 1, 0, "done", "done"),
    ("landed", None, 0, 1, "done", "done"),
]


@pytest.mark.parametrize(("case", "flag", "acquires", "finalizes", "counter", "state"), TABLE)
async def test_the_journal_decides_what_a_resume_does(
    tmp_path: Path,
    case: str,
    flag: str | None,
    acquires: int,
    finalizes: int,
    counter: str,
    state: str,
) -> None:
    manifest = await _first_run(tmp_path, case)
    clock = FakeClock()
    provider = FakeProvider(clock, finalize=case == "landed")
    ran = await run_engine(
        tmp_path,
        provider,
        manifest,
        clock,
        retry_failed=flag == "retry_failed",
        reupload_changed=flag == "reupload_changed",
    )
    assert ran.outcome.stop_reason is None
    assert len(provider.calls("acquire")) == acquires
    assert len(provider.calls("transfer")) == acquires
    assert len(provider.calls("finalize")) == finalizes
    assert getattr(ran.outcome.counters, counter) == 1
    assert ran.events.changed == (["it"] if counter == "changed" else [])
    # Every item this run finished is observed, a resumed finalize too (it was not).
    assert ran.events.done == (["it"] if counter == "done" else [])
    final = "done" if ran.journal.is_done("it") else ran.journal.unfinished["it"]["s"]
    assert final == state
    assert ran.engine.tally.counts() == ran.journal.counts()
