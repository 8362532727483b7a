"""Packed sources: a ``.tar`` (WebDataset) or ``.zip`` shard read in place, one item per image.

Nothing is unpacked to disk: a member is an item whose bytes are a range of
the shard (or, for a compressed zip member, a decompressed stream), read by
the same data path as a file.

Where each part lives:

    members     the members of a shard, from tar headers or the zip directory
    samples     members grouped into WebDataset samples; items, captions, counts
    access      reading a member's bytes (a range, or decompressing)
    naming      ``shard.tar#member.png`` in a manifest line, resolved to its member
"""

from __future__ import annotations

from ingest.manifest.packed.members import ShardKind, list_members, probe_shard, shard_kind
from ingest.manifest.packed.samples import count_shard, read_shard

__all__ = ["ShardKind", "count_shard", "list_members", "probe_shard", "read_shard", "shard_kind"]
