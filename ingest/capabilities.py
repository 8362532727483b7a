"""What a provider can do: the one record the input layer and the providers share.

Owns `Capabilities` and the documented image limits (`MODELHUNTER_IMAGE_BYTES`,
the validators' through ModelHunter's capabilities; a Parquet row's reader has
a bound of its own, not a provider's: `parquetcolumn.ROW_BOUND`). It lives
apart from `ingest.providers` so that the input
layer (manifest, sniffing, validation, read-ahead) can check an item against
a provider's limits without importing any adapter, session or setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.sniff import ImageType

# ModelHunter's image limit: "max 50 MB" for images (File Uploads), MB = 10^6 bytes.
MODELHUNTER_IMAGE_BYTES = 50_000_000


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider accepts and which steps it has."""

    formats: frozenset[ImageType]
    max_size: int | None  # bytes; None when undocumented
    url_lifetime_s: float | None  # documented lifetime of an upload URL; None: no URL
    finalize: bool = False  # has a step after the transfer (complete, attach)
    finalize_batch: int = 1  # items per finalize call
    same_name_limit: int | None = None  # items that may share one file name (per window)
    same_name_window_s: float = 3600.0  # the window of that limit (Autoenhance's hour)
    # Re-signs per item after a storage refusal other than expiry (a 403 such as
    # SignatureDoesNotMatch); None: the run's `max_resigns`. 1 where a re-sign cannot
    # re-issue a URL but makes another remote record each time (Autoenhance's images).
    resign_limit: int | None = None
    # Its transfer is one PUT of the whole body (`Context.put`), so a remote source of known
    # length may be streamed into it (`ingest.remote`); False: it reads the file (a spool).
    one_put: bool = True
    # With --convert (`ingest.convert.accepting`): the types in `formats` only because they
    # are converted first; their size limit applies to the converted bytes, not the original.
    converts: frozenset[ImageType] = frozenset()
