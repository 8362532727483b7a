"""A manifest line naming one member of a shard: ``path/to/shard.tar#member/name.png``.

Owns the syntax (`split_member`: a path whose part before a ``#`` ends in
``.tar`` or ``.zip``, case-insensitively; everything after that ``#`` is the
member's name, as the shard lists it) and the lookup (`Shards.find`), which
lists a shard once and keeps the indexes of the last few shards named, so a
manifest that names the members of one shard line after line lists it once.

Invariants: a path without such a ``#`` is a file path as before (a file
whose own name has ``.tar#`` in it cannot be listed: documented); a shard
that changed since it was listed is listed again (keyed by size and mtime).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict

from ingest.errors import ManifestError
from ingest.item import Member

_MEMBER = re.compile(r"^(.+?\.(?:tar|zip))#(.+)$", re.IGNORECASE)
_KEEP = 2  # shard indexes kept


def split_member(written: str) -> tuple[str, str] | None:
    """(shard path, member name) when `written` names a member, else None."""
    found = _MEMBER.match(written)
    return (found.group(1), found.group(2)) if found else None


class Shards:
    """The member indexes of the shards a manifest names, the last few kept."""

    def __init__(self) -> None:
        self._indexes: OrderedDict[tuple[str, int, int], dict[str, Member | str]] = OrderedDict()
        self._lock = threading.Lock()

    def find(self, shard: str, name: str) -> Member | str:
        """The member `name` of the shard at `shard`, or why it cannot be used."""
        with self._lock:
            return self._find(shard, name)

    def _find(self, shard: str, name: str) -> Member | str:
        from ingest.manifest.packed.members import list_members, shard_kind  # a shard's run only

        kind = shard_kind(shard)
        assert kind is not None
        try:
            st = os.stat(shard)
        except FileNotFoundError:
            return f"shard not found: {shard}"
        except OSError as exc:
            return f"cannot read shard {shard}: {exc.strerror or exc}"
        key = (shard, st.st_size, st.st_mtime_ns)
        index = self._indexes.get(key)
        if index is None:
            try:
                index = {
                    listed.member.name: listed.problem or listed.member
                    for listed in list_members(shard, kind)
                    if listed.member is not None
                }
            except ManifestError as exc:
                return f"{exc.reason}: {shard}"
            self._indexes[key] = index
            while len(self._indexes) > _KEEP:
                self._indexes.popitem(last=False)
        self._indexes.move_to_end(key)
        found = index.get(name)
        if found is None:
            return f"no member {name!r} in the shard: {shard}"  # the path last, as grouped
        if isinstance(found, str):
            return f"{found}: {shard}#{name}"
        return found


SHARDS = Shards()
"""The one cache the manifest readers share (a reader thread, `validate`, a dry run)."""
