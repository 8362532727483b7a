"""How many entries one triage batch takes when a reader holds their bytes: Parquet rows.

Owns `triage_batch` and `HELD_BYTES`. A Parquet row's image bytes are read by
the reader (a row is not a byte range of the file) and wait in
`parquetcache` until validation, right after, reads them there. Validation
runs a triage batch at a time, after the reader has read the whole batch, so
the cache must still hold the batch's first rows when its last is read. It
did not: 128 entries of 64 KiB rows are 8 MiB, and the cache kept 4 MiB, so
validation missed and a cursor read each missed row's group again from its
start (issue 15's speed bar: Parquet at 0.69x the files/s of loose files,
its CPU 1.47x). So a batch stops once its rows hold `HELD_BYTES`, which the
cache keeps with the two reader batches either side of them
(`parquetcache.CACHE_BYTES`, tested). Not smaller: each batch is a hop to
the reader thread and back, and batches of 2 MiB (32 rows of 64 KiB) cost
5 % of the files/s of batches of 128 rows (`benchmarks/README.md`, Sources).

Invariants: a batch holds at least one entry when any is left, at most
`count`; only Parquet rows (`Member.row`) count toward `HELD_BYTES`: a file's
or a tar member's bytes are read by validation itself.
"""

from __future__ import annotations

from collections.abc import Iterator

from ingest.errors import ManifestError
from ingest.item import Item

HELD_BYTES = 8 << 20  # a triage batch's Parquet rows, bytes (then the batch ends)

Entry = Item | ManifestError


def triage_batch(entries: Iterator[Entry], count: int) -> list[Entry]:
    """The next `count` entries of `entries`, fewer once the Parquet rows among them hold
    `HELD_BYTES` (none past the one that reaches it is read)."""
    batch: list[Entry] = []
    held = 0
    for entry in entries:
        batch.append(entry)
        if len(batch) >= count:
            break
        if isinstance(entry, Item) and (member := entry.member) and member.row is not None:
            held += member.length
            if held >= HELD_BYTES:
                break
    return batch
