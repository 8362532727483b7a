"""Duplicate keys in a manifest, found exactly in about two bytes a key.

Owns the rule "a key seen on an earlier line is a duplicate, named with that
line" at any manifest size, without a table that grows with the manifest.

How it works:

- The first `EXACT_KEYS` keys are kept exactly (64-bit digest → line), so a
  small manifest is answered at once, in order, naming the first line.
- Past that, every key also goes into a Bloom filter of 16 bits a key (sized
  from the manifest's estimated entry count, grown by adding a filter twice
  as large when the estimate was short). A key the filter has never seen is
  new, for certain. A key it may have seen is *held*: `check` returns `HOLD`
  and the manifest reader keeps the entry aside.
- Only the held entry's line and key digest are kept (16 bytes, so a
  manifest listed twice stays small). When the manifest has been read, a
  second pass (`FirstLines`) reads it again, notes the first line of each
  held key and rebuilds each held entry: one whose own line is the first
  was a false alarm (about 0.07 % of keys) and is uploaded then, the others
  are duplicates naming that line. If the manifest file changed in between
  (another file, size or mtime), the held entries are reported as errors
  instead of guessed at: nothing is uploaded twice, and the next run takes
  them up again.

Memory: ~2 bytes a key for the filters, plus 16 bytes a held entry (each a
real duplicate or a rare false alarm). Digests are Python's string hash, so
nothing here may outlive the process, and which entries are held differs
from one process to the next.

`Duplicates` is what such a read found, kept beyond the process (a
coordinated run stores it with its plan: 16 bytes a duplicate line, nothing
for a manifest without one); `KnownDuplicates` answers a later read from it
exactly, in one pass and in line order, holding nothing.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Final, Protocol

from ingest.digestset import DigestSet, digest64


class _Hold:
    def __repr__(self) -> str:
        return "HOLD"


HOLD: Final = _Hold()
"""`check`'s answer for a key that may have been seen: decide after a second pass."""


class KeyCheck(Protocol):
    def check(self, key: str, line: int) -> int | _Hold | None:
        """None: new (now remembered); an int: a duplicate of that line (0: unknown); or HOLD."""
        ...


class _Bloom:
    """A Bloom filter for `capacity` members at 16 bits each, 7 probes (~0.07 % false alarms)."""

    __slots__ = ("_bits", "_size", "capacity", "count")
    BITS_PER_KEY = 16
    PROBES = 7

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.count = 0
        self._size = capacity * self.BITS_PER_KEY
        self._bits = bytearray((self._size + 7) // 8)

    def _positions(self, digest: int) -> list[int]:
        # Double hashing from the two halves of one 64-bit digest (Kirsch-Mitzenmacher).
        low, high, size = digest & 0xFFFFFFFF, (digest >> 32) | 1, self._size
        return [(low + i * high) % size for i in range(self.PROBES)]

    def __contains__(self, digest: int) -> bool:
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(digest))

    def add(self, digest: int) -> None:
        bits = self._bits
        for p in self._positions(digest):
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1


class SeenKeys:
    """The keys of one pass over a manifest (see the module docstring)."""

    __slots__ = ("_exact", "_expected", "_filters")
    EXACT_KEYS = 20_000

    def __init__(self, expected: int = 0) -> None:
        self._exact: dict[int, int] = {}
        self._expected = expected
        self._filters: list[_Bloom] = []

    def check(self, key: str, line: int) -> int | _Hold | None:
        digest = digest64(key)
        first = self._exact.get(digest)
        if first is not None:
            return first
        if not self._filters:
            if len(self._exact) < self.EXACT_KEYS:
                self._exact[digest] = line
                return None
            self._grow()
            for known in self._exact:
                self._filters[-1].add(known)
        if any(digest in bloom for bloom in self._filters):
            return HOLD
        if self._filters[-1].count >= self._filters[-1].capacity:
            self._grow()
        self._filters[-1].add(digest)
        return None

    def _grow(self) -> None:
        last = self._filters[-1].capacity if self._filters else 0
        self._filters.append(_Bloom(max(2 * last, self._expected, 4 * self.EXACT_KEYS)))

    @property
    def filter_bytes(self) -> int:
        return sum(len(bloom._bits) for bloom in self._filters)


class FirstLines:
    """The second pass: the first line of each held key, and the held lines themselves.

    `check` answers HOLD on a held line (so the reader rebuilds that entry)
    and None elsewhere; it notes the first line of every held key on the way.
    Held lines must come in increasing order, as a reader yields them.
    """

    __slots__ = ("_held", "_next", "lines", "seen")

    def __init__(self, held_lines: array[int], held_digests: DigestSet) -> None:
        self._held = held_lines
        self._next = 0
        self.lines = DigestSet(values=True)  # held key digest -> its first line
        for digest in held_digests:
            self.lines.add(digest, 0)
        self.seen = 0  # held lines met so far

    def check(self, key: str, line: int) -> int | _Hold | None:
        digest = digest64(key)
        if digest in self.lines and not self.lines.get(digest):
            self.lines.add(digest, line)
        held = self._held
        while self._next < len(held) and held[self._next] < line:
            self._next += 1
        if self._next < len(held) and held[self._next] == line:
            self._next += 1
            self.seen += 1
            return HOLD
        return None


@dataclass(frozen=True, slots=True)
class Duplicates:
    """Every duplicate line of a manifest and the line its key was first on, by line."""

    lines: array[int] = field(default_factory=lambda: array("Q"))
    firsts: array[int] = field(default_factory=lambda: array("Q"))  # 0: not known

    @staticmethod
    def of(lines: array[int], firsts: array[int]) -> Duplicates:
        """From pairs in any order (a read gives held duplicates last)."""
        if any(lines[i] >= lines[i + 1] for i in range(len(lines) - 1)):
            order = sorted(range(len(lines)), key=lines.__getitem__)
            lines, firsts = (
                array("Q", (lines[i] for i in order)),
                array("Q", (firsts[i] for i in order)),
            )
        return Duplicates(lines, firsts)

    @staticmethod
    def parse(text: str) -> Duplicates:
        """From `text()`: "LINE FIRST" pairs, space-separated."""
        both = array("Q", map(int, text.split()))
        return Duplicates(both[0::2], both[1::2])

    def text(self) -> str:
        return " ".join(
            f"{line} {first}" for line, first in zip(self.lines, self.firsts, strict=True)
        )

    def __len__(self) -> int:
        return len(self.lines)

    def check(self) -> KnownDuplicates:
        """A `KeyCheck` for one read of the manifest from its start."""
        return KnownDuplicates(self)


class KnownDuplicates:
    """A `KeyCheck` answering from `Duplicates`: never HOLD; lines must come in increasing order.

    It answers by line, not by key: it is only given a manifest whose (line, key)
    pairs are those of the read that found the duplicates (a run's binding digest)."""

    __slots__ = ("_firsts", "_lines", "_next")

    def __init__(self, known: Duplicates) -> None:
        self._lines, self._firsts = known.lines, known.firsts
        self._next = 0

    def check(self, key: str, line: int) -> int | _Hold | None:
        lines, at = self._lines, self._next
        while at < len(lines) and lines[at] < line:
            at += 1
        self._next = at
        return self._firsts[at] if at < len(lines) and lines[at] == line else None
