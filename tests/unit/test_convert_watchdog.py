"""The converter processes' time limits are kept by one thread (`ingest.convert_pool._Watchdog`).

Found in a py-spy --gil profile of `ingest run --convert`: a `threading.Timer` per `arm`, two a
conversion, each a thread started and cancelled beside the uploads' event loop, were most of
the 14 % of samples the conversion threads held the GIL for. Here: conversions start no
thread, the one thread still stops a process past its deadline (an earlier deadline armed
after a later one too), it is gone after `close_all`, and a process that exits with a
process still armed does not hang on it. And an original sent as bytes (a shard's member, a
fetched file) goes raw after its job's frame, not pickled: the process stays in step.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from ingest import convert_pool
from ingest.convert import Converter
from ingest.errors import TransferError
from ingest.sniff import ImageType
from tests.unit.test_convert import NOVITA, picture, save, source_of

WATCHDOG = "ingest-convert-watchdog"


def watchdogs() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == WATCHDOG]


def test_conversions_start_no_thread_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = [source_of(save(tmp_path / f"{n}.bmp", picture(seed=n), "BMP")) for n in range(12)]
    converter = Converter(NOVITA, provider="novita", workers=1)
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    async def scenario() -> None:
        await converter.convert(sources[0])  # the process, anyio's worker and the watchdog
        monkeypatch.setattr(threading.Thread, "start", counted)
        for source in sources[1:]:
            await converter.convert(source)

    try:
        anyio.run(scenario)
    finally:
        converter.close()
        monkeypatch.undo()
    assert started == []  # the old code: two Timers a conversion, 22 here
    assert len(watchdogs()) == 1
    convert_pool.close_all()
    assert watchdogs() == []


@pytest.mark.timeout(60)  # a deadline missed: its read would wait for ever
def test_an_earlier_deadline_armed_after_a_later_one_still_stops_its_process() -> None:
    """The watchdog waits for the earliest deadline: one armed while it waits for a later one,
    or for none, wakes it. Each process, idle after ``ready``, is not runnable: killed at its
    deadline; its read ends then (`Gone`): observed, not slept for."""
    convert_pool.close_all()
    late, early = convert_pool.Process(), convert_pool.Process()
    again = None
    try:
        late.arm(60)
        early.arm(0.2)
        with pytest.raises(convert_pool.Gone, match="killed by SIGKILL"):
            early.ask()
        assert early.overdue and not late.overdue
        assert early.disarm() is False and late.disarm() is True
        assert late.proc.poll() is None
        late.arm(0.1)  # the watchdog waits for late's 60 s, disarmed
        with pytest.raises(convert_pool.Gone):
            late.ask()
        assert late.overdue and late.disarm() is False
        again = convert_pool.Process()  # armed (START_S) while the watchdog waits for nothing
        again.arm(0.1)
        with pytest.raises(convert_pool.Gone):
            again.ask()
        assert again.overdue
    finally:
        for process in (late, early, again):
            if process is not None:
                process.close()
        convert_pool.close_all()
    assert watchdogs() == []


EXITS_ARMED = (
    f"import sys; sys.path.append({convert_pool._ROOT!r})\n"
    "from ingest import convert_pool\n"
    "convert_pool.Process().arm(600); print('armed', flush=True)"
)


def test_a_process_that_ends_with_a_conversion_armed_exits_at_once() -> None:
    """atexit's `close_all` ends the watchdog's wait (600 s here) and the converter."""
    done = subprocess.run(
        [sys.executable, "-c", EXITS_ARMED], capture_output=True, timeout=60, check=True
    )
    assert done.stdout == b"armed\n"


def test_an_original_sent_as_bytes_converts_and_its_process_stays_in_step(tmp_path: Path) -> None:
    path = save(tmp_path / "a.bmp", picture(), "BMP")
    source = source_of(path)
    whole = dataclasses.replace(source, body=path.read_bytes())  # as a member's bytes are sent
    short = dataclasses.replace(source, body=path.read_bytes()[:-10])  # changed since checked
    convert_pool.close_all()  # the test's process is the pool's only one
    converter = Converter(NOVITA, provider="novita", workers=1)
    try:
        assert anyio.run(converter.convert, whole).image_type is ImageType.JPEG
        (pid,) = convert_pool.pids()
        with pytest.raises(TransferError, match="the file changed since it was checked"):
            anyio.run(converter.convert, short)
        assert anyio.run(converter.convert, whole).image_type is ImageType.JPEG
        assert anyio.run(converter.convert, source).image_type is ImageType.JPEG  # its path
    finally:
        converter.close()
    assert convert_pool.pids() == [pid]  # one process served all four
