"""A compact set (or map) of 64-bit digests: about 11 bytes per member instead of ~110.

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
    replay), so its per-process seed does no harm. Nothing persisted or compared
    between processes may depend on it, nor on what it decides: which manifest
    entries the duplicate filter holds back varies with the seed, so a coordinated
    run's plan digests its entries with blake2b, in no order (`coord.plan`).
    Measured (load 12): ~0.3 us a fresh key here, ~1.8 us for a keyed blake2b.
    """
    return (hash(text) & _MASK64) or 1


class DigestSet:
    """Membership of 64-bit digests in flat memory; optionally a 64-bit value for each.

    With `values=True` it is a map (a parallel `array('Q')`, ~23 bytes a
    member instead of ~110 for a dict): what a resume keeps per done item.
    """

    __slots__ = ("_count", "_mask", "_table", "_values")

    def __init__(self, capacity: int = 1 << 12, *, values: bool = False) -> None:
        size = 1 << max(4, (capacity - 1).bit_length())
        self._table = array("Q", bytes(8 * size))
        self._values = array("Q", bytes(8 * size)) if values else None
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def has_values(self) -> bool:
        return self._values is not None

    def __iter__(self) -> Iterator[int]:
        return (digest for digest in self._table if digest)

    def items(self) -> Iterator[tuple[int, int]]:
        """(digest, value) pairs (a map only)."""
        assert self._values is not None
        return (pair for pair in zip(self._table, self._values, strict=True) if pair[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DigestSet):
            return NotImplemented
        return len(self) == len(other) and all(digest in other for digest in self)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def _slot(self, digest: int) -> int:
        """The slot holding `digest`, or the empty slot where it would go."""
        table, mask = self._table, self._mask
        slot = digest & mask
        while True:
            found = table[slot]
            if found == digest or found == 0:
                return slot
            slot = (slot + 1) & mask

    def __contains__(self, digest: int) -> bool:
        return self._table[self._slot(digest)] != 0

    def get(self, digest: int) -> int | None:
        """The value stored with `digest` (a map only), or None if absent."""
        assert self._values is not None
        slot = self._slot(digest)
        return self._values[slot] if self._table[slot] else None

    def add(self, digest: int, value: int = 0) -> bool:
        """Insert `digest` (non-zero; with `value` in a map); True if it was not there yet."""
        table, mask = self._table, self._mask
        slot = digest & mask  # the probe of `_slot`, inlined: replay calls this 10^6 times
        while (found := table[slot]) and found != digest:
            slot = (slot + 1) & mask
        if self._values is not None:
            self._values[slot] = value
        if found:
            return False
        table[slot] = digest
        self._count += 1
        if self._count * 10 > (mask + 1) * 7:
            self._grow()
        return True

    def add_all(self, digests: list[int], values: list[int] | None = None) -> None:
        """`add` each of `digests` (with its value in `values`, a map only), in order."""
        if values is not None:
            for digest, value in zip(digests, values, strict=True):
                self.add(digest, value)
            return
        table, mask, count = self._table, self._mask, self._count
        room = (mask + 1) * 7 // 10  # members before `_grow`
        for digest in digests:  # `add`'s probe, inlined: a replay's 10^6 done items
            slot = digest & mask
            while (found := table[slot]) and found != digest:
                slot = (slot + 1) & mask
            if not found:
                table[slot] = digest
                count += 1
                if count > room:
                    self._count = count
                    self._grow()
                    table, mask = self._table, self._mask
                    room = (mask + 1) * 7 // 10
        self._count = count

    def discard(self, digest: int) -> bool:
        """Remove `digest`; True if it was there. Backward-shift deletion keeps probes short."""
        table, values, mask = self._table, self._values, self._mask
        slot = digest & mask  # as in `add`
        while (found := table[slot]) and found != digest:
            slot = (slot + 1) & mask
        if not found:
            return False
        table[slot] = 0
        self._count -= 1
        hole, probe = slot, (slot + 1) & mask
        while table[probe]:
            moved = table[probe]
            # `moved` may fill the hole if the hole lies between its home slot and here.
            if (probe - (moved & mask)) & mask >= (probe - hole) & mask:
                table[hole], table[probe] = moved, 0
                if values is not None:
                    values[hole] = values[probe]
                hole = probe
            probe = (probe + 1) & mask
        return True

    def _grow(self) -> None:
        old, old_values = self._table, self._values
        size = len(old) * 2
        self._table = table = array("Q", bytes(8 * size))
        self._values = values = array("Q", bytes(8 * size)) if old_values is not None else None
        self._mask = mask = size - 1
        for index, digest in enumerate(old):
            if digest:
                slot = digest & mask
                while table[slot]:
                    slot = (slot + 1) & mask
                table[slot] = digest
                if values is not None and old_values is not None:
                    values[slot] = old_values[index]
