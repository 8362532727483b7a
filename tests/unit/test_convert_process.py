"""Conversions in converter processes (`ingest.convert`, `ingest.convert_child`) and when the
lane runs a second one (`ingest.engine.lane`): a process that dies is its item's failure and the
next image gets a new one; no converter outlives a SIGKILLed run (test_spool); a second
conversion starts only while the upload workers have nothing queued; a converter process runs
under SCHED_IDLE."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import anyio
import pytest
from PIL import Image

from ingest import convert_pool
from ingest.clock import FakeClock
from ingest.convert import Converter
from ingest.engine.lane import Lane
from ingest.engine.triage import Redo
from ingest.engine.triage import source_of as source_of_
from ingest.errors import TransferError
from ingest.item import Item, Source
from ingest.preparing import Preparer
from ingest.sniff import ImageType
from tests.unit.test_convert import NOVITA, picture, save, source_of


def test_a_converter_process_killed_mid_conversion_fails_that_item_and_the_next_converts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bmp = source_of(save(tmp_path / "a.bmp", picture(), "BMP"))
    converter = Converter(NOVITA, provider="novita", workers=1)
    take = converter.budget.take
    killed: list[int] = []

    def kill(n: int) -> None:  # the process has read the header and waits for "go"
        (pid,) = convert_pool.busy()
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        take(n)

    try:
        assert anyio.run(converter.convert, bmp).image_type is ImageType.JPEG
        monkeypatch.setattr(converter.budget, "take", kill)
        with pytest.raises(TransferError) as raised:
            anyio.run(converter.convert, bmp)
        assert raised.value.code == "convert_failed"
        assert raised.value.message == (
            f"cannot convert bmp: its converter process ended (killed by SIGKILL): {bmp.item.where}"
        )
        assert killed[0] not in convert_pool.pids() and converter.budget.in_use == 0
        monkeypatch.setattr(converter.budget, "take", take)
        assert anyio.run(converter.convert, bmp).image_type is ImageType.JPEG
    finally:
        converter.close()
    assert convert_pool.busy() == []


def test_converter_processes_are_shared_by_converters_and_serve_each_ones_settings(
    tmp_path: Path,
) -> None:
    big = source_of(save(tmp_path / "big.bmp", picture((400, 100)), "BMP"))
    sizes, running = [], []
    for side in (100, 0, 50):  # one after the other: the first one's process serves all three
        converter = Converter(NOVITA, provider="novita", workers=1, max_side=side)
        try:
            out = anyio.run(converter.convert, big)
            with Image.open(out.item.path) as im:
                sizes.append(im.size)
        finally:
            converter.close()
        running.append(convert_pool.pids())
    assert sizes == [(100, 25), (400, 100), (50, 13)]
    assert running[0] == running[1] == running[2] and convert_pool.busy() == []


class HeldConversions:
    """A preparer whose conversions wait until the test lets them go; it counts them at once."""

    def __init__(self) -> None:
        self.converter = self  # the lane asks its converter for `workers` and `needs`
        self.workers = 2
        self.running = self.most = 0
        self.at = {1: anyio.Event(), 2: anyio.Event()}  # set when that many run at once
        self.go = anyio.Event()

    def needs(self, source: Source) -> bool:
        return True

    async def source(self, source: Source) -> Source:
        self.running += 1
        self.most = max(self.most, self.running)
        self.at[self.running].set()
        try:
            await self.go.wait()
        finally:
            self.running -= 1
        return source


class PollCounter(FakeClock):
    """A fake clock that says when a task has slept (looked and waited) `enough` times."""

    def __init__(self, enough: int) -> None:
        super().__init__()
        self.left, self.enough = enough, anyio.Event()

    async def sleep(self, seconds: float) -> None:
        self.left -= 1
        if self.left <= 0:
            self.enough.set()
        await super().sleep(seconds)


def bmp(name: str) -> Source:
    return Source(Item(key=name, path=Path(name), line=1), 10, 0, ImageType.BMP)


def test_a_second_conversion_starts_only_while_the_uploads_have_nothing_queued() -> None:
    async def scenario() -> None:
        clock = PollCounter(enough=5)
        held = HeldConversions()
        lane = Lane(cast(Preparer, held), lambda *_: None, lambda: False, clock)
        uploads, taken = anyio.create_memory_object_stream[Source | Redo](4)
        uploads.send_nowait(bmp("queued-for-upload.png"))  # the upload workers have work
        for n in range(3):
            lane.queue.send_nowait(bmp(f"{n}.bmp"))
        lane.queue.close()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg, taken:
                for _ in range(lane.workers):
                    tg.start_soon(lane.run, lane.receive.clone(), uploads.clone())
                lane.receive.close()
                uploads.close()
                # One converts at once; the other looks at the uploads' queue, again and again.
                await held.at[1].wait()
                await clock.enough.wait()
                assert (held.running, held.most) == (1, 1)
                assert source_of_(taken.receive_nowait()).item.key == "queued-for-upload.png"
                await held.at[2].wait()  # the uploads wait for work: both convert
                held.go.set()
                done = sorted([source_of_(await taken.receive()).item.key for _ in range(3)])
        assert done == ["0.bmp", "1.bmp", "2.bmp"] and held.most == 2

    anyio.run(scenario)


def test_ingest_run_reaps_its_converter_processes_before_its_quick_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ingest run` leaves with `os._exit` (no atexit): its converters must be reaped first, or
    their CPU is missing from the run's (GNU time, the benchmarks) and init reaps them."""
    from ingest.cli import main as cli

    converter = Converter(NOVITA, provider="novita", workers=1)
    try:
        anyio.run(converter.convert, source_of(save(tmp_path / "a.bmp", picture(), "BMP")))
    finally:
        converter.close()
    running = [p for _, p in convert_pool._idle]
    assert running and all(p.proc.returncode is None for p in running)

    def leave(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(cli, "main", lambda argv: 0)
    monkeypatch.setattr(os, "_exit", leave)
    monkeypatch.setattr(sys, "argv", ["ingest", "run", "x"])
    with pytest.raises(SystemExit):
        cli.entry()
    assert convert_pool.pids() == [] and all(p.proc.returncode is not None for p in running)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_a_converter_process_runs_under_sched_idle(tmp_path: Path) -> None:
    """Under SCHED_IDLE a waking upload preempts a conversion at once (`convert_child`); set
    before the first import, so every thread the process has (and libheif starts) has it."""
    heic = source_of(save(tmp_path / "a.heic", picture(), "HEIF"))
    converter = Converter(NOVITA, provider="novita", workers=1)
    try:
        assert anyio.run(converter.convert, heic).image_type is ImageType.JPEG
        pids = convert_pool.pids()
        policies = set()
        for tid in (int(t) for pid in pids for t in os.listdir(f"/proc/{pid}/task")):
            with contextlib.suppress(ProcessLookupError):  # a decoder thread that just ended
                policies.add(os.sched_getscheduler(tid))
    finally:
        converter.close()
    assert pids and policies == {os.SCHED_IDLE} and os.sched_getscheduler(0) == os.SCHED_OTHER


# A converter that hangs as a decoder might: it reads the job, answers the header, then waits
# forever (test-only: the pool's child command line, monkeypatched below).
HANGS = (
    f"import sys; sys.path.append({convert_pool._ROOT!r})\n"
    "from ingest import convert_child as c\n"
    "c.send(sys.stdout.buffer, ('ready',)); c.receive(sys.stdin.buffer)\n"
    "c.send(sys.stdout.buffer, ('need', 48, 32, 4096)); sys.stdin.buffer.read()"
)


def test_a_conversion_past_convert_timeout_s_fails_its_item_and_the_next_converts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bmp = source_of(save(tmp_path / "a.bmp", picture(), "BMP"))
    convert_pool.close_all()  # the next process is a new one: the hanging child
    monkeypatch.setattr(convert_pool, "_CHILD", HANGS)
    converter = Converter(NOVITA, provider="novita", workers=1, timeout_s=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(TransferError) as raised:
            anyio.run(converter.convert, bmp)
        assert time.monotonic() - started < 10
        assert raised.value.code == "convert_failed"
        assert raised.value.message == (
            "cannot convert bmp: still converting after convert_timeout_s (0.2 s): its converter "
            f"process was stopped: {bmp.item.where}"
        )
        assert convert_pool.pids() == [] and converter.budget.in_use == 0
        monkeypatch.undo()
        assert anyio.run(converter.convert, bmp).image_type is ImageType.JPEG
    finally:
        converter.close()


# A normal-priority process that keeps one CPU busy for a while (in this session, so the
# converter's SCHED_IDLE counts against it within one autogroup), then ends by itself.
HOG = (
    "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nprint(flush=True)\n"
    "while time.monotonic() < end: pass"
)


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="Linux's schedstat")
def test_a_conversion_waiting_for_a_cpu_is_not_past_convert_timeout_s(tmp_path: Path) -> None:
    """Under SCHED_IDLE a converter gets next to no CPU while a normal task wants its core (a
    build, a training job): that wait is not the conversion's time (`convert_pool.Process.arm`);
    the limit is for a decoder that hangs, and killed starved ones on a busy machine."""
    bmp = source_of(save(tmp_path / "a.bmp", picture(), "BMP"))
    converter = Converter(NOVITA, provider="novita", workers=1, timeout_s=0.2)
    cpu = min(os.sched_getaffinity(0))
    try:
        assert anyio.run(converter.convert, bmp).image_type is ImageType.JPEG  # started, idle
        (pid,) = convert_pool.pids()
        os.sched_setaffinity(pid, {cpu})
        hog = subprocess.Popen(
            [sys.executable, "-c", HOG, "0.5"],
            stdout=subprocess.PIPE,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        assert hog.stdout is not None and hog.stdout.readline() == b"\n"  # it spins from now
        try:
            assert anyio.run(converter.convert, bmp).image_type is ImageType.JPEG
        finally:
            hog.kill()
            hog.wait()
            hog.stdout.close()
    finally:
        converter.close()


# A converter that spins as a decoder might on a crafted file, on one CPU under SCHED_IDLE.
SPINS = (
    f"import os, sys; sys.path.append({convert_pool._ROOT!r})\n"
    "from ingest import convert_child as c\n"
    "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
    "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
    "c.send(sys.stdout.buffer, ('ready',)); c.receive(sys.stdin.buffer)\n"
    "c.send(sys.stdout.buffer, ('need', 48, 32, 4096)); c.receive(sys.stdin.buffer)\n"
    "while True: pass"
)


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="Linux's schedstat")
def test_a_starved_converter_that_spins_is_stopped_within_ten_times_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runnable converter is timed by its CPU (`Process.arm`), but not for ever: one that
    spins while a normal task holds its core is stopped within STARVED_FACTOR x the limit,
    and its item fails then, while the hog still runs: the SIGKILLed child exits only when it
    gets a CPU (5.3 s seen, its pipes closing only then), which the run no longer waits for.
    Not lifted out of SCHED_IDLE here (`_lift`), as an unprivileged run cannot."""
    bmp = source_of(save(tmp_path / "a.bmp", picture(), "BMP"))
    cpu = min(os.sched_getaffinity(0))
    convert_pool.close_all()  # the next process is a new one: the spinning child
    monkeypatch.setattr(convert_pool, "_CHILD", SPINS.replace("sys.argv[1]", str(cpu)))
    monkeypatch.setattr(convert_pool, "_lift", lambda pid: None)
    converter = Converter(NOVITA, provider="novita", workers=1, timeout_s=0.05)
    convert_pool.give(convert_pool.take())  # started (and pinned) before the hog, idle
    (process,) = [p for _, p in convert_pool._idle]
    hog = subprocess.Popen(
        [sys.executable, "-c", HOG, "5"],
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    try:
        assert hog.stdout is not None and hog.stdout.readline() == b"\n"  # it spins from now
        started = time.monotonic()
        with pytest.raises(TransferError) as raised:
            anyio.run(converter.convert, bmp)
        assert "still converting after convert_timeout_s" in raised.value.message
        assert time.monotonic() - started < 2.5  # 10 x 0.05 s; the hog's 5 s without the bound
        assert hog.poll() is None  # told while the hog runs, not when it let the child exit
    finally:
        hog.kill()
        hog.wait()
        if hog.stdout is not None:
            hog.stdout.close()
        converter.close()
    convert_pool.close_all()  # it has a CPU now: reaped within REAP_S
    assert process.proc.returncode == -signal.SIGKILL and convert_pool._ending == []


def test_a_converter_process_not_ready_within_start_s_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A converter's start-up (the interpreter, Pillow's import) had no time limit: one that
    never said it was ready held its image, and the run's end, for as long as it took."""
    bmp = source_of(save(tmp_path / "a.bmp", picture(), "BMP"))
    convert_pool.close_all()  # the next process is a new one: the silent child
    monkeypatch.setattr(convert_pool, "_CHILD", "import time; time.sleep(5)")
    monkeypatch.setattr(convert_pool, "START_S", 0.2)
    converter = Converter(NOVITA, provider="novita", workers=1)
    try:
        started = time.monotonic()
        with pytest.raises(TransferError) as raised:
            anyio.run(converter.convert, bmp)
        assert time.monotonic() - started < 4  # at most 10 x 0.2 s; its 5 s of sleep without
        assert raised.value.message == (
            "cannot convert bmp: no converter process could start (not ready within 0.2 s: "
            f"it was stopped): {bmp.item.where}"
        )
        assert convert_pool.pids() == []
    finally:
        converter.close()
        convert_pool.close_all()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_a_process_being_ended_is_lifted_out_of_sched_idle_where_allowed() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        os.sched_setscheduler(sleeper.pid, os.SCHED_IDLE, os.sched_param(0))
        convert_pool._lift(sleeper.pid)
        lifted = os.sched_getscheduler(sleeper.pid)
        try:  # what this process may do: leave SCHED_IDLE (root, CAP_SYS_NICE) or not
            os.sched_setscheduler(sleeper.pid, os.SCHED_IDLE, os.sched_param(0))
            os.sched_setscheduler(sleeper.pid, os.SCHED_OTHER, os.sched_param(0))
            allowed = True
        except PermissionError:
            allowed = False
        assert lifted == (os.SCHED_OTHER if allowed else os.SCHED_IDLE)
    finally:
        sleeper.kill()
        sleeper.wait()


class Converting:
    """A preparer that only converts, as the engine's does for what the lane takes."""

    def __init__(self, converter: Converter) -> None:
        self.converter = converter

    async def source(self, source: Source) -> Source:
        return await self.converter.convert(source)


def test_an_aborted_run_stops_its_conversions_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An abort (a second Ctrl-C, `run.abort()`) cancels the lane, but anyio waits for the
    conversion's thread: a run held its end until convert_timeout_s (13.5 s of 15 seen).
    The conversion's process is stopped now, and its item is not failed (the next run's)."""
    bmp = source_of(save(tmp_path / "a.bmp", picture(), "BMP"))
    convert_pool.close_all()  # the next process is a new one: the hanging child
    monkeypatch.setattr(convert_pool, "_CHILD", HANGS)
    converter = Converter(NOVITA, provider="novita", workers=1, timeout_s=5)
    failed: list[object] = []
    ask = convert_pool.Process.ask
    begun = anyio.Event()

    def asked(process: convert_pool.Process, *message: object) -> tuple[object, ...]:
        if message and message[0] == "go":  # its header read: the decode "runs" from now
            anyio.from_thread.run_sync(begun.set)
        return ask(process, *message)

    monkeypatch.setattr(convert_pool.Process, "ask", asked)
    monkeypatch.setattr("ingest.engine.lane.STOP_GRACE_S", 0.05)

    async def scenario() -> float:
        lane = Lane(cast(Preparer, Converting(converter)), lambda *a: failed.append(a), bool)
        uploads, taken = anyio.create_memory_object_stream[Source | Redo](4)
        with lane.queue:
            lane.queue.send_nowait(bmp)
        async with anyio.create_task_group() as tg, uploads, taken:
            tg.start_soon(lane.run, lane.receive.clone(), uploads.clone())
            lane.receive.close()
            await begun.wait()
            started = time.monotonic()
            tg.cancel_scope.cancel()
        return time.monotonic() - started

    try:
        took = anyio.run(scenario)
    finally:
        converter.close()
    assert took < 2  # the 5 s of convert_timeout_s without the stop
    assert failed == [] and convert_pool.pids() == []
