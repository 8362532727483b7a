"""How many entries one triage batch takes when a reader holds their bytes: Parquet rows.

Owns `triage_batch` and `HELD_BYTES`. A Parquet row's image bytes are read by
the reader (a row is not a byte range of the file) and wait in
`parquetcache` until validation, right after, reads them there. Validation
runs a triage batch at a time, after the reader has read the whole batch, so
the cache must still hold the batch's first rows when its last is read: a
batch of 128 entries of 64 KiB rows is 8 MiB of them, past the cache's
`CACHE_BYTES`, and each row it had dropped was read again by a cursor from
its row group's start (issue 15's speed bar: Parquet 0.69x of loose files,
its CPU 1.47x). So a batch stops once its rows hold `HELD_BYTES`, which the
cache keeps with the two reader batches either side of them
(`parquetcache.CACHE_BYTES`, tested).

Invariants: a batch holds at least one entry when any is left, at most
`count`; only Parquet rows (`Member.row`) count toward `HELD_BYTES`: a file's
or a tar member's bytes are read by validation itself.
"""

from __future__ import annotations

from collections.abc import Iterator

from ingest.errors import ManifestError
from ingest.item import Item

HELD_BYTES = 2 << 20  # a triage batch's Parquet rows, bytes (then the batch ends)

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
