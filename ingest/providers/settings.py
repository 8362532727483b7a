"""Each provider's settings section, `[providers.NAME]`: one frozen dataclass per provider.

Owns `ProviderSettings` (what every provider has: where it is, which
variable holds its key, the local limits), one subclass per provider with
its defaults and its own keys, `SETTINGS_CLASSES` (name → class) and
`DEFAULT_PROVIDERS` (name → defaults).

How it works: a provider's class declares only what that provider uses
(Scenario's `model_id`, `mode`, `preset` and `api_secret_env`; Autoenhance's
`order_id` and `api_version`), with each key's help beside it
(`ingest.schema.setting`). The loader (`ingest.config`), the flags and
`config.example.toml` are read from these classes, so a key of another
provider is an error that names its owner. Callers that serve every provider
hold the common base type; an adapter takes its own class with `of`.

Invariants: importing this module imports no adapter (nothing of aiohttp);
`key_envs` lists the fields naming environment variables that hold secrets,
which are never read from a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, Self, get_args

from ingest.providers.registry import ProviderName
from ingest.schema import inherit, setting


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """What every provider's section has (the base every caller can hold)."""

    key_envs: ClassVar[tuple[str, ...]] = ("api_key_env",)

    base_url: str = setting("", "the provider's API base URL")
    api_key_env: str = setting("", "the environment variable holding the API key")
    url_lifetime_s: float = setting(
        0.0, "seconds; a URL's lifetime when it carries no expiry (0 = provider default)"
    )
    max_size_mb: float = setting(
        0.0, "MiB (1 = 1,048,576 bytes); files above are rejected locally (0 = no local limit)"
    )

    @property
    def max_size(self) -> int | None:
        return int(self.max_size_mb * 1024 * 1024) if self.max_size_mb > 0 else None

    @classmethod
    def of(cls, settings: ProviderSettings) -> Self:
        """`settings` as this provider's own class (what an adapter reads its keys from)."""
        if isinstance(settings, cls):
            return settings
        raise TypeError(
            f"{cls.__name__} expected, got {type(settings).__name__} "
            "(start from ingest.config.DEFAULT_PROVIDERS or load_settings)"
        )


@dataclass(frozen=True, slots=True)
class NovitaSettings(ProviderSettings):
    """`[providers.novita]`."""

    base_url: str = inherit(ProviderSettings, "base_url", "https://api.novita.ai")
    api_key_env: str = inherit(ProviderSettings, "api_key_env", "NOVITA_API_KEY")
    url_lifetime_s: float = inherit(ProviderSettings, "url_lifetime_s", 120.0)


@dataclass(frozen=True, slots=True)
class ModelHunterSettings(ProviderSettings):
    """`[providers.modelhunter]`."""

    base_url: str = inherit(ProviderSettings, "base_url", "https://api.modelhunter.ai")
    api_key_env: str = inherit(ProviderSettings, "api_key_env", "MODELHUNTER_API_KEY")
    url_lifetime_s: float = inherit(ProviderSettings, "url_lifetime_s", 900.0)
    max_size_mb: float = setting(
        0.0,
        "MiB (1 = 1,048,576 bytes); files above are rejected locally (0 = its image limit, "
        "50 MB = 50,000,000 bytes)",
    )


@dataclass(frozen=True, slots=True)
class AutoenhanceSettings(ProviderSettings):
    """`[providers.autoenhance]`: every image of a run goes into one order."""

    base_url: str = inherit(ProviderSettings, "base_url", "https://api.autoenhance.ai")
    api_key_env: str = inherit(ProviderSettings, "api_key_env", "AUTOENHANCE_API_KEY")
    order_id: str = setting("", "the order to add images to (empty: one new order per journal)")
    api_version: str = setting("", "the x-api-version header (empty: the account's default)")


ScenarioMode = Literal["assets", "inline"]
ScenarioPreset = Literal["default", "style", "subject"]
SCENARIO_MODES: tuple[ScenarioMode, ...] = get_args(ScenarioMode)
SCENARIO_PRESETS: tuple[ScenarioPreset, ...] = get_args(ScenarioPreset)


@dataclass(frozen=True, slots=True)
class ScenarioSettings(ProviderSettings):
    """`[providers.scenario]`: training images of one model."""

    key_envs: ClassVar[tuple[str, ...]] = ("api_key_env", "api_secret_env")

    base_url: str = inherit(ProviderSettings, "base_url", "https://api.cloud.scenario.com/v1")
    api_key_env: str = inherit(ProviderSettings, "api_key_env", "SCENARIO_API_KEY")
    api_secret_env: str = setting(
        "SCENARIO_API_SECRET", "the environment variable holding the API secret"
    )
    model_id: str = setting("", "the model to attach training images to (required to run)")
    mode: ScenarioMode = setting(
        "assets", "assets: upload, then attach 10 a call; inline: an image attached as it is sent"
    )
    preset: ScenarioPreset = setting("default", "the training-image preset")


SETTINGS_CLASSES: Mapping[ProviderName, type[ProviderSettings]] = {
    "autoenhance": AutoenhanceSettings,
    "modelhunter": ModelHunterSettings,
    "novita": NovitaSettings,
    "scenario": ScenarioSettings,
}

DEFAULT_PROVIDERS: Mapping[str, ProviderSettings] = {
    name: cls() for name, cls in SETTINGS_CLASSES.items()
}
"""Each provider's defaults, the base of every loaded section."""
