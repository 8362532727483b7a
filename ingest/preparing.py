"""What happens to a checked source between its triage and its upload: fetch, then convert.

Owns the one seam the engine's worker calls before acquiring a target
(`Preparer.prepare`): a remote item (a URL, `ingest.remote`) is fetched into
the spool, then an image of a type the provider does not take is converted
(`--convert`, `ingest.convert`); a local source of an accepted type passes
untouched. `forget` deletes what an item spooled once it is journaled done
or failed, and `aclose` the rest at the end of the run.

Invariant: a prepared `Source` names a file whose bytes are exactly what the
upload sends, under the item's own key, with the fingerprint the journal
should keep (the original's for a converted local file).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ingest.capabilities import Capabilities
from ingest.convert import DECODABLE, Converter, converter_for
from ingest.http import Timeouts
from ingest.item import Source
from ingest.prefetch import Prefetch
from ingest.remote import Fetcher

if TYPE_CHECKING:
    from ingest.engine.settings import EngineSettings
    from ingest.engine.triage import Redo


class Preparer:
    """Fetches (lazily: only a run with URLs opens a session) and converts, for one run."""

    def __init__(
        self,
        caps: Capabilities,
        provider: str,
        settings: EngineSettings,
        *,
        sleep: Callable[[float], Awaitable[None]],
        now: Callable[[], float],
    ) -> None:
        self.converter: Converter | None = converter_for(caps, provider, settings.run)
        formats = caps.formats | DECODABLE if self.converter is not None else caps.formats
        run = settings.run
        self._fetcher_args = {
            "provider": provider,
            "formats": formats,
            "policy": settings.retry,
            "timeouts": Timeouts(connect=run.connect_timeout_s, read=run.read_timeout_s),
            "concurrency": settings.put_concurrency,
            "max_size": caps.max_size if self.converter is None else None,
            "sleep": sleep,
            "now": now,
        }
        self.fetcher: Fetcher | None = None

    async def prepare(self, verdict: Source | Redo, prefetch: Prefetch | None) -> Source | Redo:
        source = verdict if isinstance(verdict, Source) else verdict.source
        if source.item.url is not None:
            if self.fetcher is None:
                self.fetcher = Fetcher(**self._fetcher_args)  # type: ignore[arg-type]
            fetched = await self.fetcher.fetch(source)
            verdict = fetched if isinstance(verdict, Source) else _with(verdict, fetched)
        if self.converter is not None:
            verdict = await self.converter.prepare(verdict, prefetch)
        return verdict

    def forget(self, key: str) -> None:
        if self.fetcher is not None:
            self.fetcher.forget(key)
        if self.converter is not None:
            self.converter.forget(key)

    async def aclose(self) -> None:
        if self.fetcher is not None:
            await self.fetcher.aclose()
        if self.converter is not None:
            self.converter.close()


def _with(redo: Redo, source: Source) -> Redo:
    import dataclasses

    return dataclasses.replace(redo, source=source)
