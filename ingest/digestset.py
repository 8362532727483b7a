"""A compact set of 64-bit digests: about 11 bytes per member instead of ~110.

Owns one structure: an open-addressing hash table (linear probing) stored in
an `array('Q')`, grown by doubling at a load of 0.7. It is what keeps a
million-entry run's memory flat: a `dict[int, int]` of digests costs ~110
bytes per key, this costs 8/0.7. Zero marks an empty slot, so a digest of 0
is stored as 1 (a 2^-64 chance of merging two keys, like any digest).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

_MASK64 = (1 << 64) - 1


def digest64(text: str) -> int:
    """A 64-bit digest of `text`, never 0, stable within this process.

    Python's own string hash (SipHash, computed in C and cached on the string)
    is several times cheaper than blake2b, and digests never leave the
    process: they index in-memory tables only (manifest duplicates, journal
    replay), so its per-process seed does no harm.
    """
    return (hash(text) & _MASK64) or 1


class DigestSet:
    """Membership of 64-bit digests in flat memory."""

    __slots__ = ("_count", "_mask", "_table")

    def __init__(self, capacity: int = 1 << 12) -> None:
        size = 1 << max(4, (capacity - 1).bit_length())
        self._table = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        return (digest for digest in self._table if digest)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DigestSet):
            return NotImplemented
        return len(self) == len(other) and all(digest in other for digest in self)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __contains__(self, digest: int) -> bool:
        table, mask = self._table, self._mask
        slot = digest & mask
        while True:
            found = table[slot]
            if found == digest:
                return True
            if found == 0:
                return False
            slot = (slot + 1) & mask

    def add(self, digest: int) -> bool:
        """Insert `digest` (non-zero); True if it was not there yet."""
        table, mask = self._table, self._mask
        slot = digest & mask
        while True:
            found = table[slot]
            if found == digest:
                return False
            if found == 0:
                break
            slot = (slot + 1) & mask
        table[slot] = digest
        self._count += 1
        if self._count * 10 > (mask + 1) * 7:
            self._grow()
        return True

    def discard(self, digest: int) -> bool:
        """Remove `digest`; True if it was there. Backward-shift deletion keeps probes short."""
        table, mask = self._table, self._mask
        slot = digest & mask
        while True:
            found = table[slot]
            if found == 0:
                return False
            if found == digest:
                break
            slot = (slot + 1) & mask
        table[slot] = 0
        self._count -= 1
        hole, probe = slot, (slot + 1) & mask
        while table[probe]:
            moved = table[probe]
            # `moved` may fill the hole if the hole lies between its home slot and here.
            if (probe - (moved & mask)) & mask >= (probe - hole) & mask:
                table[hole], table[probe] = moved, 0
                hole = probe
            probe = (probe + 1) & mask
        return True

    def _grow(self) -> None:
        old = self._table
        size = len(old) * 2
        self._table = table = array("Q", bytes(8 * size))
        self._mask = mask = size - 1
        for digest in old:
            if digest:
                slot = digest & mask
                while table[slot]:
                    slot = (slot + 1) & mask
                table[slot] = digest
