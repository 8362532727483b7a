"""The provider seam: what every adapter implements and declares.

An adapter knows its wire format and classifies its errors into `Action`s; it
never sleeps, retries or decides policy (the engine does). Each step is safe
to repeat: `acquire` may be called again for the same item (a re-sign),
`transfer` may be retried on the same target, `finalize` may be called again
for an item whose earlier finalize outcome was lost.

`Capabilities` (in `ingest.capabilities`, so the input layer can read it
without importing any provider) is what the provider can do and what the contract suite may
test; a provider that cannot do something says so here and the suite skips
exactly that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

from ingest.capabilities import Capabilities
from ingest.errors import TransferError
from ingest.item import Source
from ingest.lease import Lease

if TYPE_CHECKING:
    from ingest.providers.context import Context
    from ingest.providers.settings import ProviderSettings


@dataclass(frozen=True, slots=True)
class Target:
    """Where one item goes: the remote id and, usually, a pre-signed URL.

    `url` authorises an upload: it is never journaled, logged or shown in a
    repr. `extra` holds non-secret provider fields worth journaling.
    """

    remote_id: str
    url: str | None = field(repr=False)
    content_type: str
    lease: Lease | None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Landed:
    """The outcome of a finished item: its remote id and, if any, its final URL."""

    remote_id: str
    url: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


class Provider(Protocol):
    """One provider's adapter. Construct with open sessions; see `registry`."""

    name: ClassVar[str]
    caps: Capabilities

    async def acquire(self, source: Source) -> Target:
        """Ask the control plane for an upload target (signs a URL)."""
        ...

    async def transfer(self, source: Source, target: Target) -> Target:
        """Move the bytes (data plane). Raises `TransferError` when they did not land.

        Returns the target, updated where the transfer itself names the remote
        object (e.g. Scenario's inline upload answers with the asset id).
        """
        ...

    async def finalize(
        self, batch: Sequence[tuple[Source | None, Target]]
    ) -> list[Landed | TransferError]:
        """Complete or attach transferred items: one outcome per item, in order.

        Only if `caps.finalize`. An item-class failure of one item is returned
        in its place so the others still land; an error that concerns the
        whole call (RETRY, STOP) is raised.

        `Source` is None for an item resumed from the journal whose file was
        not re-read (its transfer already landed).
        """
        ...

    def landed(self, source: Source, target: Target) -> Landed:
        """The outcome of an item that needs no finalize step."""
        ...


@runtime_checkable
class Recovers(Protocol):
    """An adapter that can tell whether the bytes of an acquired remote id landed.

    Optional (the engine checks with `isinstance`). On resume, an item whose
    last record is `acq` was in flight when a run was killed: its PUT may or
    may not have landed. Its signed URL was never journaled (a secret), so it
    cannot be uploaded to again; what the provider's API may offer is a way to
    ask about the remote id, and that is this method.
    """

    async def recover(self, source: Source, acquired: Target) -> Landed | None:
        """The item's outcome if its bytes landed under `acquired.remote_id`, else None.

        None means "not there": the item is uploaded anew, after the adapter
        removed what the API lets it remove of `acquired` (so no empty record
        stays behind where the API allows). Raises `TransferError` like any
        API call; a FAIL_ITEM-class answer is taken as "not there".
        """
        ...


@runtime_checkable
class Tidies(Protocol):
    """An adapter whose API can list and delete what killed runs left unnamed.

    Optional (the engine checks with `isinstance`); only adapters with such a
    call implement it, so a resumed run spends no API call where there is none.
    """

    async def tidy(self) -> int:
        """Before a resumed run starts any item: remove what killed runs left unnamed.

        A record whose create was answered as the kill came was never
        journaled; where the API can list and delete the run's records, the
        empty ones go here. Returns how many were removed (0 where the API
        cannot tell them apart).
        """
        ...


TrainingKind = Literal["subject", "style"]
"""Which training task a provider document is for (Novita: ``/v3/training/subject|style``)."""


@runtime_checkable
class NamesUsed(Protocol):
    """An adapter whose API lists the file names its account used within a limit's window.

    Optional (the engine checks with `isinstance`): with `Capabilities.same_name_limit`, the
    run's name check (`namelimit.NameLimit`) adds these creates to its own count, so a re-run
    holds back what the provider would refuse instead of spending a call on it.
    """

    def names_used(self, name: str) -> Sequence[float]:
        """The unix times of creates of `name` known before this run (learnt by `tidy`)."""
        ...


@dataclass(frozen=True, slots=True)
class Documents:
    """An export as documents, and the done items none of them can hold (each: why)."""

    documents: tuple[Mapping[str, object], ...]
    problems: tuple[str, ...] = ()


@runtime_checkable
class SplitsExport(Protocol):
    """An adapter class whose export is several documents of a kind (optional; see `export`).

    `ingest.journal.export` checks with `isinstance` on the class: without it,
    the export is the one document of `ProviderClass.export_document`.
    """

    @staticmethod
    def export_documents(
        rows: Sequence[Mapping[str, object]],
        params: Mapping[str, str],
        training: TrainingKind | None,
    ) -> Documents:
        """Done items as the documents the provider's next calls take, each within its limits."""
        ...


class ProviderClass(Protocol):
    """What the CLI needs of an adapter class before it has sessions.

    Every adapter class is checked against this by mypy where the registry
    hands it out (`ingest.providers.registry`). `name` and `key_envs` are
    read-only properties here because a class object can match a protocol's
    properties but never its `ClassVar`s; adapters declare them as `ClassVar`s.
    """

    @property
    def name(self) -> str: ...

    @property
    def key_envs(self) -> tuple[str, ...]:
        """Settings fields naming the environment variables that hold secrets."""
        ...

    def __call__(self, ctx: Context) -> Provider: ...

    @staticmethod
    def capabilities(settings: ProviderSettings) -> Capabilities:
        """What the provider accepts under these settings (no session needed)."""
        ...

    @staticmethod
    def auth_headers(secrets: Mapping[str, str]) -> dict[str, str]:
        """API-session headers built from the secrets `key_envs` named."""
        ...

    @staticmethod
    def run_params(settings: ProviderSettings, previous: Mapping[str, str]) -> dict[str, str]:
        """Run-level values bound into the journal header (e.g. an order id).

        `previous` is what an existing journal recorded: a resume keeps it
        unless the settings name a value explicitly.
        """
        ...

    @staticmethod
    def export_document(
        rows: Sequence[Mapping[str, object]], params: Mapping[str, str]
    ) -> Mapping[str, object]:
        """Done items in the shape the provider's next API call wants (a JSON object).

        Each row has `key`, `remote_id`, and where known `url`, `caption`,
        `path` and the journaled extras.
        """
        ...
