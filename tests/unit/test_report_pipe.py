"""The Reporter's write path when a reader goes away: EPIPE closes the output, never raises.

Whatever wrote (an engine task's `item_done`, the watcher's flush, the
summary), a BrokenPipeError on stdout or stderr turns into `Output.closed`,
one call of `Output.on_closed`, one line on the other stream, and silence
after; any other OS error is still raised.
"""

from __future__ import annotations

import errno
import io

import pytest

from ingest.cli.report import Reporter


class Gone(io.StringIO):
    """A stream whose reader left after `keep` writes (then every write is EPIPE)."""

    def __init__(self, keep: int = 0, err: int = errno.EPIPE) -> None:
        super().__init__()
        self.keep, self.err, self.tries = keep, err, 0

    def write(self, text: str) -> int:
        self.tries += 1
        if self.tries > self.keep:
            raise (
                BrokenPipeError(self.err, "Broken pipe")
                if self.err == errno.EPIPE
                else (OSError(self.err, "other"))
            )
        return super().write(text)


def test_a_closed_stdout_closes_the_output_once_and_says_so() -> None:
    out, err = Gone(keep=2), io.StringIO()
    reporter = Reporter("json", out=out, err=err)
    calls: list[str] = []
    reporter.output.on_closed = lambda: calls.append("closed")
    for n in range(5):
        reporter.event("note", message=f"m{n}")  # the third one hits EPIPE
    reporter.flush()
    assert reporter.output.closed and calls == ["closed"]
    assert out.tries == 3  # nothing is written after the pipe broke
    assert out.getvalue().count("\n") == 2
    assert err.getvalue().count("\n") == 1 and "stdout was closed" in err.getvalue()


def test_a_closed_stderr_closes_the_output_silently() -> None:
    err = Gone()
    reporter = Reporter("plain", out=io.StringIO(), err=err)
    reporter.note("first")
    reporter.note("second")
    assert reporter.output.closed and err.tries == 1


def test_another_os_error_is_not_swallowed() -> None:
    reporter = Reporter("json", out=Gone(err=errno.ENOSPC), err=io.StringIO())
    with pytest.raises(OSError, match="other"):
        reporter.event("note", message="x")
    assert not reporter.output.closed
