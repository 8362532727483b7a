"""The journal: an append-only JSON-lines log of every item's state transitions.

Layout: line 1 is a header binding the journal to its provider, manifest and
the settings that matter; each later line is one record (`records` documents
every kind and field). The package's rooms:

    records      the typed schema of every line, its constructors and `decode`
    reader       `replay` (the state a journal describes), `peek_header`, digests
    writer       `Journal`: open (lock, replay or create), append, group commit, fsync
    maintenance  the run lock, the binding check, `compact`, `repair`
    report       `status` and `failures`: what `ingest status` prints, counted
                 against the manifest as it is now
    exporting    `export`: what `ingest export` prints
                 (both imported on first use: a run needs neither)

Invariants (each module states its own):
- Records reach the OS at the end of the event-loop turn that produced them
  and are fsynced at a bounded interval and on close.
- Replay tolerates a torn last line (and cuts it off before appending); damage
  anywhere else is `JournalCorrupt` with its line number, never silently dropped.
  `repair` (``ingest repair``) rewrites such a journal keeping every intact record.
- One run at a time: an exclusive lock on `<journal>.lock`.
- State per item is the last record for its key; counts are derived from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingest.journal.header import EMULATOR, FORMAT, VERSION, Header, HeaderRecord
from ingest.journal.maintenance import (
    Repair,
    check_binding,
    compact,
    lock,
    rebind,
    repair,
    unrecorded,
)
from ingest.journal.reader import Replay, fingerprint, key_digest, lines, peek_header, replay
from ingest.journal.records import (
    AcqRecord,
    BadRecord,
    Count,
    DoneRecord,
    EndRecord,
    FailRecord,
    Kind,
    Landed,
    Record,
    RunRecord,
    Unfinished,
    UpRecord,
    acquired,
    completed,
    count_of,
    decode,
    failed,
    file_of,
    manifest_end,
    rejected,
    run_started,
    uploaded,
)
from ingest.lazynames import lazy_names

if TYPE_CHECKING:
    from ingest.journal.exporting import ExportFormat, ExportRow, export
    from ingest.journal.report import Failure, JournalStatus, failures, manifest_problem, status
    from ingest.journal.writer import Journal

# What `status` and `export` need is imported on first use: a run never does (start-up time);
# nor do they need the writer (it imports asyncio: ~0.1 s of a status's CPU).
_REPORTS = {
    "Journal": "ingest.journal.writer",
    "ExportFormat": "ingest.journal.exporting",
    "ExportRow": "ingest.journal.exporting",
    "export": "ingest.journal.exporting",
    "Failure": "ingest.journal.report",
    "JournalStatus": "ingest.journal.report",
    "failures": "ingest.journal.report",
    "manifest_problem": "ingest.journal.report",
    "status": "ingest.journal.report",
}

__getattr__ = lazy_names(__name__, _REPORTS, globals())


__all__ = [
    "EMULATOR",
    "FORMAT",
    "VERSION",
    "AcqRecord",
    "BadRecord",
    "Count",
    "DoneRecord",
    "EndRecord",
    "ExportFormat",
    "ExportRow",
    "FailRecord",
    "Failure",
    "Header",
    "HeaderRecord",
    "Journal",
    "JournalStatus",
    "Kind",
    "Landed",
    "Record",
    "Repair",
    "Replay",
    "RunRecord",
    "Unfinished",
    "UpRecord",
    "acquired",
    "check_binding",
    "compact",
    "completed",
    "count_of",
    "decode",
    "export",
    "failed",
    "failures",
    "file_of",
    "fingerprint",
    "key_digest",
    "lines",
    "lock",
    "manifest_end",
    "manifest_problem",
    "peek_header",
    "rebind",
    "rejected",
    "repair",
    "replay",
    "run_started",
    "status",
    "unrecorded",
    "uploaded",
]
