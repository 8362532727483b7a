"""A command's stdout and stderr, written so that a reader going away never raises.

Owns the write path of `ingest run`'s display (`Reporter`): every write and
flush goes through `Output.write`. A reader that goes away (`ingest run …
--json | head -1`, a consumer that crashed) shows up as EPIPE at a write, in
whichever task made it, often inside the engine's task groups; here it
becomes `closed` instead of an exception: the stream is pointed at
/dev/null (so no later write, and no flush at exit, raises again), the loss
is said once on stderr if stderr is still there, and `on_closed` is called
(`ingest run` drains the run and exits 141 unless the journal says every
item is done). Any other OS error is raised as it is.

Invariant: `on_closed` is called at most once, on the first lost stream.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from typing import TextIO

from ingest.redact import redact

HELD_BYTES = 1 << 16  # `out`'s unflushed text passed on at this size


class Output:
    """stdout and stderr of one command; `closed` once either lost its reader."""

    def __init__(self, out: TextIO | None, err: TextIO | None) -> None:
        # A stream closed before start (`>&-`) is None in `sys`: treated as a closed pipe.
        self.out: TextIO = out or _devnull()
        self.err: TextIO = err or _devnull()
        self.closed = False
        self.on_closed: Callable[[], None] | None = None
        self._lost: set[int] = set()  # id() of the streams that hit EPIPE
        self._held: list[str] = []  # text written to `out` without a flush, not yet passed on
        self._held_size = 0

    def lost(self, stream: TextIO) -> bool:
        return id(stream) in self._lost

    def write(self, stream: TextIO, text: str, *, flush: bool) -> None:
        """Write (and flush) `text`; a reader gone away (EPIPE) closes the output instead.

        Text for `out` without a flush is held here until the next flush (or 64 KiB):
        with PYTHONUNBUFFERED=1 (common in container images) every `stream.write` is a
        write(2), and `--json`'s line per item cost ~15 % of a small-file run's CPU.
        """
        if id(stream) in self._lost:
            return
        if stream is self.out and (self._held or not flush):
            if text:
                self._held.append(text)
                self._held_size += len(text)
            if not flush and self._held_size < HELD_BYTES:
                return
            text = "".join(self._held)
            self._held.clear()
            self._held_size = 0
        try:
            if text:
                stream.write(text)
            if flush:
                stream.flush()
        except (BrokenPipeError, ValueError) as exc:  # ValueError: the stream was closed
            self._lose(stream, exc)
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            self._lose(stream, exc)

    def say(self, text: str) -> None:
        """One line on stderr whatever the display's mode (dropped if stderr is gone too)."""
        self.write(self.err, redact(text) + "\n", flush=True)

    def _lose(self, stream: TextIO, exc: Exception) -> None:
        self._lost.add(id(stream))
        # Later writes (ours, rich's, the flush at exit) go to /dev/null, not to EPIPE.
        with contextlib.suppress(OSError, ValueError):
            fd = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(fd, stream.fileno())
            finally:
                os.close(fd)
        if self.closed:
            return
        self.closed = True
        name = "stdout" if stream is self.out else "stderr"
        self.say(
            f"ingest: {name} was closed ({type(exc).__name__}): no more output; "
            "finishing the uploads in flight, then stopping"
        )  # whether to resume: the run's last line says (`cli.run.exit_code`), it may be complete
        if self.on_closed is not None:
            self.on_closed()


def _devnull() -> TextIO:
    return open(os.devnull, "w")  # lives as long as the process
