"""The circuit breaker: a long streak of identical failures stops the run.

Owns the streak. `failed` counts an item's failure code and returns the stop
message once `limit` items in a row failed with the same code; `succeeded`
ends the streak. A provider that is down then stops the run (resumable)
instead of failing every item of the manifest one by one.

Invariant: only the provider's and its storage's failures count. An item's
own source that cannot be fetched or converted (`op` ``fetch``, ``convert``:
a dead source host, a folder of damaged HEICs) says nothing about the
provider: it neither counts nor ends a streak, and each such item fails with
its own reason (200 URLs on a refused host said "the provider looks
unavailable").
"""

from __future__ import annotations

from ingest.errors import TransferError

SOURCE_OPS = frozenset({"fetch", "convert"})  # an item's source, before any provider call


class Breaker:
    """Counts identical failures in a row; `limit` of them trip it."""

    __slots__ = ("_code", "_limit", "_streak")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._code: str | None = None
        self._streak = 0

    def succeeded(self) -> None:
        self._code, self._streak = None, 0

    def failed(self, err: TransferError) -> str | None:
        """The stop message when this failure trips the breaker, else None."""
        if err.op in SOURCE_OPS:
            return None
        if err.code == self._code:
            self._streak += 1
        else:
            self._code, self._streak = err.code, 1
        if self._streak < self._limit:
            return None
        return (
            f"circuit breaker: {self._streak} items in a row failed with {err.code} "
            f"({err.message}); the provider looks unavailable. Re-run the same command "
            "to resume."
        )
