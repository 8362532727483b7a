"""The emulator's settings: where it listens and how its providers behave.

Owns `SimSettings` (a frozen value fixed for the life of one emulator; only
the fault plan can change while it runs, see `SimServer.set_faults`), the
storage credentials its URLs are signed with, and where an external
S3-compatible store is (`ExternalStorage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest.sim.faults import FaultPlan

# How long an issued upload URL lives when neither `SimSettings.url_lifetime_s`
# (``--lifetime``) nor the fault plan's ``lifetime`` says: each provider's own.
PROVIDER_URL_LIFETIME_S: dict[str, float] = {
    # novita.ai/docs/api-reference/model-apis-get-training-images-url: X-Amz-Expires=120
    "novita": 120.0,
    # docs.modelhunter.ai/api-reference/files/get-upload-url: "Valid for 15 minutes"
    "modelhunter": 900.0,
    # Invented: Autoenhance documents none (a gap, docs/fidelity/autoenhance.md); short,
    # so that runs against the emulator meet expiry and re-signing.
    "autoenhance": 120.0,
    # Invented: Scenario documents none for its part URLs; short, as for Autoenhance.
    "scenario": 120.0,
}
DEFAULT_URL_LIFETIME_S = 120.0  # a provider the table does not name


@dataclass(frozen=True, slots=True)
class StorageCredentials:
    """The emulator's S3 identity; fixed so that URLs are reproducible in tests."""

    access_key: str = "AKIAINGESTSIMULATOR1"
    secret: str = field(default="ingestSIMsecretKEYnotAsecret/0000000000", repr=False)
    region: str = "ap-southeast-1"


@dataclass(frozen=True, slots=True)
class ExternalStorage:
    """An S3-compatible server to sign upload URLs for, instead of the emulator's ``/s3``.

    `endpoint` is ``scheme://host[:port]``, `bucket` an existing bucket there
    (path-style addressing); `credentials` sign the URLs (see `ingest.sim.external`).
    """

    endpoint: str
    bucket: str
    credentials: StorageCredentials

    def __post_init__(self) -> None:
        if not self.bucket or "/" in self.bucket:
            raise ValueError(f"bucket must be one path segment, got {self.bucket!r}")


@dataclass(frozen=True, slots=True)
class ScenarioSimSettings:
    """How the emulated Scenario API behaves (see `ingest.sim.scenario`).

    `models` exist from the start; with `auto_create_models` a route naming an
    unknown model id creates it (for ``ingest run --sim``). `batch_response`
    is the answer to an ``assetIds`` attach: one ``trainingImage`` (what the
    docs show) or a ``trainingImages`` list. `training_image_limit` is the
    per-model dataset ceiling (a 429 naming ``add-training-image``).
    `pending_polls` is how many ``GET /uploads/{id}`` (or ``/jobs/{id}``)
    answers say ``validating`` before ``imported``. Every multipart part but
    the last must be at least `min_part_size` bytes.

    Where no source settles Scenario's behaviour, one setting per gap plays
    each alternative (docs/fidelity/scenario.md): `json_body_limit`, the
    largest JSON body accepted (larger: ``413 {"message":"Request Too
    Long"}``); `asset_image`, what ``POST /assets`` takes in ``image``
    (a data URL, bare base64, or either); `entity_id_from`, where the asset id
    of a multipart upload shows (the upload's ``entityId``, its job's
    ``metadata.output.entityId``, or both); `entity_id_when`, whether
    ``entityId`` appears only once imported or already while validating;
    `remaining_seconds_at`, where an injected 429 says when to come back
    (``remainingSeconds`` at the top level, under ``details``, or nowhere);
    `should_retry`, the ``x-should-retry`` header of injected errors (none,
    ``true`` or ``false``). `record_requests` keeps every API request and
    answer (for the SDK tests).
    """

    models: frozenset[str] = frozenset()
    auto_create_models: bool = False
    batch_response: Literal["single", "list"] = "single"
    training_image_limit: int | None = None
    pending_polls: int = 0
    min_part_size: int = 5 * 1024 * 1024
    json_body_limit: int = 6_000_000
    asset_image: Literal["either", "data_url", "base64"] = "either"
    entity_id_from: Literal["both", "job", "upload"] = "both"
    entity_id_when: Literal["imported", "early"] = "imported"
    remaining_seconds_at: Literal["none", "top", "details"] = "none"
    should_retry: Literal["none", "true", "false"] = "none"
    record_requests: bool = False

    def __post_init__(self) -> None:
        if self.batch_response not in ("single", "list"):
            raise ValueError(f"batch_response must be single or list, got {self.batch_response!r}")
        if self.training_image_limit is not None and self.training_image_limit < 0:
            raise ValueError(f"training_image_limit must be >= 0, got {self.training_image_limit}")
        if self.pending_polls < 0:
            raise ValueError(f"pending_polls must be >= 0, got {self.pending_polls}")
        if self.min_part_size < 1:
            raise ValueError(f"min_part_size must be >= 1, got {self.min_part_size}")
        if self.json_body_limit < 1024:
            raise ValueError(f"json_body_limit must be >= 1024, got {self.json_body_limit}")
        for name, allowed in (
            ("asset_image", ("either", "data_url", "base64")),
            ("entity_id_from", ("both", "job", "upload")),
            ("entity_id_when", ("imported", "early")),
            ("remaining_seconds_at", ("none", "top", "details")),
            ("should_retry", ("none", "true", "false")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        if not all(self.models):
            raise ValueError("models must not contain an empty id")


ThrottleBody = Literal["envelope", "text", "empty"]
NovitaErrorBody = Literal["v3", "text", "empty"]


@dataclass(frozen=True, slots=True)
class NovitaSimSettings:
    """How the emulated Novita API behaves where its docs are silent (see `ingest.sim.novita`).

    `error_body`: the body of every error answer, a gap: ``v3``, the unified
    envelope ``{"code", "reason", "message", "metadata"}`` third parties
    report (one live probe: ``403 INVALID_API_KEY``; the default); ``text``, a
    plain-text line, as a gateway in front of the API would send; ``empty``.
    Rate limits (also a gap) are the fault plan's: ``api.rate=N`` (a token
    bucket that sends Retry-After) or ``api.429=P,api.retry_after=none``.
    """

    error_body: NovitaErrorBody = "v3"

    def __post_init__(self) -> None:
        if self.error_body not in ("v3", "text", "empty"):
            raise ValueError(f"error_body must be v3, text or empty, got {self.error_body!r}")


@dataclass(frozen=True, slots=True)
class ModelHunterSimSettings:
    """How the emulated ModelHunter API behaves (see `ingest.sim.modelhunter`).

    Documented: `max_size_bytes`, the ``sizeBytes`` limit of upload-url ("Max
    100 MB", Get Upload URL) and `image_max_bytes`, that of images ("max 50
    MB", File Uploads; MB = 10^6 bytes); `forget_expired`: a file not
    completed when its upload URL expires is forgotten, complete answers 404
    ``FILE_NOT_FOUND`` ("File not found or upload URL has expired", Complete
    Upload; False plays an API that completes late uploads).
    Gaps, each way: `sign_content_type`, whether upload URLs sign
    ``content-type`` (on, the strict choice); `complete_repeat`, what a second
    complete of a completed file answers (``same``: the same data, idempotent;
    ``conflict``: 409 ``ALREADY_COMPLETED``, invented); `throttle_body`, the
    body of a 429 (``envelope``: the error envelope with code
    ``RATE_LIMIT_EXCEEDED``, invented; ``text``: a plain-text line; ``empty``).
    """

    sign_content_type: bool = True
    max_size_bytes: int = 100_000_000
    image_max_bytes: int = 50_000_000
    forget_expired: bool = True
    complete_repeat: Literal["same", "conflict"] = "same"
    throttle_body: ThrottleBody = "envelope"

    def __post_init__(self) -> None:
        if self.max_size_bytes < 1:
            raise ValueError(f"max_size_bytes must be >= 1, got {self.max_size_bytes}")
        if self.image_max_bytes < 1:
            raise ValueError(f"image_max_bytes must be >= 1, got {self.image_max_bytes}")
        if self.complete_repeat not in ("same", "conflict"):
            raise ValueError(
                f"complete_repeat must be same or conflict, got {self.complete_repeat!r}"
            )
        if self.throttle_body not in ("envelope", "text", "empty"):
            raise ValueError(
                f"throttle_body must be envelope, text or empty, got {self.throttle_body!r}"
            )


@dataclass(frozen=True, slots=True)
class AutoenhanceSimSettings:
    """How the emulated Autoenhance API behaves (see `ingest.sim.autoenhance`).

    Documented: `rate` requests/s per client IP (None: no limit);
    `same_name_limit` images with one exact ``image_name`` per
    `same_name_window_s` (None: no limit); `daily_limit` images per key per
    day before new ones are created in the ``error`` state (None: no limit;
    the docs' default for new accounts is 500); `url_field`, what the
    account's default API version returns (``upload_url``, or
    ``s3PutObjectUrl`` for older accounts).

    Each way of a gap (no source says which is real; docs/fidelity/autoenhance.md):
    `upload_url_since`, the ``x-api-version`` from which ``upload_url`` is
    answered (invented: which version switched is undocumented);
    `content_type` "honoured" signs the declared type, "ignored" signs
    ``application/octet-stream`` whatever was declared (SDK 1.1.0 has no
    such field); `upload_host` "s3" issues pre-signed S3 URLs, "api" an
    unsigned URL on the API's host that needs ``x-api-key``; `body_429`
    "worded" names the rule in the name-rule 429's message, "generic" gives
    both 429s ``{"message": "Too Many Requests"}``, "empty" no body;
    `content_types` accepted in ``content_type`` (others: 422);
    `max_size_bytes`, the largest body accepted (None: any).
    """

    url_field: Literal["upload_url", "s3PutObjectUrl"] = "upload_url"
    upload_url_since: str = "2024-10-01"
    rate: float | None = 300.0
    same_name_limit: int | None = 30
    same_name_window_s: float = 3600.0
    daily_limit: int | None = None
    content_type: Literal["honoured", "ignored"] = "honoured"
    upload_host: Literal["s3", "api"] = "s3"
    body_429: Literal["worded", "generic", "empty"] = "worded"
    content_types: frozenset[str] = frozenset(
        {"image/jpeg", "image/png", "image/webp", "image/heic", "image/tiff"}
    )
    max_size_bytes: int | None = None

    def __post_init__(self) -> None:
        choices = {
            "url_field": ("upload_url", "s3PutObjectUrl"),
            "content_type": ("honoured", "ignored"),
            "upload_host": ("s3", "api"),
            "body_429": ("worded", "generic", "empty"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if self.same_name_limit is not None and self.same_name_limit < 1:
            raise ValueError(f"same_name_limit must be >= 1, got {self.same_name_limit}")
        if self.same_name_window_s <= 0:
            raise ValueError(f"same_name_window_s must be > 0, got {self.same_name_window_s}")
        if self.daily_limit is not None and self.daily_limit < 0:
            raise ValueError(f"daily_limit must be >= 0, got {self.daily_limit}")
        if self.max_size_bytes is not None and self.max_size_bytes < 1:
            raise ValueError(f"max_size_bytes must be >= 1, got {self.max_size_bytes}")


@dataclass(frozen=True, slots=True)
class SimSettings:
    """How one emulator instance listens and behaves.

    `api_keys` None accepts any non-empty key; `port` 0 picks a free port;
    `store_dir`, when set, keeps every uploaded body under
    ``store_dir/<bucket>/<key>`` (otherwise only size and SHA-256 are kept).
    `stall_cap_s` bounds how long a stalled request is held. `url_lifetime_s`
    is the lifetime of every issued URL; None gives each provider its own
    (`PROVIDER_URL_LIFETIME_S`: ModelHunter's 15 minutes, Novita's 120 s).
    """

    host: str = "127.0.0.1"
    port: int = 0
    url_lifetime_s: float | None = None
    api_keys: frozenset[str] | None = None
    assets_id_as_string: bool = False
    faults: FaultPlan = field(default_factory=FaultPlan)
    store_dir: Path | None = None
    stall_cap_s: float = 300.0
    credentials: StorageCredentials = field(default_factory=StorageCredentials)
    # Upload URLs point at this S3-compatible server instead of the /s3 route (None: /s3).
    external_storage: ExternalStorage | None = None
    scenario: ScenarioSimSettings = field(default_factory=ScenarioSimSettings)
    novita: NovitaSimSettings = field(default_factory=NovitaSimSettings)
    modelhunter: ModelHunterSimSettings = field(default_factory=ModelHunterSimSettings)
    autoenhance: AutoenhanceSimSettings = field(default_factory=AutoenhanceSimSettings)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.url_lifetime_s is not None and self.url_lifetime_s <= 0:
            raise ValueError(f"url_lifetime_s must be > 0, got {self.url_lifetime_s}")
        if self.stall_cap_s <= 0:
            raise ValueError(f"stall_cap_s must be > 0, got {self.stall_cap_s}")
        if self.api_keys is not None and not all(self.api_keys):
            raise ValueError("api_keys must not contain an empty key")

    def lifetime_of(self, provider: str) -> float:
        """The lifetime of `provider`'s URLs unless the fault plan overrides it."""
        if self.url_lifetime_s is not None:
            return self.url_lifetime_s
        return PROVIDER_URL_LIFETIME_S.get(provider, DEFAULT_URL_LIFETIME_S)

    def describe_lifetime(self) -> str:
        """The URL lifetime in words, for the emulator's start-up line."""
        if self.url_lifetime_s is not None:
            return f"{self.url_lifetime_s:g} s"
        each = ", ".join(f"{name} {s:g} s" for name, s in PROVIDER_URL_LIFETIME_S.items())
        return f"each provider's ({each})"
