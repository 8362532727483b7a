"""A scripted provider for engine unit tests: no sockets, no emulator, on a fake clock.

`FakeProvider` signs, "uploads" and finalizes instantly. A test scripts
failures per step and key (`fail(op, key, *errors)`: raised in order, one per
call, before the step succeeds) and reads back every call in `log`, stamped
with the fake clock's time. Targets carry a lease of `lifetime_s` when set;
a PUT on an expired lease is refused with RESIGN, as storage would.
`run_engine` runs a manifest through an `Engine` on it and returns the
outcome, the observer's events and the journal as a fresh replay reads it.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import anyio.lowlevel
import orjson

from ingest.capabilities import Capabilities
from ingest.clock import Clock
from ingest.config import RunSettings
from ingest.engine import Engine, EngineSettings, ItemDone, Outcome
from ingest.errors import Action, ManifestError, Scope, TransferError
from ingest.item import Source
from ingest.journal import Header, Journal, Replay, replay
from ingest.lease import Lease
from ingest.manifest import read_manifest
from ingest.providers.base import Landed, Target
from ingest.sniff import ImageType


def refusal(
    action: Action,
    code: str,
    *,
    op: str = "acquire",
    retry_after: float | None = None,
    scope: Scope = Scope.ITEM,
) -> TransferError:
    """An error as an adapter would classify it."""
    return TransferError(
        f"scripted {code}",
        action=action,
        code=code,
        provider="fake",
        op=op,
        retry_after=retry_after,
        scope=scope,
    )


@dataclass(frozen=True, slots=True)
class Call:
    at: float  # the fake clock's `now()` when the call started
    op: str  # acquire | transfer | finalize
    key: str


class FakeProvider:
    name: ClassVar[str] = "fake"

    def __init__(
        self,
        clock: Clock,
        *,
        finalize: bool = False,
        finalize_batch: int = 1,
        lifetime_s: float | None = None,
    ) -> None:
        self.caps = Capabilities(
            formats=frozenset(ImageType),
            max_size=None,
            url_lifetime_s=lifetime_s,
            finalize=finalize,
            finalize_batch=finalize_batch,
        )
        self._clock = clock
        self._lifetime_s = lifetime_s
        self._script: defaultdict[tuple[str, str], deque[TransferError]] = defaultdict(deque)
        self._always: dict[tuple[str, str], TransferError] = {}
        self.log: list[Call] = []
        self.engine: Engine | None = None  # the engine running it (set by `run_engine`)
        self.signed: Counter[str] = Counter()
        self.finalized: Counter[str] = Counter()

    def fail(self, op: str, key: str, *errors: TransferError) -> None:
        """`key`'s next calls of `op` raise `errors`, one each, in order."""
        self._script[op, key].extend(errors)

    def fail_always(self, op: str, key: str, error: TransferError) -> None:
        self._always[op, key] = error

    def calls(self, op: str, key: str | None = None) -> list[Call]:
        return [c for c in self.log if c.op == op and (key is None or c.key == key)]

    async def _step(self, op: str, key: str) -> None:
        await anyio.lowlevel.checkpoint()
        self.log.append(Call(self._clock.now(), op, key))
        if (op, key) in self._always:
            raise self._always[op, key]
        queued = self._script.get((op, key))
        if queued:
            raise queued.popleft()

    async def acquire(self, source: Source) -> Target:
        key = source.item.key
        await self._step("acquire", key)
        self.signed[key] += 1
        lease = None
        if self._lifetime_s is not None:
            now = self._clock.time()
            lease = Lease(now + self._lifetime_s, self._lifetime_s, "default")
        return Target(
            remote_id=f"r-{key}",
            url=f"http://127.0.0.1/{key}?sig={self.signed[key]}",
            content_type=source.content_type,
            lease=lease,
        )

    async def transfer(self, source: Source, target: Target) -> Target:
        await self._step("transfer", source.item.key)
        if target.lease is not None and target.lease.time_left(self._clock.time()) <= 0:
            raise refusal(Action.RESIGN, "expired", op="transfer")
        return target

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        out: list[Landed | TransferError] = []
        for _source, target in batch:
            key = target.remote_id.removeprefix("r-")
            try:
                await self._step("finalize", key)
            except TransferError as err:
                if err.action in (Action.RETRY, Action.STOP):
                    raise  # about the whole call
                out.append(err)
                continue
            self.finalized[key] += 1
            out.append(Landed(remote_id=target.remote_id))
        return out

    def landed(self, source: Source, target: Target) -> Landed:
        return Landed(remote_id=target.remote_id)


# --- running the engine against it ------------------------------------------------------


@dataclass(slots=True)
class Events:
    """An `Observer` that keeps every event."""

    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, code)
    rejected: list[tuple[str | None, str]] = field(default_factory=list)  # (key, reason)
    changed: list[str] = field(default_factory=list)

    def item_done(self, done: ItemDone) -> None:
        self.done.append(done.key)

    def item_failed(self, key: str, line: int, err: TransferError) -> None:
        self.failed.append((key, err.code))

    def item_rejected(self, key: str | None, err: ManifestError) -> None:
        self.rejected.append((key, err.reason))

    def item_changed(self, key: str, line: int) -> None:
        self.changed.append(key)


@dataclass(slots=True)
class Ran:
    engine: Engine
    outcome: Outcome
    events: Events
    journal: Replay  # the journal as a fresh replay reads it after the run


def write_manifest(path: Path, entries: Sequence[Mapping[str, str]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(dict(entry)) + b"\n" for entry in entries))
    return path


async def run_engine(
    tmp_path: Path,
    provider: FakeProvider,
    manifest: Path,
    clock: Clock,
    *,
    run: RunSettings | None = None,
    retry_failed: bool = False,
    reupload_changed: bool = False,
) -> Ran:
    """One engine run of `manifest` on the journal `tmp_path / "journal"` (resumed if it exists)."""
    path = tmp_path / "journal"
    journal, state = Journal.open(path, Header(provider="fake", manifest=str(manifest)))
    events = Events()
    with journal:
        engine = Engine(
            provider,
            journal,
            state,
            EngineSettings(
                run or RunSettings(), retry_failed=retry_failed, reupload_changed=reupload_changed
            ),
            observer=events,
            clock=clock,
            rng=random.Random(7),
        )
        provider.engine = engine
        outcome = await engine.run(read_manifest(manifest))
        journal.sync()
    return Ran(engine, outcome, events, replay(path))
