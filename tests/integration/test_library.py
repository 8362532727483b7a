"""The library front door end to end: `ingest.upload`, `upload_sync` and `open_upload`.

Every run uploads to the in-process emulator (`sim=True`) inside the test's
own event loop, as a notebook or a web app would: no subprocess, no signal
handler, nothing printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anyio
import orjson
import pytest

import ingest
from ingest.api.preview import dry_run
from ingest.api.wiring import default_journal, prepare
from ingest.errors import Action, JournalMismatch
from ingest.item import Source
from ingest.journal import records
from ingest.providers import PROVIDER_NAMES
from ingest.providers.base import Landed, Provider, Target
from ingest.sim import SimSettings
from tests.images import make_dataset, write_jsonl_manifest

EXAMPLE = Path(__file__).parents[2] / "examples" / "library.py"
SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What each provider needs to run (Scenario attaches to a model; the emulator makes it).
NEEDS: dict[str, dict[str, Any]] = {"scenario": {"model_id": "model_library"}}


def manifest_of(tmp: Path, n: int, seed: int = 0) -> Path:
    paths = make_dataset(tmp / "images", n, min_size=512, max_size=8192, seed=seed)
    return write_jsonl_manifest(paths, tmp / "manifest.jsonl")


class Recorder(ingest.Observer):
    """Counts events and checks, at each one, that no signal handler was installed."""

    def __init__(self, on_done: Callable[[int], None] | None = None) -> None:
        self.done = 0
        self.rejected: list[str | None] = []
        self.handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}
        self.changed_handlers: list[object] = []
        self.on_done = on_done

    def item_done(self, done: ingest.ItemDone) -> None:
        self.done += 1
        now = {sig: signal.getsignal(sig) for sig in SIGNALS}
        if now != self.handlers:
            self.changed_handlers.append(now)
        if self.on_done is not None:
            self.on_done(self.done)

    def item_rejected(self, key: str | None, err: ingest.ManifestError) -> None:
        self.rejected.append(key)


def test_asyncio_run_of_upload_gets_50_done_with_no_signal_handler(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 50)
    recorders: list[Recorder] = []
    after: list[dict[signal.Signals, object]] = []

    async def main() -> ingest.Result:
        # Inside the loop: asyncio.run has installed its own SIGINT handler by now.
        recorders.append(Recorder())
        result = await ingest.upload(
            manifest, provider="novita", sim=True, journal=tmp_path / "j", observer=recorders[0]
        )
        after.append({sig: signal.getsignal(sig) for sig in SIGNALS})
        return result

    result = asyncio.run(main())
    assert (result.done, result.total, result.failed, result.rejected) == (50, 50, 0, 0)
    assert result.complete and result.stop_reason is None and not result.drained
    assert result.journal == (tmp_path / "j").resolve()
    assert recorders[0].done == 50
    assert recorders[0].changed_handlers == []  # none while it ran
    assert after == [recorders[0].handlers]  # none left behind


def test_upload_sync_gets_50_done_and_a_resume_counts_the_journal(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 50)
    first = ingest.upload_sync(manifest, provider="novita", sim=True, put_concurrency=4)
    assert first.complete and first.done == 50 and first.this_run.done == 50
    again = ingest.upload_sync(manifest, provider="novita", sim=True)
    # The journal's counts, not this run's: nothing was uploaded, everything is done.
    assert again.complete and again.done == 50
    assert again.this_run.done == 0 and again.this_run.skipped == 50
    assert again.journal == first.journal == manifest.with_name("manifest.jsonl.novita.journal")
    # What `ingest status` and `ingest export` print, from the library.
    status = ingest.status(again.journal)
    assert (status.done, status.total, status.complete) == (50, 50, True)
    rows = list(ingest.export(again.journal))
    assert [row["key"] for row in rows] == [f"item-{i:06d}" for i in range(50)]


@pytest.mark.anyio
async def test_upload_inside_a_running_loop(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 12)
    result = await ingest.upload(manifest, provider="novita", sim=True)
    assert result.complete and result.done == 12


@pytest.mark.anyio
async def test_upload_sync_refuses_inside_a_running_loop(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 1)
    with pytest.raises(RuntimeError, match=r"await ingest\.upload"):
        ingest.upload_sync(manifest, provider="novita", sim=True)
    assert not manifest.with_name("manifest.jsonl.novita.journal").exists()


@pytest.mark.anyio
@pytest.mark.parametrize("provider", PROVIDER_NAMES)
async def test_every_provider_through_the_library(provider: str, tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 9, seed=3)
    result = await ingest.upload(manifest, provider=provider, sim=True, **NEEDS.get(provider, {}))
    assert result.complete, result
    assert (result.done, result.total) == (9, 9)


@pytest.mark.anyio
async def test_errors_are_raised_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = manifest_of(tmp_path, 3)
    journal = tmp_path / "j"
    with pytest.raises(ingest.ManifestError, match="not found"):
        await ingest.upload(tmp_path / "missing.jsonl", provider="novita", sim=True)
    with pytest.raises(ingest.ConfigError, match="put_concurency") as bad_key:
        await ingest.upload(
            manifest, provider="novita", sim=True, put_concurency=4, journal=journal
        )
    assert "bogus" not in str(bad_key.value)
    with pytest.raises(ingest.ConfigError, match="bogus, put_concurency"):
        await ingest.upload(manifest, provider="novita", sim=True, put_concurency=4, bogus=1)
    with pytest.raises(ingest.ConfigError, match="unknown provider"):
        await ingest.upload(manifest, provider="nonesuch", sim=True)
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    with pytest.raises(ingest.ConfigError, match="NOVITA_API_KEY"):
        await ingest.upload(manifest, provider="novita", journal=journal)
    assert not journal.exists()  # nothing above got as far as the journal
    # A journal written for another provider is refused and left as it was.
    assert (await ingest.upload(manifest, provider="novita", sim=True, journal=journal)).complete
    written = journal.read_bytes()
    with pytest.raises(JournalMismatch, match="novita"):
        await ingest.upload(
            manifest, provider="scenario", sim=True, journal=journal, model_id="model_library"
        )
    assert journal.read_bytes() == written


@pytest.mark.anyio
async def test_a_bad_key_is_a_stopped_result_not_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = manifest_of(tmp_path, 5)
    monkeypatch.setenv("NOVITA_API_KEY", "sk-wrong")
    sim = SimSettings(api_keys=frozenset({"sk-right"}))
    result = await ingest.upload(manifest, provider="novita", sim=sim)
    assert result.stop_reason is ingest.StopReason.PROVIDER
    assert result.stop_message is not None and "sk-wrong" not in result.stop_message
    assert result.done == 0 and not result.complete


@pytest.mark.anyio
async def test_abort_and_drain_end_the_run_with_a_result(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 50)
    handle: list[ingest.Upload] = []
    recorder = Recorder(on_done=lambda done: handle[0].abort() if done == 3 else None)
    run = ingest.open_upload(
        manifest, provider="novita", sim=True, observer=recorder, put_concurrency=2, lookahead=1
    )
    handle.append(run)
    async with run:
        aborted = await run.wait()
    assert aborted.stop_reason is ingest.StopReason.INTERRUPTED
    assert 3 <= aborted.done < 50 and not aborted.complete
    assert run.result is aborted

    recorder = Recorder(on_done=lambda done: handle[1].drain() if done == 2 else None)
    run = ingest.open_upload(
        manifest, provider="novita", sim=True, observer=recorder, put_concurrency=2, lookahead=1
    )
    handle.append(run)
    async with run:
        assert run.resumed and run.already_done == aborted.done
        drained = await run.wait()
    assert drained.drained and drained.stop_reason is None and not drained.complete
    assert drained.in_flight == 0 and drained.failed == 0
    assert aborted.done < drained.done < 50
    # The rest, on resume.
    final = await ingest.upload(manifest, provider="novita", sim=True)
    assert final.complete and final.this_run.skipped == drained.done


@pytest.mark.anyio
async def test_leaving_the_block_by_an_error_aborts_and_releases_the_journal(
    tmp_path: Path,
) -> None:
    manifest = manifest_of(tmp_path, 30)
    run = ingest.open_upload(manifest, provider="novita", sim=True, put_concurrency=2)

    async def fail_inside() -> None:
        async with run:
            assert run.snapshot().counters.done < 30
            raise LookupError("the caller's own error")

    with pytest.raises(LookupError, match="the caller's own"):
        await fail_inside()
    result = run.result
    assert result is not None and result.stop_reason is ingest.StopReason.INTERRUPTED
    # Aborted before the engine's task began: nothing was uploaded.
    assert result.this_run.done < 30 and result.done < 30
    # The lock was released and what was recorded is intact: a resume finishes the job.
    final = await ingest.upload(manifest, provider="novita", sim=True)
    assert final.complete and final.done == 30


@pytest.mark.anyio
async def test_abort_at_once_uploads_nothing(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 30)
    async with ingest.open_upload(manifest, provider="novita", sim=True) as run:
        run.abort()
        result = await run.wait()
    assert result.stop_reason is ingest.StopReason.INTERRUPTED
    assert result.this_run.done == 0 and result.done == 0 and not result.complete


@pytest.mark.anyio
async def test_rejected_entries_are_observed_and_counted(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 4)
    with manifest.open("a") as fh:
        fh.write('{"path": "missing.png", "id": "gone"}\n')
    recorder = Recorder()
    result = await ingest.upload(manifest, provider="novita", sim=True, observer=recorder)
    assert recorder.rejected == ["gone"]
    assert (result.done, result.rejected, result.total) == (4, 1, 5)
    assert not result.complete and result.not_done == 1


@pytest.mark.anyio
async def test_a_cancelled_caller_stops_the_run_and_releases_the_journal(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 40)
    with anyio.CancelScope() as scope:
        recorder = Recorder(on_done=lambda done: scope.cancel() if done == 2 else None)
        await ingest.upload(
            manifest, provider="novita", sim=True, observer=recorder, put_concurrency=2
        )
    assert scope.cancelled_caught
    final = await ingest.upload(manifest, provider="novita", sim=True)
    assert final.complete and 2 <= final.this_run.skipped < 40


@pytest.mark.anyio
async def test_snapshots_follow_the_run_to_its_end_and_a_handle_runs_once(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 20)
    run = ingest.open_upload(manifest, provider="novita", sim=True, put_concurrency=4)
    with pytest.raises(RuntimeError, match="not open"):
        run.snapshot()
    async with run:
        done = [snap.counters.done async for snap in run.snapshots(every=0.01)]
        result = await run.wait()
    assert done == sorted(done) and done[-1] == 20 == result.done
    with pytest.raises(RuntimeError, match="runs once"):
        await run.__aenter__()


def test_the_readme_example_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOVITA_API_KEY"}  # sim: no key needed
    journal = tmp_path / "example.journal"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(journal)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "12 of 12 done, stop reason None" in done.stdout
    assert done.stdout.count("done    shape-") == 12
    assert f"journal {journal}: 12 done over 1 run(s)" in done.stdout
    assert ingest.status(journal).complete


def test_dry_run_names_each_fate_and_needs_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = manifest_of(tmp_path, 3)
    with manifest.open("a") as fh:
        fh.write('{"path": "missing.png", "id": "gone"}\n')
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    plan = prepare(manifest, provider="novita", keys="none")
    assert [p.fate for p in dry_run(plan)] == ["upload"] * 3 + ["reject"]
    ingest.upload_sync(manifest, provider="novita", sim=True)
    planned = list(dry_run(plan))
    assert [(p.fate, p.key) for p in planned[:3]] == [("skip", f"item-{i:06d}") for i in range(3)]
    assert planned[3].error is not None and "missing.png" in str(planned[3].error)


def test_dry_run_agrees_with_the_run_on_changed_and_failed_items(tmp_path: Path) -> None:
    """Found by review: the dry run kept its own triage and showed these as "upload"."""
    manifest = manifest_of(tmp_path, 3)
    journal = tmp_path / "run.journal"
    assert ingest.upload_sync(manifest, provider="novita", sim=True, journal=journal).complete
    changed = sorted((tmp_path / "images").iterdir())[0]
    changed.write_bytes(changed.read_bytes() + b"\0")
    refused = records.failed("item-000002", 3, Action.FAIL_ITEM, "too_large", "refused")
    with journal.open("ab") as fh:
        fh.write(orjson.dumps(refused) + b"\n")
    plan = prepare(manifest, provider="novita", journal=journal, keys="none")
    assert [p.fate for p in dry_run(plan)] == ["changed", "skip", "failed"]
    again = dry_run(plan, retry_failed=True, reupload_changed=True)
    assert [p.fate for p in again] == ["upload", "skip", "upload"]
    # What the run then does, item by item, is what the dry run said.
    result = ingest.upload_sync(manifest, provider="novita", sim=True, journal=journal)
    assert (result.this_run.changed, result.this_run.skipped, result.this_run.failed) == (1, 1, 1)


def test_dry_run_shows_an_item_whose_bytes_landed_as_finalize_only(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 2)
    journal = tmp_path / "run.journal"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text(lines[0])
    assert ingest.upload_sync(manifest, provider="modelhunter", sim=True, journal=journal).complete
    manifest.write_text("".join(lines))
    landed = sorted((tmp_path / "images").iterdir())[1].stat()
    up = records.uploaded("item-000001", "file_x", landed.st_size, landed.st_mtime_ns)
    with journal.open("ab") as fh:
        fh.write(orjson.dumps(up) + b"\n")
    plan = prepare(manifest, provider="modelhunter", journal=journal, keys="none")
    assert [p.fate for p in dry_run(plan)] == ["skip", "finalize"]


@pytest.mark.anyio
async def test_no_repr_or_str_holds_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = "sk-live-SENTINEL-0123456789"
    monkeypatch.setenv("NOVITA_API_KEY", sentinel)
    manifest = manifest_of(tmp_path, 3)
    run = ingest.open_upload(manifest, provider="novita", sim=True)
    assert run.plan.secrets["api_key_env"] == sentinel  # the key is there, only never shown
    async with run:
        result = await run.wait()
    plan = run.plan
    shown = [plan, run, result, plan.settings, plan.run, plan.provider_settings, result.this_run]
    for value in shown:
        for text in (repr(value), str(value)):
            assert sentinel not in text, type(value).__name__


class Breaks:
    """An adapter whose every acquire raises `error` (not a `TransferError`: not a stop)."""

    name: ClassVar[str] = "novita"

    def __init__(self, inner: Provider, error: Exception) -> None:
        self.inner, self.caps, self.error = inner, inner.caps, error

    async def acquire(self, source: Source) -> Target:
        raise self.error

    async def transfer(self, source: Source, target: Target) -> Target:
        return await self.inner.transfer(source, target)

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | ingest.TransferError]:
        return await self.inner.finalize(batch)

    def landed(self, source: Source, target: Target) -> Landed:
        return self.inner.landed(source, target)


@pytest.mark.anyio
async def test_an_error_inside_the_engine_reaches_the_caller_as_itself(tmp_path: Path) -> None:
    manifest = manifest_of(tmp_path, 3)
    error = ingest.JournalError("the journal went away")
    run = ingest.open_upload(
        manifest, provider="novita", sim=True, wrap=lambda inner: Breaks(inner, error)
    )
    with pytest.raises(ingest.JournalError) as raised:
        async with run:
            await run.wait()
    assert raised.value is error  # not an ExceptionGroup around it


def test_ingest_run_reports_an_error_inside_the_engine_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.cli import run as cli_run
    from ingest.cli.main import build_parser

    manifest = manifest_of(tmp_path, 3)
    opened = ingest.open_upload

    def broken(*args: Any, **kwargs: Any) -> ingest.Upload:
        error = ingest.JournalError("the journal went away")
        return opened(*args, **kwargs, wrap=lambda inner: Breaks(inner, error))

    monkeypatch.setattr("ingest.api.open_upload", broken)
    args = build_parser().parse_args(
        ["run", str(manifest), "--provider", "novita", "--sim", "--quiet"]
    )
    assert cli_run.run(args) == cli_run.EXIT_USAGE
    err = capsys.readouterr().err
    assert "ingest: error: the journal went away" in err and "Traceback" not in err


@pytest.mark.anyio
async def test_an_entry_removed_from_the_manifest_leaves_the_resume_complete(
    tmp_path: Path,
) -> None:
    manifest = manifest_of(tmp_path, 3)
    journal = tmp_path / "run.journal"
    first = await ingest.upload(manifest, provider="novita", sim=True, journal=journal)
    assert first.complete
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:2]))
    again = await ingest.upload(manifest, provider="novita", sim=True, journal=journal)
    assert again.this_run.skipped == 2 and again.not_done == 0
    assert again.complete  # it was not: the journal's 3 done against a total of 2


def test_a_file_changed_since_upload_exits_1_and_says_how_to_upload_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingest.cli import run as cli_run
    from ingest.cli.main import build_parser

    manifest = manifest_of(tmp_path, 3)
    argv = ["run", str(manifest), "--provider", "novita", "--sim", "--quiet"]
    assert cli_run.run(build_parser().parse_args(argv)) == cli_run.EXIT_OK
    changed = sorted((tmp_path / "images").iterdir())[0]
    changed.write_bytes(changed.read_bytes() + b"\0")  # a new size: changed since upload
    capsys.readouterr()
    assert cli_run.run(build_parser().parse_args(argv)) == cli_run.EXIT_FAILED
    err = capsys.readouterr().err
    assert "1 file changed since upload; run with --reupload-changed to upload it again" in err
    assert "not uploaded" not in err
    assert ": 3 done of 3 (1 changed since upload), 0 failed" in err  # why "3 of 3" exits 1
    journal = default_journal(manifest, "novita")
    kept = ingest.status(journal)  # as the run: not complete, and the same way out
    assert (kept.done, kept.changed, kept.complete) == (3, 1, False)
    assert kept.next_steps()[-1].startswith("1 file changed since upload, as the latest run found")
    from ingest.cli.main import main

    capsys.readouterr()
    assert main(["export", str(journal)]) == 0
    assert "ingest: warning: 1 file changed since upload" in capsys.readouterr().err
    again = [*argv, "--reupload-changed"]
    assert cli_run.run(build_parser().parse_args(again)) == cli_run.EXIT_OK
    after = ingest.status(journal)
    assert (after.done, after.changed, after.complete) == (3, 0, True)
