"""The converter processes of `--convert`, shared by every `Converter` of this process.

Owns `Process` (one ``python -m ingest.convert_child``-like child and its
two pipes: the frames of `ingest.convert_child`, an original's bytes sent
raw, and the raw converted bytes copied out in `CHUNK`s; and its time
limit, `arm` / `disarm`: a process still working when it runs out is
killed, so a reader waiting on its pipe sees it end, `overdue`; one
runnable then is given until its CPU time reaches the limit, since under
SCHED_IDLE its wait for a CPU is not its own), the one thread that keeps
every process's time limit (`_Watchdog`) and the pool (`take`, `give`,
`drop`, `pids`, `close_all`).

Time limits: one thread for the pool, waiting for the earliest deadline of
the processes armed now, not a `threading.Timer` per `arm` (two a
conversion: each a thread started and cancelled, with the GIL, beside the
uploads' event loop). `disarm` only takes its process off the watch: the
thread may wake for a deadline gone, and looks again. It starts with the
first `arm` and ends with `close_all` (the next `arm` starts it again).

A process its time limit kills may take a while to end: under SCHED_IDLE,
with a normal task on its core, even its exit waits for a CPU (5.3 s seen),
and its pipes close only as it exits. So its pipes are read and written
through `_Pipe`, whose waits the kill ends at once (`Gone`); it is lifted out
of SCHED_IDLE where that is allowed (`_lift`: root or CAP_SYS_NICE; an
unprivileged process may not leave SCHED_IDLE); and a process that ends is
reaped when it has (`_reap`), not waited for, except by `close_all`, for at
most `REAP_S`. Its start-up (the interpreter, Pillow's import: ~0.1 s of CPU)
is timed as a conversion is, for `START_S` (`Process`): a converter that
never says it is ready is killed too.

How it works: a conversion takes an idle process from the pool or starts one
(~0.1 s of CPU: Python and Pillow's import), and gives it back once it has
answered; the settings of a conversion travel with each job, so any process
serves any `Converter`. Processes are shared because they are worth keeping:
a coordinated worker runs an engine (and a `Converter`) per chunk, a library
user runs upload after upload, and a test suite converts in hundreds of
runs. An idle process is taken again only within `REUSE_S` of its last
answer; it ends by itself after `convert_child.IDLE_S` without a job (far
longer, so it never ends as a job reaches it), and when this process ends
(`close_all`, else at its stdin's end). One that dies (`Gone`) is dropped, never given back.

Invariants: a process in the pool is between two jobs (every frame of its
last one read); at most as many processes as conversions ever ran at once
in this process; a forked child of this process starts with an empty pool.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import io
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from ingest import convert_child
from ingest.spool import write_all

CHUNK = 1 << 20  # converted bytes copied from a converter process to the spool at a time
PIPE_BYTES = 1 << 20  # a child's pipes asked to hold this much each (Linux: 64 KiB else)
REUSE_S = 10.0  # an idle process is taken again within this of its last answer
STARVED_FACTOR = 10  # a runnable process's time limit in wall time, at most, times its own
START_S = 10.0  # a new process's time limit until it is ready (`arm`'s rule)
REAP_S = 1.0  # `close_all` waits this long at most for the processes that were ended
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc's CPU time unit
_ROOT = str(Path(__file__).resolve().parent.parent)  # where this `ingest` is imported from
# -P: the working folder is not put first on the path (an `ingest/` there would shadow this
# one); this install's folder is the last resort, so the child imports the same package.
_CHILD = (f"import sys; sys.path.append({_ROOT!r}); "
          "from ingest.convert_child import main; main()")  # fmt: skip


class Gone(Exception):
    """The converter process ended (its pipe closed): the text says how."""


class _Pipe:
    """A child's stdin and stdout, as the frames of `convert_child` read and write them, with
    every wait ended by `wake` (the child was killed: what it has not sent is not coming)."""

    __slots__ = ("_closed", "_in", "_out", "_raw", "_wake", "_waking")

    def __init__(self, to_child: int, from_child: int) -> None:
        self._in, self._out = from_child, to_child
        for fd in (to_child, from_child):  # a read or write takes what the pipe has now
            os.set_blocking(fd, False)
        # The bytes of an image each way in reads and writes of up to a MiB, not 64 KiB (a
        # syscall, a select and a wake of this thread for each); refused past
        # /proc/sys/fs/pipe-max-size (or not Linux): the default stays.
        for fd in (to_child, from_child):
            with contextlib.suppress(AttributeError, OSError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._raw = io.FileIO(from_child, "rb", closefd=False)
        self._wake = os.pipe()
        # `wake` and `close` apart: a stop may come from another thread after the close, when
        # the wake pipe's numbers may be another file's (a byte written there is not ours).
        self._waking, self._closed = threading.Lock(), False

    def read(self, n: int) -> bytes:
        """`n` bytes (a frame), fewer at the pipe's end or once woken."""
        buffer = bytearray(n)
        return bytes(buffer[: self.read_into(memoryview(buffer))])

    def read_into(self, view: memoryview) -> int:
        """`view` filled, or as much of it as came before the pipe's end or the wake (which
        is looked at only when the pipe has nothing to read: no select while bytes flow)."""
        got = 0
        while got < len(view):
            filled = self._raw.readinto(view[got:])  # None: nothing to read now
            if filled is None:
                if self._wake[0] in select.select([self._in, self._wake[0]], [], [])[0]:
                    break
                continue
            if not filled:
                break
            got += filled
        return got

    def write(self, data: bytes) -> None:
        """`data` written; the wake is looked at only when the pipe is full (what a killed
        process is sent is never read: the read that follows sees the wake)."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._out, view) :]
            except BlockingIOError:
                if select.select([self._wake[0]], [self._out], [])[0]:
                    raise BrokenPipeError("the converter process was killed") from None

    def flush(self) -> None:
        pass

    def wake(self) -> None:
        with self._waking, contextlib.suppress(OSError):
            if not self._closed:
                os.write(self._wake[1], b"\0")

    def close(self) -> None:
        with self._waking:
            if self._closed:
                return
            self._closed = True
        for fd in self._wake:
            with contextlib.suppress(OSError):
                os.close(fd)


class Process:
    """One converter process (`ingest.convert_child`) and its two pipes."""

    def __init__(self) -> None:
        """Started, and ready within `START_S` (timed as `arm` times a conversion)."""
        argv = [sys.executable, "-P", "-c", _CHILD]
        # Its own process group (a terminal's Ctrl-C drains the run and must not end the
        # conversions), in the run's session: Linux's autogroup schedules a session as one
        # group, and in a session of its own the child's lower priority would count for nothing.
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            process_group=0,
        )  # fmt: skip
        # Under SCHED_IDLE from its first instruction, not only once its own `lower_priority`
        # runs: the interpreter's start-up and `site` before it are ~0.1 s of CPU, which at
        # a run's start competed with the uploads' (the child's call stays: the fallback).
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(self.proc.pid, os.SCHED_IDLE, os.sched_param(0))
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._files: tuple[IO[bytes], IO[bytes]] = (self.proc.stdin, self.proc.stdout)
        self._pipe = _Pipe(self.proc.stdin.fileno(), self.proc.stdout.fileno())
        self._closed = False
        self._buffer: memoryview | None = None  # `copy`'s
        self._stat = _open_stat(self.pid)  # /proc/PID/stat, read again by `_cpu_s`
        self._watched = False  # armed, and not disarmed since
        self._armed = 0  # which `arm` the watchdog's deadline is
        self._limit = (0.0, 0.0, 0.0)  # `arm`'s seconds, its time, the CPU time it had then
        self._extended = False  # runnable past `arm`'s seconds: timed by its CPU since
        self.spent_s = 0.0  # the last `arm`'s time until `disarm` (CPU time once extended)
        self._timing = threading.Lock()
        self.overdue = False  # killed by its time limit (`arm`)
        self.stopped = False  # killed by `stop`
        self.arm(START_S)
        try:
            ready = self.ask()
        except Gone:
            self.close()
            if not self.disarm():
                raise Gone(f"not ready within {START_S:g} s: it was stopped") from None
            raise
        self.disarm()
        if ready[0] != "ready":
            self.close()
            raise Gone(str(ready[1]))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def arm(self, seconds: float) -> None:
        """Killed (SIGKILL) unless `disarm` comes within `seconds` (a decoder that hangs); past
        them, one still runnable has until its CPU time since reaches `seconds` (within
        `STARVED_FACTOR` times `seconds` of wall time): under
        SCHED_IDLE a converter gets ~0.3 % of a core a normal task wants (weight 3 against
        1024), and wall time alone killed sound conversions on a busy machine."""
        with self._timing:
            self._armed += 1
            now = time.monotonic()
            self._limit = (seconds, now, _cpu_s(self._stat)[0])
            self._extended = False
            self._watched = True
            _watchdog.watch(self, now + seconds, self._armed)

    def disarm(self) -> bool:
        """The time limit off; False if it ran out first (the process was killed)."""
        with self._timing:
            if self._watched:
                self._watched = False
                _watchdog.unwatch(self)
            _, armed_at, cpu_at_arm = self._limit
            self.spent_s = time.monotonic() - armed_at
            if self._extended:
                self.spent_s = _cpu_s(self._stat)[0] - cpu_at_arm
            return not self.overdue

    def out_of_time(self, armed: int) -> None:
        """Its deadline for `arm` number `armed` has passed (`_Watchdog`)."""
        with self._timing:
            if not self._watched or armed != self._armed:  # disarmed as it ran out
                return
            seconds, _, cpu_at_arm = self._limit
            cpu, runnable = _cpu_s(self._stat, self.pid)
            waited = time.monotonic() - self._limit[1]
            # Working, or waiting for a CPU; but no longer than STARVED_FACTOR times the limit
            # (a decoder spinning on a crafted file, on a busy machine, must end too).
            if runnable and cpu - cpu_at_arm < seconds and waited < STARVED_FACTOR * seconds:
                self._extended = True
                left = max(seconds - (cpu - cpu_at_arm), 0.05)
                _watchdog.watch(self, time.monotonic() + left, armed)
                return
            self._watched = False
            self.overdue = True
            _lift(self.pid)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self._pipe.wake()  # the reader and writer: now, not once it has exited

    def stop(self) -> None:
        """Killed now, whatever it is doing (the run is being stopped), its waits ended."""
        self.stopped = True
        _lift(self.pid)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self._pipe.wake()

    def tell(self, *message: Any, raw: bytes = b"") -> None:
        try:
            convert_child.send(self._pipe, message, raw)
        except OSError:  # BrokenPipeError: it ended
            raise Gone(self._ended()) from None

    def copy(self, fd: int | None, length: int) -> OSError | None:
        """The `length` raw bytes after an answer, to `fd` (None: read and dropped); all of
        them are read whatever happens to the writes (the next answer follows), and the
        first write's error is returned."""
        left, error = length, None
        if self._buffer is None:  # kept: fresh pages for each chunk cost ~1 ms a conversion
            self._buffer = memoryview(bytearray(CHUNK))
        while left:
            got = self._pipe.read_into(self._buffer[: min(left, CHUNK)])
            if not got:
                raise Gone(self._ended())
            if fd is not None and error is None:
                try:
                    write_all(fd, self._buffer[:got])
                except OSError as exc:
                    error = exc
            left -= got
        return error

    def ask(self, *message: Any) -> tuple[Any, ...]:
        if message:
            self.tell(*message)
        answer = convert_child.receive(self._pipe)
        if answer is None:
            raise Gone(self._ended())
        return answer

    def _ended(self) -> str:
        if self.overdue or self.stopped:  # this process's kill: it may be slow to act on it
            return "killed by SIGKILL"
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:  # its pipe closed, but it runs on
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            return "killed by SIGKILL"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def close(self) -> None:
        """Its pipes closed and it told to end (SIGTERM: it holds nothing worth an orderly exit,
        which took 0.1-0.2 s of Pillow's and libheif's teardown on a loaded machine), to be
        reaped once it has (`_reap`): it may be waiting for a CPU to exit on."""
        if self._closed:
            return
        self._closed = True
        self._pipe.wake()
        self._pipe.close()
        with self._timing:  # not while `out_of_time` reads it: the number may be reused
            stat, self._stat = self._stat, None
        if stat is not None:
            os.close(stat)
        for pipe in self._files:
            with contextlib.suppress(OSError):
                pipe.close()
        if self.proc.poll() is None:
            _lift(self.pid)
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
        with _lock:
            _ending.append(self.proc)


class _Watchdog:
    """The time limits of every process armed now (`Process.arm`), kept by one thread."""

    def __init__(self) -> None:
        self._deadlines: dict[Process, tuple[float, int]] = {}  # when, and for which `arm`
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._wakes_at = float("inf")  # the deadline the thread waits for

    def watch(self, process: Process, deadline: float, armed: int) -> None:
        """`process.out_of_time(armed)` at `deadline` (monotonic), unless `unwatch`ed first."""
        with self._cond:
            self._deadlines[process] = (deadline, armed)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ingest-convert-watchdog", daemon=True
                )
                self._thread.start()
            elif deadline < self._wakes_at:  # else it wakes in time anyway, no GIL taken now
                self._cond.notify()

    def unwatch(self, process: Process) -> None:
        with self._cond:
            self._deadlines.pop(process, None)

    def close(self) -> None:
        """Its thread ended (the deadlines stay, for the thread the next `watch` starts)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                if self._thread is not me:
                    return
                now = time.monotonic()
                due = [(p, armed) for p, (at, armed) in self._deadlines.items() if at <= now]
                for process, _ in due:
                    del self._deadlines[process]
                if not due:
                    soonest = min((at for at, _ in self._deadlines.values()), default=None)
                    self._wakes_at = float("inf") if soonest is None else soonest
                    self._cond.wait(None if soonest is None else soonest - now)
                    self._wakes_at = float("inf")
                    continue
            for process, armed in due:  # outside the lock: it takes the process's, then this
                process.out_of_time(armed)


def _open_stat(pid: int) -> int | None:
    """/proc/`pid`/stat opened, for `_cpu_s` (None where there is none: not Linux)."""
    try:
        return os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _cpu_s(fd: int | None, pid: int | None = None) -> tuple[float, bool]:
    """The CPU time so far of the process whose /proc/PID/stat is open as `fd`, every thread's
    (utime + stime, man 5 proc), read again from its start (no open and close each time; and
    once the process is gone, an error, never another one's that took its number); with
    `pid`, whether one of its threads is runnable (state R: running, or waiting for a CPU;
    else False: one read, ~24 us, against ~57 with the listing; load 1.6); (0, False) where
    unreadable."""
    try:
        if fd is None:
            return 0.0, False
        fields = os.pread(fd, 1024, 0).rpartition(b")")[2].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        for tid in os.listdir(f"/proc/{pid}/task") if pid is not None else ():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/stat", "rb") as stat:
                if stat.read().rpartition(b")")[2].split()[:1] == [b"R"]:
                    return cpu, True
        return cpu, False
    except (OSError, IndexError, ValueError):
        return 0.0, False


def _lift(pid: int) -> None:
    """`pid`'s threads back under the normal policy, where this process may do that (see the
    module), so that a process being ended gets a CPU to end on."""
    if not hasattr(os, "SCHED_OTHER"):
        return
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))


def _reap(seconds: float = 0.0) -> None:
    """The ended processes that have exited reaped, waiting up to `seconds` in all for them."""
    deadline = time.monotonic() + seconds
    with _lock:
        ending = list(_ending)
    for proc in ending:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(deadline - time.monotonic(), 0))
    with _lock:
        _ending[:] = [proc for proc in _ending if proc.returncode is None]


_idle: list[tuple[float, Process]] = []  # (when it last answered, the process)
_running: set[Process] = set()
_ending: list[subprocess.Popen[bytes]] = []  # told to end (`Process.close`), not yet reaped
_lock = threading.Lock()
_watchdog = _Watchdog()


def take() -> Process:
    """An idle process of the pool, else a new one (`Gone` or `OSError` if it cannot start,
    or was not ready within `START_S`)."""
    _reap()
    stale = []
    found = None
    with _lock:
        while _idle and found is None:
            since, process = _idle.pop()
            # Stopped or overdue: killed, though perhaps not yet exited (a late `stop`).
            killed = process.stopped or process.overdue
            if time.monotonic() - since < REUSE_S and process.proc.poll() is None and not killed:
                found = process
            else:
                stale.append(process)
                _running.discard(process)
    for process in stale:
        process.close()
    if found is not None:
        return found
    process = Process()
    with _lock:
        _running.add(process)
    return process


def give(process: Process) -> None:
    """`process` answered its job: idle, for the next conversion."""
    with _lock:
        if process in _running:
            _idle.append((time.monotonic(), process))


def drop(process: Process) -> None:
    """`process` ended (or cannot be trusted): out of the pool, and gone."""
    with _lock:
        _running.discard(process)
    process.close()


def pids() -> list[int]:
    """The converter processes running now (idle or converting)."""
    with _lock:
        return [process.pid for process in _running]


def busy() -> list[int]:
    """The converter processes converting now."""
    with _lock:
        idle = {process for _, process in _idle}
        return [process.pid for process in _running - idle]


def close_all() -> None:
    """Every process goes now, reaped within `REAP_S` (at exit, and before `ingest run`'s
    `os._exit`: they would end at their stdin's end anyway, but unreaped, their CPU missing
    from the run's; one starved of a CPU is left to end as it can, without the run waiting)."""
    with _lock:
        processes = list(_running)
        _running.clear()
        _idle.clear()
    for process in processes:
        process.close()
    _watchdog.close()
    _reap(REAP_S)


def _after_fork() -> None:
    global _idle, _running, _ending, _lock, _watchdog
    _inherited.append((_idle, _running))  # the parent's: kept, not collected (nor waited for)
    _idle, _running, _ending, _lock = [], set(), [], threading.Lock()
    _watchdog = _Watchdog()  # the parent's thread is not in the child


_inherited: list[tuple[list[tuple[float, Process]], set[Process]]] = []
atexit.register(close_all)
os.register_at_fork(after_in_child=_after_fork)
