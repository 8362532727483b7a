"""What an adapter is constructed with: its sessions, its settings, the clock.

`settings` is the common `ProviderSettings` type (callers serve every
provider); an adapter reads its own keys through its class, e.g.
`ScenarioSettings.of(ctx.settings)`. `names` is set in a coordinated run:
same-name counts every worker on the account sees (Autoenhance's rule).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ingest.item import Source
from ingest.providers.base import Target
from ingest.providers.settings import ProviderSettings

if TYPE_CHECKING:
    from ingest.transport.session import Session


class SharedNames(Protocol):
    """Creates per file name shared by every worker on one account (`coord.namecounts`)."""

    async def add(self, name: str) -> int:
        """Count one create of `name`; returns the count so far (a lower bound of the API's)."""
        ...

    async def count(self, name: str) -> int:
        """Creates of `name` counted so far (a lower bound of the API's)."""
        ...


@dataclass(frozen=True, slots=True)
class Context:
    """Open sessions (one per role) and the provider's settings."""

    api: Session
    storage: Session
    settings: ProviderSettings
    params: Mapping[str, str] = field(default_factory=dict)  # bound in the journal header
    allow_insecure_http: bool = False
    clock: Callable[[], float] = field(default=time.time)
    names: SharedNames | None = None  # a coordinated run's shared counts (else this process's)

    async def put(
        self,
        provider: str,
        source: Source,
        target: Target,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Target:
        """PUT the source file to the target's pre-signed URL (the common `transfer`).

        `headers`: sent besides Content-Type and Content-Length, only by an
        adapter that knows the URL is its API's own (Autoenhance's key).
        """
        from ingest.storage import put_file, put_member, put_stream

        if target.url is None:
            raise ValueError(f"{provider}: target {target.remote_id!r} has no upload URL")
        if source.stream is not None:  # a remote source, read as it is sent
            await put_stream(
                self.storage,
                target.url,
                source.stream,
                source.size,
                target.content_type,
                provider=provider,
                where=source.item.where,
                allow_insecure_http=self.allow_insecure_http,
                headers=headers,
            )
            return target
        member = source.item.member
        if member is not None and source.body is None:  # a shard's member, not read ahead
            await put_member(
                self.storage,
                target.url,
                source.item.path,
                member,
                target.content_type,
                provider=provider,
                allow_insecure_http=self.allow_insecure_http,
                headers=headers,
            )
            return target
        await put_file(
            self.storage,
            target.url,
            source.item.path,
            source.size,
            target.content_type,
            provider=provider,
            allow_insecure_http=self.allow_insecure_http,
            body=source.body,
            headers=headers,
        )
        return target
