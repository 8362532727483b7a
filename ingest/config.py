"""Settings: defaults, the TOML file, CLI overrides, and the secrets' variables.

Owns the schema. Every key has a default here, documented in
`config.example.toml`; unknown keys and wrong types are `ConfigError`s that
name the key; a CLI flag beats the file. Secrets are never read from the file,
only from the environment variables it names.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.errors import ConfigError
from ingest.redact import register_secret


@dataclass(frozen=True, slots=True)
class RunSettings:
    """`[run]`: how hard to push and how patient to be."""

    api_concurrency: int = 16
    put_concurrency: int = 32
    api_rate: float = 0.0  # API calls/s; 0 = unlimited until the provider throttles
    lookahead: int = 8  # signed targets waiting for a free PUT slot
    max_attempts: int = 8
    max_resigns: int = 8
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 30.0
    max_pause_s: float = 60.0  # longest wait a Retry-After may impose (longer ones are cut)
    resign_margin_s: float = 15.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    circuit_breaker: int = 25  # consecutive failures of one kind that stop the run
    journal_sync_interval_s: float = 0.5
    status_interval_s: float = 10.0
    allow_insecure_http: bool = False


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """`[providers.NAME]`: where the provider is and how to authenticate."""

    base_url: str
    api_key_env: str
    api_secret_env: str = ""
    url_lifetime_s: float = 0.0  # used when a URL carries no expiry; 0 = provider default
    max_size_mb: float = 0.0  # 0 = the provider's documented limit
    order_id: str = ""  # autoenhance
    model_id: str = ""  # scenario
    mode: str = ""  # scenario: inline | assets
    preset: str = ""  # scenario
    api_version: str = ""  # autoenhance

    @property
    def max_size(self) -> int | None:
        return int(self.max_size_mb * 1024 * 1024) if self.max_size_mb > 0 else None


HELP: Mapping[str, str] = {
    # [run]
    "api_concurrency": "provider API calls in flight at once",
    "put_concurrency": "uploads (PUTs) in flight at once",
    "api_rate": "API calls per second; 0 = unlimited until throttled, then adaptive",
    "lookahead": "signed URLs allowed to wait for a free upload slot",
    "max_attempts": "tries of one step (the first included) before the item fails",
    "max_resigns": "new URLs per item after expiry before the item fails",
    "backoff_base_s": "seconds; the full-jitter backoff ceiling starts here and doubles",
    "backoff_cap_s": "seconds; the backoff ceiling never exceeds this",
    "max_pause_s": "seconds; the longest wait a server's Retry-After may impose (longer ones are cut and reported)",
    "resign_margin_s": "seconds; re-sign a URL with less than this left (at most 1/4 of its lifetime)",
    "connect_timeout_s": "seconds to open a connection",
    "read_timeout_s": "seconds to wait for any data from a server before retrying",
    "circuit_breaker": "items failing in a row with the same error that stop the run",
    "journal_sync_interval_s": "seconds between journal fsyncs (records reach the OS at once)",
    "status_interval_s": "seconds between status lines when not on a terminal",
    "allow_insecure_http": "allow plain-http upload URLs to hosts other than loopback",
    # [providers.NAME]
    "base_url": "the provider's API base URL",
    "api_key_env": "the environment variable holding the API key",
    "api_secret_env": "the environment variable holding the API secret (scenario)",
    "url_lifetime_s": "seconds; a URL's lifetime when it carries no expiry (0 = provider default)",
    "max_size_mb": "MiB; files above are rejected locally (0 = no local limit)",
    "order_id": "autoenhance: the order to add images to (empty: one per journal)",
    "model_id": "scenario: the model to attach training images to",
    "mode": "scenario: inline | assets",
    "preset": "scenario: default | style | subject",
    "api_version": "autoenhance: the x-api-version header (empty: the account's default)",
}
"""One line per key: the help of its CLI flag and its comment in config.example.toml."""


DEFAULT_PROVIDERS: Mapping[str, ProviderSettings] = {
    "novita": ProviderSettings(
        base_url="https://api.novita.ai", api_key_env="NOVITA_API_KEY", url_lifetime_s=120.0
    ),
    "modelhunter": ProviderSettings(
        base_url="https://api.modelhunter.ai",
        api_key_env="MODELHUNTER_API_KEY",
        url_lifetime_s=900.0,
        max_size_mb=100.0,
    ),
    "autoenhance": ProviderSettings(
        base_url="https://api.autoenhance.ai", api_key_env="AUTOENHANCE_API_KEY"
    ),
    "scenario": ProviderSettings(
        base_url="https://api.cloud.scenario.com/v1",
        api_key_env="SCENARIO_API_KEY",
        api_secret_env="SCENARIO_API_SECRET",
        mode="assets",
        preset="default",
    ),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective settings of one command."""

    run: RunSettings = field(default_factory=RunSettings)
    providers: Mapping[str, ProviderSettings] = field(
        default_factory=lambda: dict(DEFAULT_PROVIDERS)
    )

    def provider(self, name: str) -> ProviderSettings:
        try:
            return self.providers[name]
        except KeyError:
            raise ConfigError(f"no settings for provider {name!r}", key="providers") from None


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check one value against its field's type; ints are accepted for floats."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"expected true or false, got {value!r}", key=key)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"expected an integer, got {value!r}", key=key)
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"expected a number, got {value!r}", key=key)
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"expected a string, got {value!r}", key=key)
    raise AssertionError(f"unsupported settings type {hint!r}")  # pragma: no cover


def _replace(section: str, base: Any, table: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(type(base))
    names = {f.name for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{section}.{key}"
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown key (known keys: {known})", key=full)
        changes[key] = _coerce(full, value, hints[key])
    result = dataclasses.replace(base, **changes)
    _check_ranges(section, result)
    return result


def _check_ranges(section: str, value: Any) -> None:
    if isinstance(value, RunSettings):
        for name in ("api_concurrency", "put_concurrency", "max_attempts", "circuit_breaker"):
            if getattr(value, name) < 1:
                raise ConfigError("must be at least 1", key=f"{section}.{name}")
        for f in dataclasses.fields(value):
            number = getattr(value, f.name)
            if isinstance(number, int | float) and not isinstance(number, bool) and number < 0:
                raise ConfigError("must not be negative", key=f"{section}.{f.name}")


def load_settings(
    path: Path | None = None,
    *,
    run_overrides: Mapping[str, Any] | None = None,
    provider_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Defaults, then the TOML file at `path`, then CLI overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    unknown = set(data) - {"run", "providers"}
    if unknown:
        raise ConfigError("unknown section (known: run, providers)", key=sorted(unknown)[0])
    run_table = data.get("run", {})
    if not isinstance(run_table, dict):
        raise ConfigError("expected a table", key="run")
    run = _replace("run", RunSettings(), {**run_table, **(run_overrides or {})})
    providers = dict(DEFAULT_PROVIDERS)
    table = data.get("providers", {})
    if not isinstance(table, dict):
        raise ConfigError("expected a table", key="providers")
    for name in sorted(set(table) | set(provider_overrides or {})):
        if name not in providers:
            known = ", ".join(sorted(providers))
            raise ConfigError(f"unknown provider (known: {known})", key=f"providers.{name}")
        section = table.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError("expected a table", key=f"providers.{name}")
        merged = {**section, **((provider_overrides or {}).get(name, {}))}
        providers[name] = _replace(f"providers.{name}", providers[name], merged)
    return Settings(run=run, providers=providers)


def read_secrets(name: str, settings: ProviderSettings, fields: tuple[str, ...]) -> dict[str, str]:
    """The secret values named by `fields` (e.g. `api_key_env`), from the environment.

    A missing or empty variable is a `ConfigError` naming the variable and the
    key that names it. Every value read is registered for redaction.
    """
    secrets: dict[str, str] = {}
    for field_name in fields:
        variable = getattr(settings, field_name)
        value = os.environ.get(variable, "") if variable else ""
        if not value.strip():
            raise ConfigError(
                f"environment variable {variable or '(unset)'} is empty or not set; "
                f"export your {name} API credentials there",
                key=f"providers.{name}.{field_name}",
            )
        register_secret(value.strip())
        secrets[field_name] = value.strip()
    return secrets
