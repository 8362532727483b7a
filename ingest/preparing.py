"""What happens to a checked source between its triage and its upload: fetch, then convert.

Owns the one seam the engine's worker calls before acquiring a target
(`Preparer.prepare`): a remote item (a URL, `ingest.remote`) is fetched into
the spool, then an image of a type the provider does not take is converted
(`--convert`, `ingest.convert`); a local source of an accepted type passes
untouched. `forget` deletes what an item spooled once it is journaled done
or failed, and `aclose` the rest at the end of the run.

Invariant: a prepared `Source` names a file whose bytes are exactly what the
upload sends, under the item's own key, with the fingerprint the journal
should keep (the original's for a converted local file), and within the
provider's size limit: with `--convert` a URL is fetched without it (its type
might be converted) and a fetched file kept as it is is checked here. A
fetched file that a local file's check would reject (empty, a cut PNG or JPEG,
not an image, a type the provider does not take, over its size limit:
`too_large_source`) raises
`SourceRejected`, worded as `validate` words the local file's: its item is
rejected, not failed.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ingest.capabilities import Capabilities
from ingest.errors import Action, ManifestError, TransferError
from ingest.item import Item, Source
from ingest.prefetch import Prefetch, release

if TYPE_CHECKING:
    from ingest.clock import Clock
    from ingest.convert import Converter, R
    from ingest.engine.outcomes import Counters
    from ingest.engine.settings import EngineSettings
    from ingest.engine.triage import Redo
    from ingest.remote import Fetcher


class SourceRejected(TransferError):
    """A fetched source that its local twin's check rejects: empty, a cut PNG or JPEG, not an
    image, a type the provider does not take, over its size limit (an HTML page served with
    200 where an image was expected is one: the URL is wrong, and the manifest is what to fix,
    as for a local one). Only a body that arrived whole: one cut short of its said length is
    a dropped connection, retried.

    Journaled `bad` as that local file would be (`Endings.fail`), so a re-run checks it
    again (and `--convert` converts it) instead of leaving it failed for `retry-failed`.
    A `FAIL_ITEM` for any code that does not look for it.
    """

    def __init__(self, reason: str, item: Item, *, provider: str, code: str) -> None:
        super().__init__(reason, action=Action.FAIL_ITEM, code=code, provider=provider, op="fetch")
        self.rejection = ManifestError(reason, source=item.where, line=item.line)


def too_large_source(
    item: Item, size: int, limit: int, provider: str, *, said: bool = True
) -> SourceRejected:
    """A fetched source over `limit`, worded as a local file's (`validate.too_large`).

    `said`: the source said its length (Content-Length, the object's size), or `size` is
    all of it; else `size` is what was read when the limit was passed (a body of unknown
    length is not read to its end only to measure it).
    """
    from ingest.validate import too_large  # as `describe_content`: only when one is

    why = too_large(size, limit, provider)
    if not said:
        why += " (at least: the source did not say its length)"
    return SourceRejected(f"{why}: {item.where}", item, provider=provider, code="too_large")


class Preparer:
    """Fetches (lazily: only a run with URLs opens a session) and converts, for one run."""

    def __init__(
        self,
        caps: Capabilities,
        provider: str,
        settings: EngineSettings,
        clock: Clock,
        counters: Counters | None = None,
    ) -> None:
        self.converter: Converter | None = None
        self.caps = caps
        formats = caps.formats
        if settings.run.convert:  # ingest.convert (and Pillow) only for a run with --convert
            from ingest.convert import DECODABLE, accepting, converter_for

            self.converter = converter_for(caps, provider, settings.run)
            # What the local checks accept: with --convert, every type it decodes.
            self.caps = accepting(caps)
            formats = caps.formats | DECODABLE
        self._formats = formats
        # What a fetch may stream into its PUT: a type sent as is, to a provider whose
        # transfer is one PUT (`ingest.remote`); anything else is spooled to a file.
        self._streamable = caps.formats if caps.one_put else frozenset()
        self._settings = settings
        self._clock = clock
        self._provider = provider
        self._counters = counters  # a fetch's retries count with the run's others
        self._max_size = caps.max_size if self.converter is None else None
        self.fetcher: Fetcher | None = None

    async def prepare(self, verdict: Source | Redo, prefetch: Prefetch | None) -> Source | Redo:
        """A triaged `Source` (or `Redo` of one) ready to upload: fetched, converted."""
        if isinstance(verdict, Source):
            return await self.source(verdict, prefetch)
        return dataclasses.replace(verdict, source=await self.source(verdict.source, prefetch))

    async def source(self, source: Source, prefetch: Prefetch | None = None) -> Source:
        if source.item.url is not None:
            if self.fetcher is None:
                self.fetcher = self._open_fetcher()
            source = await self.fetcher.fetch(source)
        if self.converter is not None and self.converter.needs(source):
            converted = await self.converter.convert(source)
            release(source, prefetch)  # the original's read-ahead bytes
            source = converted
        elif self.converter is not None and source.item.url is not None:
            self._within_limit(source)  # fetched unchecked: it might have been converted
        return source

    def _within_limit(self, source: Source) -> None:
        """A fetched source kept as it is must be within the provider's limit itself."""
        limit = self.caps.max_size
        if limit is not None and source.size > limit:
            raise too_large_source(source.item, source.size, limit, self._provider)

    def _open_fetcher(self) -> Fetcher:
        # Imported here: `remote` pulls in aiohttp, which a run of local files
        # (and `import ingest`) must not pay for.
        from ingest.http import Timeouts
        from ingest.remote import Fetcher

        run = self._settings.run
        return Fetcher(
            provider=self._provider,
            formats=self._formats,
            policy=self._settings.retry,
            timeouts=Timeouts(connect=run.connect_timeout_s, read=run.read_timeout_s),
            concurrency=self._settings.put_concurrency,
            max_size=self._max_size,
            streamable=self._streamable,
            sleep=self._clock.sleep,
            now=self._clock.now,
            on_retry=self._retried,
        )

    def _retried(self) -> None:
        if self._counters is not None:
            self._counters.retries += 1

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


def noting_conversion(rec: R, source: Source | None) -> R:
    """`rec` with ``cv`` when its source was converted; only `--convert` imports ingest.convert."""
    if source is None or source.converted is None:
        return rec
    from ingest.convert import with_conversion

    return with_conversion(rec, source)
