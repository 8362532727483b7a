"""How a run's end reads: the summary (text or the `summary` event) and the hint per failure.

Owns the summary's lines (this run's pace and counters, the journal's
counts against the manifest's total, removed and unjournaled items, the
failures by reason with a hint for each, the stop), the hints (`hint_for`),
which total a summary counts against (`total_of`), and a coordinated
worker's last line (`worker_summary`).

How it works: the counts are the journal's (`Result`); the total is the
manifest's as read to its end, or, for a run that stopped before (Ctrl-C,
SIGTERM, a closed output, a stop), the count ahead of reading (``~`` while
reading has not confirmed it), so an interrupted run still says how much of
the manifest is done, failed and pending.

Invariants: every line passes through `redact`; done + failed + rejected +
pending is the total shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingest.engine.outcomes import StopReason
from ingest.errors import EXPIRED
from ingest.reasons import HELD
from ingest.redact import redact

if TYPE_CHECKING:
    from ingest.api import Result
    from ingest.cli.report import Reporter
    from ingest.coord.worker import WorkerResult
    from ingest.engine import Progress

HINTS: dict[str, str] = {
    "stop": "check the API key variable and the account (balance, permissions)",
    "fail_item": "the provider rejected these items (each reason says why); fix them, then run `ingest retry-failed`",
    "retry": "transient errors outlasted the retries; re-run the same command to retry them",
    "resign": "upload URLs kept expiring; lower put_concurrency or raise resign_margin_s",
    "rejected": "fix these manifest lines or files, then re-run the same command",
}
# A RESIGN other than expiry (SignatureDoesNotMatch, AccessDenied) that a new URL did not cure.
REFUSED_HINT = (
    "storage refused the signed upload even with a new URL: something between ingest and "
    "storage changes the request (a proxy rewriting headers?), or the provider signs another "
    "Content-Type"
)


# A URL source the manifest names (an http(s):// or s3:// path) could not be fetched.
SOURCE_HINT = (
    "the source server refused or broke off these downloads (each reason says why); fix the "
    "URLs, then run `ingest retry-failed`"
)

# An image --convert could not convert here (damaged, too many pixels, too large once converted).
CONVERT_HINT = (
    "these images could not be converted on this machine (each reason says why: damaged, "
    "over --convert-memory-mib, still converting after --convert-timeout-s, or over the size "
    "limit once converted: try --max-side); fix or replace them, then run `ingest retry-failed`"
)


# An item a provider's same-name limit holds back (`namelimit.NameLimit`): nothing to fix.
HELD_HINT = (
    "nothing to fix: the provider takes no more of that file name this hour; run the same"
    " command again after the time each item's line gives (`ingest status --failed` lists them)"
)


def stop_hint(reason: StopReason | None, key_envs: tuple[str, ...]) -> str | None:
    """The line after "stopped: …" when the provider stopped the run (a bad key, no balance),
    naming where the key was read; None for any other stop."""
    if reason is not StopReason.PROVIDER:
        return None
    if not key_envs:
        return f"  → {HINTS['stop']}"
    where = " and ".join(key_envs)
    return (
        f"  → check the API key in {where} (--api-key-env names another) and the account"
        " (balance, permissions)"
    )


def hint_for(action: str, code: str) -> str:
    """What to do about failures of one (action, code): expiry and refusal differ."""
    if action == "resign" and code != EXPIRED:
        return REFUSED_HINT
    if code == "source_failed":
        return SOURCE_HINT
    if code == "convert_failed":
        return CONVERT_HINT
    if action == "rejected" and code.startswith(HELD):
        return HELD_HINT
    return HINTS.get(action, "")


def held_of(reporter: Reporter) -> int:
    """Of this run's rejected items, those a same-name limit held back (`namelimit.NameLimit`)."""
    failures = reporter.failures.items()
    return sum(n for (a, code), n in failures if a == "rejected" and code.startswith(HELD))


def total_of(result: Result, progress: Progress | None) -> tuple[int | None, bool]:
    """(the manifest's total, whether it is the count ahead, not yet confirmed by reading)."""
    if result.total is not None:
        return result.total, False
    if progress is not None and progress.total is not None:
        return progress.total, progress.estimated
    return None, False


def done_of(result: Result, progress: Progress | None) -> str:
    """ "26 of 300 done" as the exit's last line words it ("26 of ~300" while estimated)."""
    total, estimated = total_of(result, progress)
    return f"{result.done}" + (
        f" of {'~' if estimated else ''}{total}" if total is not None else ""
    )


def write_summary(reporter: Reporter, result: Result, progress: Progress | None) -> None:
    """The run's last lines (or its `summary` event with `--json`)."""
    from ingest.cli.report import human_bytes, human_duration, plural, unjournaled_note

    c = result.this_run
    elapsed = max(result.elapsed_s, 1e-6)
    total, estimated = total_of(result, progress)
    journal = result.journal  # None: a shared run's (run_name)
    if reporter.mode == "json":
        reporter.event(
            "summary",
            journal=str(journal) if journal else None,
            total=total,
            total_estimated=estimated,
            done=result.done,
            failed=result.failed,
            rejected=result.rejected,
            in_flight=result.in_flight,
            removed=result.removed,
            unjournaled=result.unjournaled,
            this_run={
                "done": c.done,
                "skipped": c.skipped,
                "bytes": c.bytes_done,
                "retries": c.retries,
                "resigns": c.resigns,
                "throttles": c.throttles,
                "waits_capped": c.waits_capped,
                "api_calls": c.api_calls,
                "puts": c.puts,
                "elapsed_s": round(result.elapsed_s, 3),
            },
            stop_reason=result.stop_reason,
            stop_message=result.stop_message,
            failures=[
                {"class": a, "code": code, "count": n}
                for (a, code), n in reporter.failures.most_common()
            ],
        )
        return
    of = f" of {'~' if estimated else ''}{total}" if total is not None else ""
    changed = f" ({c.changed} changed since upload)" if c.changed else ""  # done, kept: exit 1
    counts = (
        f"{result.done} done{of}{changed}, {result.failed} failed, {result.rejected} rejected"
        + (f" ({held} held back)" if (held := held_of(reporter)) else "")
    )
    if result.total is None and total is not None:  # stopped before the end of the manifest
        pending = max(0, total - result.done - result.failed - result.rejected)
        counts += f", {pending} pending ({result.in_flight} unfinished)"
    else:
        counts += f", {result.in_flight} unfinished"
    lines = [
        f"uploaded {plural(c.done, 'file')} ({human_bytes(c.bytes_done)}) in {human_duration(elapsed)}"
        f" — {c.done / elapsed:.1f} files/s, {human_bytes(c.bytes_done / elapsed)}/s",
        f"skipped {c.skipped} done before{_of_done_before(result, reporter.done_before)};"
        f" retries: {c.retries}; re-signed URLs: {c.resigns}; throttled: {c.throttles}"
        + (f" ({c.waits_capped} Retry-After waits cut to max_pause_s)" if c.waits_capped else ""),
        (f"journal {journal}" if journal else f"run {result.run_name!r}") + f": {counts}",
    ]
    if result.unjournaled:
        lines.append(unjournaled_note(result.unjournaled))
    if result.removed:
        from ingest.journal.report import removed_note

        lines.append(removed_note(result.removed))
    if reporter.failures:
        lines.append("problems by reason:")
        for (action, code), n in reporter.failures.most_common():
            hint = hint_for(action, code)
            lines.append(f"  {n:>6}  {action}/{code}" + (f"  → {hint}" if hint else ""))
    # Ctrl-C's stop is the exit line's ("interrupted; run the same command again to resume …").
    if result.stop_message and result.stop_reason is not StopReason.INTERRUPTED:
        lines.append(f"stopped: {result.stop_message}")
        if stopped := stop_hint(result.stop_reason, reporter.key_envs):
            lines.append(stopped)
    reporter.output.write(reporter.err, "".join(redact(line) + "\n" for line in lines), flush=True)


def _of_done_before(result: Result, before: int | None) -> str:
    """Why this run skipped fewer than the journal's done items as it started (the start
    line's "N items done by earlier runs"), so the two are not read as one figure: ""
    when they agree, else " (of the journal's 4 done: 1 changed since upload, …)"."""
    c = result.this_run
    if before is None or before == c.skipped:
        return ""
    parts = [(c.changed, "changed since upload"), (result.removed, "no longer in the manifest")]
    rest = before - c.skipped - c.changed - result.removed
    if rest > 0:  # not reached (the run stopped early), or changed and uploaded again
        parts.append((rest, "not reached" if result.total is None else "uploaded again"))
    said = ", ".join(f"{n} {what}" for n, what in parts if n > 0)
    return f" (of the journal's {before} done{': ' + said if said and rest >= 0 else ''})"


def worker_summary(result: WorkerResult) -> str:
    """A coordinated worker's last line: the run's counts, then this worker's share.

    A worker that took no chunk says why plainly ("the run was already done: 508 items"),
    and one stopped mid-chunk says it finished none, never "508 done in 0 chunks".
    """
    from ingest.cli.report import plural

    c, mine, name = result.counts, result.this_worker, repr(result.run_name)
    counts = f"{c.done} of {result.entries} done, {c.failed} failed, {c.rejected} rejected"
    if result.chunks == 0 and mine.done == 0 and mine.api_calls == 0:
        if result.complete:
            return f"run {name}: the run was already done: {plural(result.entries, 'item')}"
        ended = result.settled >= result.entries and result.stop_reason is None
        return f"run {name}{' had already ended' if ended else ''}: {counts} (this worker took no chunk)"
    share = f" in {plural(result.chunks, 'chunk')}" if result.chunks else ", no chunk finished"
    return (
        f"run {name}: {counts} (this worker: {mine.done} done{share}, {mine.api_calls} API calls)"
    )
