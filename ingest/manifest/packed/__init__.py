"""Packed sources read in place: a ``.tar`` (WebDataset) or ``.zip`` shard, a Parquet file.

Nothing is unpacked to disk: a member is an item whose bytes are a range of
the shard (or, for a compressed zip member, a decompressed stream), read by
the same data path as a file.

Where each part lives:

    members     the members of a shard, from tar headers or the zip directory
    tarheaders  a tar's headers read directly (ustar, GNU, pax), one read a member
    samples     members grouped into WebDataset samples; items, captions, counts
    access      reading a member's bytes (a range, decompressing, a Parquet row)
    naming      ``shard.tar#member.png`` in a manifest line, resolved to its member
    parquet     a Parquet file's rows as items, their image bytes streamed (pyarrow, an extra)
    parquetfile   its layout, and a row group's image bytes in batches (streamed or pyarrow)
    parquetcache  a row's bytes read again: the reader's batches cached, an upload-side cursor
    held          a triage batch's entries, fewer once its Parquet rows fill what the cache keeps
    parquetcolumn a column chunk of byte arrays streamed value by value (plain, dictionary)
    parquetpieces a chunk's bytes, a page's bytes as they decompress, RLE-hybrid levels
    parquetthrift page headers (Thrift's compact protocol)
    snappystream  raw Snappy decompressed as a stream, a bounded window for its copies
    parquetpages  its image column's page sizes, from the page headers (`validate`'s note)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingest.lazynames import lazy_names

if TYPE_CHECKING:
    from ingest.manifest.packed.members import ShardKind, list_members, probe_shard, shard_kind
    from ingest.manifest.packed.samples import count_shard, read_shard

# Imported on first use: a path entry's `split_member` (naming) must not cost
# every run the tar/zip readers.
_HOME = {
    "ShardKind": "ingest.manifest.packed.members",
    "list_members": "ingest.manifest.packed.members",
    "probe_shard": "ingest.manifest.packed.members",
    "shard_kind": "ingest.manifest.packed.members",
    "count_shard": "ingest.manifest.packed.samples",
    "read_shard": "ingest.manifest.packed.samples",
}

__getattr__ = lazy_names(__name__, _HOME, globals())


__all__ = ["ShardKind", "count_shard", "list_members", "probe_shard", "read_shard", "shard_kind"]
