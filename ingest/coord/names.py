"""The names of everything a coordinated run keeps in Redis.

Owns the key layout (one prefix per run, one per provider account) and the
default run name. A run's keys live under `ingest:run:{NAME}:`; a budget's
under `ingest:budget:{DIGEST}:`, where DIGEST is a SHA-256 of the provider,
the endpoint and the API key(s), so two runs on one key share one budget and
the key itself never reaches Redis.

Invariant: no key holds a secret; names are stable across versions of
`ingest` that share a run (a rename is a new run).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

GROUP = "workers"  # the consumer group of a run's chunk stream


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The keys of one run."""

    name: str

    def _key(self, part: str) -> str:
        return f"ingest:run:{{{self.name}}}:{part}"  # {hash tag}: one slot on a cluster

    @property
    def plan(self) -> str:  # JSON: chunk count and the run's binding; SET NX once
        return self._key("plan")

    @property
    def duplicates(self) -> str:  # "LINE FIRST ..." of the manifest's duplicate keys, with the plan
        return self._key("duplicates")

    @property
    def source(self) -> str:  # the manifest's path at the worker that planned (retry-failed's)
        return self._key("source")

    @property
    def chunks(self) -> str:  # stream: one entry per chunk, group GROUP
        return self._key("chunks")

    @property
    def finished(self) -> str:  # counter: chunks acknowledged or given up as poison
        return self._key("finished")

    @property
    def done(self) -> str:  # bitmap by manifest line
        return self._key("done")

    @property
    def failed(self) -> str:  # bitmap by manifest line
        return self._key("failed")

    @property
    def rejected(self) -> str:  # bitmap by manifest line
        return self._key("rejected")

    @property
    def landed(self) -> str:  # hash: line -> `up` record of an item landed, not yet finalized
        return self._key("landed")

    @property
    def results(self) -> str:  # list: batches of done records, one JSON a line
        return self._key("results")

    @property
    def failures(self) -> str:  # list: batches of failed/rejected records
        return self._key("failures")

    @property
    def poison(self) -> str:  # list: chunks delivered too often, given up
        return self._key("poison")

    @property
    def stop(self) -> str:  # the message of a STOP-class error: every worker stops
        return self._key("stop")


@dataclass(frozen=True, slots=True)
class BudgetKeys:
    """The keys of one provider account's budget."""

    digest: str

    @property
    def tat(self) -> str:  # GCRA: theoretical arrival time, server microseconds
        return f"ingest:budget:{self.digest}:tat"

    @property
    def pause(self) -> str:  # server microseconds until which no call starts
        return f"ingest:budget:{self.digest}:pause"

    @property
    def names(self) -> str:  # hash: creates per file name this server hour (Autoenhance's rule)
        return f"ingest:budget:{self.digest}:names"

    @property
    def bytes(self) -> str:  # GCRA of --max-mbps: theoretical arrival time, server us
        return f"ingest:budget:{self.digest}:bytes"

    @property
    def learnt(self) -> str:  # hash: the rate learnt from throttling and its cycle's counts
        return f"ingest:budget:{self.digest}:learnt"

    def pushes(self, db: int) -> str:  # pub/sub channel of the pauses (channels span databases)
        return f"ingest:budget:{self.digest}:pushes:{db}"


def account_digest(provider: str, endpoint: str, secrets: Mapping[str, str]) -> str:
    """A digest naming one provider account; the key is not recoverable from it."""
    h = hashlib.sha256(f"ingest-budget\0{provider}\0{endpoint}".encode())
    for name in sorted(secrets):
        h.update(f"\0{name}\0{secrets[name]}".encode())
    return h.hexdigest()[:32]


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_run_name(provider: str, manifest: Path) -> str:
    """`PROVIDER-MANIFESTSTEM`: the same on every machine, whatever folder holds the manifest.

    Two different manifests of one stem get the same name, and the second is
    refused by the run's binding (its entries' digest) rather than joining it.
    """
    stem = _UNSAFE.sub("-", manifest.stem or manifest.name).strip("-")[:60] or "manifest"
    return f"{provider}-{stem}"


def check_run_name(name: str) -> str | None:
    """Why `name` cannot name a run (None: it can)."""
    if not name or len(name) > 100 or _UNSAFE.search(name):
        return "a run name is 1-100 letters, digits, '.', '_' or '-'"
    return None
