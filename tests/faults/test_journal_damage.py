"""The journal under damage: torn tails, damage in the middle, a full disk, two runs, compaction.

- A record cut at any byte resumes (unit: every offset of the last group-commit
  batch; whole runs: a torn tail appended to a real journal).
- Damage before the last line is a clear error naming the line, and
  `ingest repair` keeps every intact record; the same command then finishes.
- A full disk (a real tmpfs where it can be mounted; a file size limit
  everywhere) stops the run cleanly, exit 3, with the journal still readable.
- A second run on a journal in use is refused; a kill during compaction
  loses nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from ingest.errors import Action, JournalCorrupt, JournalError
from ingest.journal import Header, Journal, repair, replay
from ingest.journal.records import Record, acquired, completed, failed, run_started
from tests.images import make_dataset, write_jsonl_manifest
from tests.simproc import SimProcess, run_ingest, sim_process
from tests.torture import (
    config,
    done_records,
    in_flight_at_kill,
    ingest_repair,
    journal_records,
    popen_ingest,
    spec,
    verify_run,
)

NOVITA = spec("novita")
HEADER = Header(provider="novita", manifest="/data/m.jsonl", created=1.0)

# --- unit: a cut at every byte of the last batch ------------------------------------------


def test_a_cut_at_every_byte_of_the_last_batch_resumes(tmp_path: Path) -> None:
    """A group commit writes several records at once; a kill can cut it anywhere."""
    path = tmp_path / "j"
    first: list[Record] = [
        run_started(0.0, 1),
        *(completed(f"a{i}", str(i), 1, 1) for i in range(5)),
    ]
    batch: list[Record] = [
        acquired("b0", "10"),
        completed("a9", "9", 12, 3),
        failed("b1", 7, Action.FAIL_ITEM, "x", "bad"),
    ]
    journal, _ = Journal.open(path, HEADER)
    with journal:
        for rec in first:
            journal.record(rec)
    whole = path.read_bytes()
    tail = b"".join(orjson.dumps(rec) + b"\n" for rec in batch)
    for cut in range(len(tail) + 1):
        path.write_bytes(whole + tail[:cut])
        complete = tail[:cut].count(b"\n")
        state = replay(path)
        assert state.torn_tail == (cut != 0 and not tail[:cut].endswith(b"\n"))
        assert state.records == len(first) + complete
        assert state.is_done("a9") == (complete >= 2)
        assert ("b0" in state.unfinished) == (complete >= 1)
        journal, again = Journal.open(path, HEADER)  # cuts the torn bytes, then appends
        with journal:
            journal.record(completed("b0", "10", 1, 1))
        after = replay(path)
        assert not after.torn_tail and after.is_done("b0")
        assert set(after.done) >= set(again.done)


def test_a_write_on_a_full_disk_stops_further_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j"
    journal, _ = Journal.open(path, HEADER)
    seen: list[JournalError] = []
    journal.on_error = seen.append
    journal.record(completed("a", "1", 1, 1))
    real_write = os.write
    written = [0]

    def full(fd: int, data: bytes | memoryview) -> int:
        if fd != journal._fd:  # only the journal's disk is full
            return real_write(fd, data)
        if written[0] == 0:
            written[0] = real_write(fd, bytes(data[:7]))  # a partial write, then nothing
            return written[0]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    journal.record(completed("b", "2", 1, 1))
    monkeypatch.undo()
    assert journal.error is not None and "the disk is full" in str(journal.error)
    assert seen == [journal.error]
    with pytest.raises(JournalError, match="disk is full"):
        journal.record(completed("c", "3", 1, 1))
    journal.close()
    state = replay(path)  # still readable: the partial record is a torn tail
    assert state.is_done("a") and not state.is_done("b") and state.torn_tail


# --- whole runs --------------------------------------------------------------------------


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return make_dataset(tmp_path / "images", 120, min_size=512, max_size=16 * 1024, seed=111)


def kill_after(proc: subprocess.Popen[str], journal: Path, done: int) -> None:
    """SIGKILL `proc` once the journal records `done` items (or it ended)."""
    try:
        while proc.poll() is None and done_records(journal) < done:
            time.sleep(0.005)  # watching another process
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)


def partial_run(sim: SimProcess, manifest: Path, settings: Path, done: int) -> Path:
    journal = NOVITA.journal(manifest)
    args = NOVITA.run_args(manifest, sim, "--quiet", "--config", str(settings))
    proc = popen_ingest(args, env=NOVITA.env(), stdout=subprocess.DEVNULL)
    kill_after(proc, journal, done)
    return journal


def test_torn_last_line_resumes(tmp_path: Path, images: list[Path]) -> None:
    manifest = write_jsonl_manifest(images, tmp_path / "manifest.jsonl")
    settings = config(tmp_path / "ingest.toml", put_concurrency=4)
    with sim_process("--faults", "seed=17,put.latency=0.05") as sim:
        journal = partial_run(sim, manifest, settings, 30)
        with journal.open("ab") as fh:
            fh.write(b'{"s":"done","k":"item-000119","r":"1000')  # a write cut short
        assert replay(journal).torn_tail
        done = run_ingest(
            NOVITA.run_args(manifest, sim, "--config", str(settings)), env=NOVITA.env()
        )
        assert done.returncode == 0, done.stderr
        verdict = verify_run(NOVITA, sim, images, journal)
    assert verdict.lost == 0
    assert not replay(journal).torn_tail


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "garbage": lambda line: b"#\xff\xfe not json at all\n",
    "nul-run": lambda line: b"\x00" * 40 + b"\n",
    "merged": lambda line: line.rstrip(b"\n"),  # its newline lost: merged with the next
    "truncated": lambda line: line[: len(line) // 2] + b"\n",
    # Valid JSON, but no record the schema knows (a kind this version never writes).
    "unknown-kind": lambda line: orjson.dumps({**orjson.loads(line), "s": "don"}) + b"\n",
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damage_in_the_middle_is_named_and_repair_keeps_every_intact_record(
    tmp_path: Path, images: list[Path], kind: str
) -> None:
    manifest = write_jsonl_manifest(images, tmp_path / "manifest.jsonl")
    settings = config(tmp_path / "ingest.toml", put_concurrency=4)
    with sim_process("--faults", "seed=18,put.latency=0.05") as sim:
        journal = partial_run(sim, manifest, settings, 40)
        _pid, in_flight = in_flight_at_kill(journal)  # may land twice, damage or not
        lines = journal.read_bytes().splitlines(keepends=True)
        if not lines[-1].endswith(b"\n"):
            lines.pop()  # the kill tore the last record: leave that case to the test above
        victim = len(lines) // 2  # 0-based; its line number is victim + 1
        intact = [orjson.loads(line) for i, line in enumerate(lines) if i not in (0, victim)]
        if kind == "merged":
            intact.remove(orjson.loads(lines[victim + 1]))  # lost with it
        lines[victim] = DAMAGE[kind](lines[victim])
        journal.write_bytes(b"".join(lines))
        damaged = journal.read_bytes()

        args = NOVITA.run_args(manifest, sim, "--config", str(settings))
        refused = run_ingest(args, env=NOVITA.env())
        assert refused.returncode == 2, refused.stderr
        assert f"{journal}:{victim + 1}:" in refused.stderr
        assert "ingest repair" in refused.stderr
        status = run_ingest(["status", str(journal)], env=NOVITA.env())
        assert status.returncode == 2 and f":{victim + 1}:" in status.stderr

        fixed = ingest_repair(journal)
        assert fixed.returncode == 0, fixed.stderr
        assert f"{journal}:{victim + 1}:" in fixed.stdout
        assert journal.with_name(journal.name + ".damaged").read_bytes() == damaged
        assert list(journal_records(journal)) == intact  # every intact record, in order
        assert ingest_repair(journal).stdout.count("nothing to repair") == 1

        resumed = run_ingest(args, env=NOVITA.env())
        assert resumed.returncode == 0, resumed.stderr
        verdict = verify_run(NOVITA, sim, images, journal)
    assert verdict.lost == 0
    # At most the items the kill caught in flight and those whose records were dropped.
    assert verdict.duplicates <= in_flight + 2


def test_repair_refuses_a_damaged_header_and_a_journal_in_use(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, _ = Journal.open(path, HEADER)
    journal.record(completed("a", "1", 1, 1))
    with pytest.raises(Exception, match="in use by another ingest run"):
        repair(path)
    journal.close()
    assert repair(path).dropped == ()
    path.write_bytes(b'{"journal":"ingest-jour\n' + path.read_bytes().split(b"\n", 1)[1])
    with pytest.raises(JournalCorrupt, match="header is damaged"):
        repair(path)
    out = ingest_repair(path)
    assert out.returncode == 2 and ":1: the header is damaged" in out.stderr


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal, _ = Journal.open(path, HEADER)
    with journal:
        for i in range(3):
            journal.record(completed(f"k{i}", str(i), 1, 1))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b"oops\n"
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    out = ingest_repair(path, "--dry-run")
    assert out.returncode == 0 and "would be dropped" in out.stdout
    assert path.read_bytes() == before
    assert not path.with_name("j.damaged").exists()


# --- a full disk -------------------------------------------------------------------------

_LIMITED = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "limit = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
    "from ingest.cli.main import main; sys.exit(main(sys.argv[2:]))"
)


def test_file_size_limit_while_journaling_stops_cleanly_then_resume(
    tmp_path: Path, images: list[Path]
) -> None:
    """RLIMIT_FSIZE makes every write past the limit fail with EFBIG: a full disk anywhere."""
    manifest = write_jsonl_manifest(images, tmp_path / "manifest.jsonl")
    journal = NOVITA.journal(manifest)
    settings = config(tmp_path / "ingest.toml", put_concurrency=4)
    with sim_process() as sim:
        args = NOVITA.run_args(manifest, sim, "--plain", "--config", str(settings))
        too_small = subprocess.run(
            [sys.executable, "-c", _LIMITED, "20", *args],
            env=NOVITA.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # Out of room at the journal's opening is 3, as mid-run below (fixes8a; was 2).
        assert too_small.returncode == 3, too_small.stderr
        assert "Traceback" not in too_small.stderr
        assert "ingest: stopped: cannot" in too_small.stderr
        assert "file size limit" in too_small.stderr and str(journal) in too_small.stderr
        assert sim.objects() == []  # nothing was uploaded without a journal

        full = subprocess.run(
            [sys.executable, "-c", _LIMITED, "4000", *args],
            env=NOVITA.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert full.returncode == 3, full.stderr
        assert "Traceback" not in full.stderr
        assert "stopped: cannot write" in full.stderr and "file size limit" in full.stderr
        status = run_ingest(["status", str(journal), "--json"], env=NOVITA.env())
        assert status.returncode == 0, status.stderr  # still readable
        _pid, in_flight = in_flight_at_kill(journal)
        landed_before = len(sim.objects())
        assert 0 < landed_before < len(images)
        resumed = run_ingest(args, env=NOVITA.env())
        assert resumed.returncode == 0, resumed.stderr
        verdict = verify_run(NOVITA, sim, images, journal)
    assert verdict.lost == 0
    assert verdict.duplicates <= in_flight


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_full_disk_while_journaling_stops_cleanly_then_resume(
    tmp_path: Path, images: list[Path]
) -> None:
    """A real ENOSPC: the journal on a 16 KiB tmpfs."""
    manifest = write_jsonl_manifest(images, tmp_path / "manifest.jsonl")
    settings = config(tmp_path / "ingest.toml", put_concurrency=4)
    with tiny_tmpfs(tmp_path / "disk", "16k") as disk, sim_process() as sim:

        def args(journal: Path) -> list[str]:
            flags = ("--plain", "--config", str(settings), "--journal", str(journal))
            return NOVITA.run_args(manifest, sim, *flags)

        journal = disk / "run.journal"
        full = run_ingest(args(journal), env=NOVITA.env())
        assert full.returncode == 3, full.stderr
        assert "Traceback" not in full.stderr
        assert "stopped: cannot write" in full.stderr and "the disk is full" in full.stderr
        # "uploaded N files" above "M done" is explained, never left bare (K6).
        uploaded = re.search(r"uploaded (\d+) files?", full.stderr)
        done = re.search(r": (\d+) done", full.stderr)
        assert uploaded is not None and done is not None, full.stderr
        lost = int(uploaded[1]) - int(done[1])
        assert ("uploaded but not journaled" in full.stderr) == (lost > 0), full.stderr
        assert run_ingest(["status", str(journal)], env=NOVITA.env()).returncode == 0
        _pid, in_flight = in_flight_at_kill(journal)
        moved = tmp_path / "run.journal"  # room again: the user frees space (here: moves it)
        moved.write_bytes(journal.read_bytes())
        resumed = run_ingest(args(moved), env=NOVITA.env())
        assert resumed.returncode == 0, resumed.stderr
        verdict = verify_run(NOVITA, sim, images, moved)
    assert verdict.lost == 0
    assert verdict.duplicates <= in_flight


# --- one run at a time, compaction -------------------------------------------------------


def test_a_second_run_on_a_journal_in_use_is_refused(tmp_path: Path, images: list[Path]) -> None:
    images = images[:30]
    manifest = write_jsonl_manifest(images, tmp_path / "manifest.jsonl")
    journal = NOVITA.journal(manifest)
    settings = config(tmp_path / "ingest.toml", put_concurrency=2)
    with sim_process("--faults", "seed=19,put.latency=0.1") as sim:
        args = NOVITA.run_args(manifest, sim, "--quiet", "--config", str(settings))
        first = popen_ingest(args, env=NOVITA.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            while done_records(journal) < 1:
                assert first.poll() is None
                time.sleep(0.01)  # watching another process
            # Frozen (its lock held) while the second run tries: however slowly the second
            # process starts, the first cannot have finished and released the journal.
            first.send_signal(signal.SIGSTOP)
            try:
                second = run_ingest(args, env=NOVITA.env())
            finally:
                first.send_signal(signal.SIGCONT)
        finally:
            _out, err = first.communicate(timeout=120)
        assert second.returncode == 2
        assert f"in use by another ingest run (pid {first.pid})" in second.stderr
        assert first.returncode == 0, err
        verdict = verify_run(NOVITA, sim, images, journal)
    assert verdict.lost == verdict.duplicates == 0


@pytest.mark.slow
def test_kills_during_compaction_lose_nothing(tmp_path: Path, images: list[Path]) -> None:
    manifest = write_jsonl_manifest(images, tmp_path / "manifest.jsonl")
    journal = NOVITA.journal(manifest)
    with sim_process() as sim:
        args = NOVITA.run_args(manifest, sim, "--quiet")
        first = run_ingest(args, env=NOVITA.env())
        assert first.returncode == 0, first.stderr
        # Bloat it with repeats of its own records: the next open must compact.
        lines = journal.read_bytes().splitlines(keepends=True)
        body = b"".join(lines[1:])
        with journal.open("ab") as fh:
            for _ in range(150_000 // len(lines)):
                fh.write(body)
        expected = replay(journal)
        bloated = journal.read_bytes()
        scratch = journal.with_name(journal.name + ".compact")
        rng = random.Random(5)
        kills = mid_rewrite = 0
        for _ in range(3):
            journal.write_bytes(bloated)  # as big as ever, whatever the last kill left
            scratch.unlink(missing_ok=True)
            proc = popen_ingest(args, env=NOVITA.env(), stdout=subprocess.DEVNULL)
            try:
                while proc.poll() is None and not scratch.exists():
                    time.sleep(0.001)  # watching for the compaction's temporary file
                time.sleep(rng.uniform(0.0, 0.01))  # somewhere in the rewrite
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
            finally:
                proc.wait(timeout=60)
            mid_rewrite += journal.stat().st_size == len(bloated)  # the rename had not happened
            state = replay(journal)
            assert state.done == expected.done and state.unfinished == expected.unfinished
        assert kills == 3 and mid_rewrite >= 1
        last = run_ingest(args, env=NOVITA.env())
        assert last.returncode == 0, last.stderr
        assert journal.stat().st_size < len(bloated) / 100  # compacted at last
        assert replay(journal).done == expected.done
        assert len(sim.objects()) == len(images)  # nothing uploaded again
