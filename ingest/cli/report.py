"""What a run shows while it works and when it ends.

Four modes: a live rich display on a terminal; plain status lines at an
interval in a log; one JSON event per line with `--json`; nothing but the
summary and errors with `--quiet`. Per-item failures are printed as they
happen (never only in a log file). All text passes through `redact`: a
line, or, of an item's `--json` line, the fields that may hold a URL.

Every write goes through `output.Output`: a reader that goes away
(`ingest run … --json | head -1`) closes the output instead of raising into
the engine's task groups.

Progress is shown against the whole manifest, per the journal (`Progress`):
done (earlier runs' included, rejected items never), failed and rejected
apart, of the total, which is the seek-ahead count (marked ``~``) until
reading ends; the ETA is the items left at this run's rate. The summary at
the end, and the hints it gives, are `summary`'s.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

import anyio
import orjson

from ingest.cli.output import Output
from ingest.cli.summary import HINTS as HINTS  # re-exported: where callers import them
from ingest.cli.summary import hint_for as hint_for
from ingest.cli.summary import write_summary
from ingest.cli.wording import folder_reason as folder_reason  # re-exported: where callers
from ingest.cli.wording import human_bytes as human_bytes  # import them from
from ingest.cli.wording import human_duration as human_duration
from ingest.cli.wording import member_where
from ingest.cli.wording import plural as plural
from ingest.cli.wording import problem_where as problem_where
from ingest.cli.wording import unjournaled_note as unjournaled_note
from ingest.engine import ItemDone, Progress, Snapshot
from ingest.errors import ManifestError, TransferError
from ingest.reasons import HELD, group
from ingest.redact import redact

if TYPE_CHECKING:
    from ingest.api import Result
    from ingest.lease import LateURL

Mode = Literal["live", "plain", "json", "quiet"]
# An item event's fields that may hold a signed query string or a secret: its key too (a path
# holds what a file's name holds: `wget` names a signed URL's file `a.png?X-Amz-Signature=…`).
URL_FIELDS = ("key", "reason", "url")


class Watched(Protocol):
    """A run whose progress can be shown (`ingest.Upload`)."""

    def snapshot(self) -> Snapshot: ...


class Reporter:
    """Observer of one run (see `ingest.Observer`) and its display."""

    FLUSH_S = 0.1  # `--json`: the longest an event waits in the buffer

    def __init__(
        self,
        mode: Mode,
        *,
        interval: float = 10.0,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.mode = mode
        self.interval = interval
        self.output = Output(out or sys.stdout, err or sys.stderr)
        self.out, self.err = self.output.out, self.output.err
        self.failures: Counter[tuple[str, str]] = Counter()
        self._printed_failures = 0
        self._skipped_noted = False
        self._late_noted = False
        self._journal: str | None = None  # a dry run has none
        self.done_before: int | None = None  # the journal's done items as the run started
        self.folder = False  # the manifest is a folder: entries are named by their path in it
        self.packed = False  # a shard or Parquet file: entries are named by member or row
        self.key_envs: tuple[str, ...] = ()  # the variables the provider's secrets came from
        self._live: Any = None
        self._flushed_at = 0.0

    # -- events --------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> None:
        """A `--json` event, its whole line redacted (an item's: `_item_event`)."""
        if kind == "start":  # where `ingest status --failed` finds every problem afterwards
            self._journal = fields.get("journal")
            self.done_before = fields.get("already_done")  # the summary's "of the journal's N"
        self._emit(kind, fields, whole=True)

    def _item_event(self, kind: str, **fields: Any) -> None:
        """An item's `--json` event: only the fields that may hold a URL are redacted
        (`URL_FIELDS`: its key, an error's reason, a landed file's url); its ids and figures
        hold none."""
        for name in URL_FIELDS:
            value = fields.get(name)
            if value is not None:
                fields[name] = redact(value)
        self._emit(kind, fields, whole=False)

    def _emit(self, kind: str, fields: dict[str, Any], *, whole: bool) -> None:
        if self.mode == "json":
            now = time.time()
            if self.output.lost(self.out):
                return
            line = orjson.dumps({"event": kind, "t": round(now, 3), **fields}).decode()
            # Flushed at most every FLUSH_S (and by `watch`): a write per item
            # was a visible share of a small-file run's CPU.
            flush = kind != "item_done" or now - self._flushed_at >= self.FLUSH_S
            self.output.write(self.out, (redact(line) if whole else line) + "\n", flush=flush)
            if flush:
                self._flushed_at = now

    def flush(self, now: float | None = None) -> None:
        self.output.write(self.out, "", flush=True)
        self._flushed_at = time.time() if now is None else now

    def note(self, text: str, *, always: bool = False) -> None:
        """A line for humans (stderr, so stdout stays clean for --json); `--quiet` keeps only `always`."""
        if self.mode == "quiet" and not always:
            return
        if self.mode == "json":
            self.event("note", message=text)
            return
        if self._live is not None:
            self._live.console.print(redact(text), markup=False, highlight=False)
        else:
            self.output.write(self.err, redact(text) + "\n", flush=True)

    def item_done(self, done: ItemDone) -> None:
        if self.mode == "json":
            fields: dict[str, Any] = {"key": done.key, "remote_id": done.landed.remote_id}
            if done.landed.url:
                fields["url"] = done.landed.url
            self._item_event("item_done", line=done.line, size=done.size, **fields)

    def item_failed(self, key: str, line: int, err: TransferError) -> None:
        self.failures[(err.action.value, err.code)] += 1
        self._item_event(
            "item_failed",
            key=key,
            line=line,
            action=err.action.value,
            code=err.code,
            reason=err.message,
        )
        self._print_failure(f"failed  {self._where(key, line)}: {err}")

    def item_rejected(self, key: str | None, err: ManifestError) -> None:
        self.failures[("rejected", group(err.reason))] += 1
        self._item_event("item_rejected", key=key, line=err.line, reason=err.reason)
        where = problem_where(
            err.line, key, err.reason, err.source, folder=self.folder, packed=self.packed
        )
        reason = folder_reason(err.reason, key) if self.folder or self.packed else err.reason
        verdict = "rejected"
        if reason.startswith(HELD):  # a provider's same-name limit: not the item's fault
            verdict, reason = "held back", reason.removeprefix(HELD).lstrip(": ")
        self._print_failure(f"{verdict} {where}: {reason}")

    def item_changed(self, key: str, line: int) -> None:
        self._item_event("item_changed", key=key, line=line)
        where = self._where(key, line)
        self._print_failure(
            f"changed {where}: the file changed since it was uploaded (kept the old upload)"
        )

    def _where(self, key: str, line: int) -> str:
        """An item as a problem line names it: its path in a folder, its member or row in a
        shard, else its manifest line and key."""
        if self.folder:
            return key
        return (self.packed and member_where(key)) or f"line {line} {key}"

    def _print_failure(self, text: str) -> None:
        if self.mode == "json":
            return
        self._printed_failures += 1
        if self._printed_failures <= 50:
            self.note(text, always=True)
        elif self._printed_failures == 51:
            where = (
                f"`ingest status --failed {self._journal}`"
                if self._journal is not None
                else "`ingest validate MANIFEST --json`"  # a dry run writes no journal
            )
            self.note(f"… more problems; {where} lists them all", always=True)

    # -- periodic display ----------------------------------------------------

    def status_line(self, snap: Snapshot) -> str:
        eta = _eta(snap)
        return f"done {_done_of(snap.progress)} ({_rate(snap)}) {_counts(snap)}" + (
            f" {eta}" if eta else ""
        )

    def _note_skipped(self, snap: Snapshot) -> None:
        """Once: what a folder's walk passed over (non-image files, symlinked loops); once, an
        upload URL that arrived expired or about to by its own signing time."""
        if snap.skipped and not self._skipped_noted:
            self._skipped_noted = True
            self.note(
                f"skipped {snap.skipped.describe()} in the {'folder' if self.folder else 'shard'}"
            )
        if snap.late_url is not None and not self._late_noted:
            self._late_noted = True
            self.note(late_url_warning(snap.late_url), always=True)

    async def watch(self, engine: Watched) -> None:
        """Show progress until cancelled."""
        if self.mode == "live":
            await self._watch_live(engine)
            return
        if self.mode == "json":
            await self._watch_json(engine)
            return
        first = True
        try:
            while True:
                await anyio.sleep(self.interval)
                snap = engine.snapshot()
                # The first line waits for the seek-ahead count (itself bounded in time),
                # so that it shows the total.
                while first and snap.progress.total is None and snap.progress.counting:
                    await anyio.sleep(0.05)
                    snap = engine.snapshot()
                first = False
                self._note_skipped(snap)
                if self.mode == "plain":
                    self.note(self.status_line(snap))
        finally:
            self._note_skipped(engine.snapshot())

    async def _watch_json(self, engine: Watched) -> None:
        next_stats = time.monotonic() + self.interval
        while True:
            try:
                await anyio.sleep(self.FLUSH_S)
            finally:
                # also when cancelled at the end of the run: what is buffered goes out
                if not (self._skipped_noted and self._late_noted):
                    self._note_skipped(engine.snapshot())
                self.flush()
            if time.monotonic() < next_stats:
                continue
            next_stats += self.interval
            snap = engine.snapshot()
            c, p = snap.counters, snap.progress
            self.event(
                "stats",
                done=c.done,
                failed=c.failed,
                rejected=c.rejected,
                skipped=c.skipped,
                in_flight=c.in_flight,
                retries=c.retries,
                resigns=c.resigns,
                throttles=c.throttles,
                bytes=c.bytes_done,
                elapsed_s=round(snap.elapsed_s, 3),
                total=p.total,
                total_estimated=p.estimated,
                journal_done=p.done,
            )

    async def _watch_live(self, engine: Watched) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.err)
        view = LiveView(engine.snapshot())
        with Live(view, console=console, refresh_per_second=4) as live:
            self._live = live
            try:
                while True:
                    snap = engine.snapshot()
                    self._note_skipped(snap)
                    view.snap = snap
                    await anyio.sleep(0.25)
            finally:
                self._note_skipped(engine.snapshot())
                self._live = None

    # -- the end -------------------------------------------------------------

    def summary(self, result: Result, progress: Progress | None = None) -> None:
        """The run's last lines; `progress`, its last snapshot's, gives an interrupted run its
        total (`summary.write_summary`)."""
        write_summary(self, result, progress)


def late_url_warning(late: LateURL) -> str:
    """The one line of a run whose upload URLs arrive expired, or about to, by their own
    X-Amz-Date and X-Amz-Expires on this machine's clock (no URL: it is signed)."""
    return (
        f"warning: upload URLs arrive expired or about to by their own X-Amz-Date and "
        f"X-Amz-Expires: signed {late.age_s:.0f} s before this machine's clock, valid "
        f"{late.lifetime_s} s. The provider's clock and this one are about {late.age_s:.0f} s "
        "apart (or its answers that slow): check the clock (NTP), or storage may refuse them "
        "as expired and each re-sign bring another"
    )


class LiveView:
    """The live display of a snapshot, laid out for the width it is drawn at.

    Wide enough (`BAR_MIN` columns of bar beside the figures): ``upload ━━━╸  435/~1010
    eta ~0:30 12.3 files/s, 4.1 MiB/s``, the counts on a line of their own. Narrower, the
    bar is dropped, never the figures: done/total and the ETA, the rate and the counts
    each wrap at a space (a 40-column terminal cut ``435/~…`` and ``faile…``).
    """

    BAR_MIN = 10

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        snap, width = self.snap, options.max_width
        p = snap.progress
        parts = [part for part in (_done_of(p), _eta(snap), _rate(snap)) if part]
        figures = " ".join(parts)
        room = width - len("upload ") - len(figures) - 2
        if room >= self.BAR_MIN:
            row = Table.grid(padding=(0, 1))
            row.add_row(
                Text("upload", style="bold"),
                ProgressBar(total=p.total, completed=p.done, width=room),
                Text(figures, no_wrap=True),
            )
            yield row
        else:
            yield Text(_fill(parts, width))
        yield Text(_fill(_count_parts(snap), width))


def _rate(snap: Snapshot) -> str:
    """This run's pace: 3.2 files/s, 1.2 MiB/s."""
    c, elapsed = snap.counters, max(snap.elapsed_s, 1e-6)
    return f"{c.done / elapsed:.1f} files/s, {human_bytes(c.bytes_done / elapsed)}/s"


def _counts(snap: Snapshot) -> str:
    """In flight, retries, re-signs, failed and rejected apart (per the journal), throttling."""
    return " ".join(_count_parts(snap))


def _count_parts(snap: Snapshot) -> list[str]:
    """`_counts`, a label with its figure a part (a narrow display wraps between parts)."""
    c, p, pacer = snap.counters, snap.progress, snap.api_pacer
    parts = [f"in flight {c.in_flight}", f"retries {c.retries}", f"re-signs {c.resigns}"]
    parts += [f"failed {p.failed}", f"rejected {p.rejected}"]
    if pacer.rate is not None:
        parts.append(f"paced {pacer.rate:.1f}/s")
    if pacer.paused_for > 0:
        parts.append(f"paused {math.ceil(pacer.paused_for)}s")
    return parts


def _fill(parts: list[str], width: int) -> str:
    """`parts` joined by spaces, a line break instead where the next would pass `width`."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += " " + part
        else:
            lines.append(part)
    return "\n".join(lines)


def _done_of(p: Progress) -> str:
    """Done per the journal, of the manifest's total: 403/1010, or 403/~1010 while estimated."""
    total = "?" if p.total is None else f"~{p.total}" if p.estimated else str(p.total)
    return f"{p.done}/{total}"


def _eta(snap: Snapshot) -> str:
    """The time left at this run's rate (eta 0:01:05; eta ~0:01:05 while estimated), or ""."""
    left, elapsed = snap.progress.left, max(snap.elapsed_s, 1e-6)
    rate = snap.counters.done / elapsed
    if left is None or rate <= 0:
        return ""
    return f"eta {'~' if snap.progress.estimated else ''}{human_duration(left / rate)}"
