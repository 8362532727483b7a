"""Where a measured client's CPU goes while it runs, sampled from /proc: its event loop's thread,
its other threads, and its child processes (`--convert`'s converters).

`Sampler(pid)` polls every `interval` seconds from a thread until `stop()`:
the client is `pid`, or its one child when `pid` is GNU time's (the
benchmark's runner measures peak RSS through it). Each `Sample` is the
wall-clock time and cumulative CPU seconds of the client's main thread (the
event loop), of its other threads together, and of every child process it
has started (a child that has ended keeps its last reading), with the RSS of
the client and its children together, and the time the main thread was
runnable but waited for a CPU (its schedstat: a loop starved of CPU, by
the converters or by the machine's other load, shows there). Linux only (``/proc/PID/task/TID/children``);
CPU counts in clock ticks (10 ms).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # time.time(), as the ``--json`` events' ``t``
    main_s: float
    threads_s: float
    children_s: float
    rss_bytes: int
    main_wait_s: float  # the main thread's time runnable but waiting for a CPU (schedstat)


def _cpu(stat: Path) -> float:
    """utime + stime of a /proc stat file, in seconds."""
    text = stat.read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _rss(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():  # a child is listed under its forking thread
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


class Sampler:
    """See the module."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.root, self.interval = pid, interval
        self.samples: list[Sample] = []
        self.converters: set[int] = set()
        self._children: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join()
        return self.samples

    def _client(self) -> int | None:
        try:
            if Path(f"/proc/{self.root}/comm").read_text().strip() != "time":
                return self.root
            kids = _children(self.root)
        except OSError:
            return None
        return kids[0] if kids else None

    def _run(self) -> None:
        client = None
        while not self._stop.is_set():
            try:
                client = client or self._client()
                if client is not None:
                    self.samples.append(self._sample(client))
            except (OSError, ValueError, IndexError):  # it ended between two reads
                pass
            self._stop.wait(self.interval)

    def _sample(self, client: int) -> Sample:
        now = time.time()
        whole = _cpu(Path(f"/proc/{client}/stat"))
        main = _cpu(Path(f"/proc/{client}/task/{client}/stat"))
        rss = _rss(client)
        waited = int(Path(f"/proc/{client}/task/{client}/schedstat").read_text().split()[1]) / 1e9
        for kid in _children(client):
            try:
                self._children[kid] = _cpu(Path(f"/proc/{kid}/stat"))
                rss += _rss(kid)
                self.converters.add(kid)
            except (OSError, ValueError, IndexError):
                continue
        return Sample(now, main, whole - main, sum(self._children.values()), rss, waited)


def span(
    samples: list[Sample], series: str, low: float = 0.01, high: float = 0.99
) -> dict[str, float] | None:
    """Over the time `series` (``children_s`` or ``threads_s``) went from `low` to `high` of its
    total: that span's length, and the cores of that series and of the main thread over it."""
    if len(samples) < 2:
        return None
    base = getattr(samples[0], series)
    total = getattr(samples[-1], series) - base
    if total <= 0.05:
        return None
    start = next(s for s in samples if getattr(s, series) - base >= low * total)
    end = next(s for s in samples if getattr(s, series) - base >= high * total)
    length = end.t - start.t
    if length <= 0:
        return None
    return {
        "span_s": length,
        "from_t": start.t,
        "cpu_s": total,
        "cores": (getattr(end, series) - getattr(start, series)) / length,
        "loop_cores": (end.main_s - start.main_s) / length,
        "peak_rss_mib": max(s.rss_bytes for s in samples) / 2**20,
    }
