"""Settings: defaults, the TOML file, CLI overrides, and the secrets' variables.

Owns `RunSettings` (`[run]`), `Settings` (one command's effective settings)
and the loader. Each provider's section is its own class
(`ingest.providers.settings`, re-exported here). Every key is declared with
its default and its help (`ingest.schema.setting`); the flags,
`ingest config` and `config.example.toml` are generated from those
declarations. Unknown keys and wrong types are `ConfigError`s that name the
key (with a "did you mean" when one is close, and the owner when the key
belongs to another provider); a CLI flag beats the file. Secrets are never
read from the file, only from the environment variables it names.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ingest.errors import ConfigError
from ingest.providers.settings import DEFAULT_PROVIDERS, SETTINGS_CLASSES, ProviderSettings
from ingest.redact import key_variable_problem, keyish, preview, register_secret
from ingest.schema import Key, keys, setting

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "DEFAULT_PROVIDERS",
    "ProviderSettings",
    "RunSettings",
    "Settings",
    "elsewhere",
    "load_settings",
    "owners_of",
    "read_secrets",
    "secret_hint",
]


PutTransport = Literal["lean", "aiohttp"]  # the HTTP client of uploads and API calls (ingest.http)


@dataclass(frozen=True, slots=True)
class RunSettings:
    """`[run]`: how hard to push and how patient to be."""

    api_concurrency: int = setting(16, "provider API calls in flight at once")
    put_concurrency: int = setting(32, "uploads (PUTs) in flight at once")
    api_rate: float = setting(
        0.0, "API calls per second; 0 = unlimited until throttled, then adaptive"
    )
    lookahead: int = setting(8, "signed URLs allowed to wait for a free upload slot")
    max_mbps: float = setting(
        0.0,
        "MB/s, decimal (1 = 1,000,000 bytes a second; curl's and rclone's 1M is 1,048,576) of "
        "upload bodies, all uploads together (with --coordinator: every worker on the API "
        "key); 0 = unlimited",
    )
    max_attempts: int = setting(8, "tries of one step (the first included) before the item fails")
    retry_window_s: float = setting(
        90.0,
        "seconds; a transient error (network, timeout, 429, 5xx) is also retried at least this "
        "long before its item fails (0: max_attempts alone)",
    )
    max_resigns: int = setting(8, "new URLs per item after expiry before the item fails")
    backoff_base_s: float = setting(
        0.2, "seconds; the full-jitter backoff ceiling starts here and doubles"
    )
    backoff_cap_s: float = setting(30.0, "seconds; the backoff ceiling never exceeds this")
    max_pause_s: float = setting(
        60.0,
        "seconds; the longest wait a server's Retry-After may impose (longer ones are cut and reported)",
    )
    resign_margin_s: float = setting(
        15.0, "seconds; re-sign a URL with less than this left (at most 1/4 of its lifetime)"
    )
    connect_timeout_s: float = setting(10.0, "seconds to open a connection")
    read_timeout_s: float = setting(
        60.0,
        "seconds to wait for any data from a server, and for the rest of an answer once it "
        "began, before retrying",
    )
    put_transport: PutTransport = setting(
        "lean",
        "HTTP client of the uploads and API calls: lean (ingest's own kept-alive HTTP/1.1, "
        "less CPU a file) or aiohttp (the fallback)",
    )
    circuit_breaker: int = setting(
        25, "items failing in a row with the same error that stop the run"
    )
    journal_sync_interval_s: float = setting(
        0.5, "seconds between journal fsyncs (records reach the OS at once)"
    )
    status_interval_s: float = setting(10.0, "seconds between status lines when not on a terminal")
    allow_insecure_http: bool = setting(
        False, "allow plain-http upload URLs to hosts other than loopback"
    )
    convert: bool = setting(
        False,
        "convert images of a type the provider does not take to PNG (alpha) or JPEG "
        "(needs the convert extra)",
    )
    convert_quality: int = setting(90, "JPEG quality of converted images (1-100)")
    max_side: int = setting(
        0, "pixels; converted images are downscaled to fit (0: kept as they are)"
    )
    convert_workers: int = setting(
        0, "conversions at once (converter processes); 0 = one per CPU core"
    )
    convert_memory_mib: int = setting(
        512, "MiB of decoded pixels that conversions in progress may hold at once"
    )
    convert_timeout_s: float = setting(
        60.0, "seconds one image may take to convert before its converter is stopped and it fails"
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective settings of one command."""

    run: RunSettings = field(default_factory=RunSettings)
    providers: Mapping[str, ProviderSettings] = field(
        default_factory=lambda: dict(DEFAULT_PROVIDERS)
    )

    def provider(self, name: str) -> ProviderSettings:
        """The section of provider `name` (the common type; adapters narrow it with `of`)."""
        try:
            return self.providers[name]
        except KeyError:
            raise ConfigError(f"no settings for provider {name!r}", key="providers") from None


def owners_of(key: str) -> list[str]:
    """The providers whose section has `key`."""
    return [name for name, cls in SETTINGS_CLASSES.items() if any(k.name == key for k in keys(cls))]


def elsewhere(key: str, provider: str) -> str | None:
    """ "a scenario setting, not a novita one" when `key` is only another provider's; else None."""
    owners = [name for name in owners_of(key) if name != provider]
    if not owners or provider in owners_of(key):
        return None
    article = "an" if owners[0][0] in "aeiou" else "a"
    return f"{article} {' and '.join(owners)} setting, not a {provider} one"


def _did_you_mean(word: str, known: Collection[str]) -> str:
    import difflib  # only for a mistake (start-up time)

    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]}? " if close else ""


def _unknown_key(section: str, key: str, base: Any, provider: str | None) -> ConfigError:
    names = [k.name for k in keys(type(base))]
    full = f"{section}.{key}"
    owned = elsewhere(key, provider) if provider else None
    if owned:
        return ConfigError(owned, key=full)
    secret = secret_hint(key, base if f"{key}_env" in names else None)
    if secret:
        return ConfigError(
            f"unknown key; secrets are never read from the config file: {secret}", key=full
        )
    return ConfigError(
        f"unknown key; {_did_you_mean(key, names)}(known keys: {', '.join(names)})", key=full
    )


def secret_hint(key: str, section: ProviderSettings | None = None) -> str | None:
    """Where the value of a secret given as `key` (`api_key`, `api_secret`) belongs, or None.

    `section`: the provider's settings, whose `{key}_env` names the variable;
    without one, every provider that has such a key is named. None when no
    provider has a `{key}_env`.
    """
    field_name = f"{key}_env"
    sections = {"": section} if section is not None else DEFAULT_PROVIDERS
    named = {
        owner: getattr(values, field_name)
        for owner, values in sections.items()
        if field_name in {k.name for k in keys(type(values))}
    }
    if not named:
        return None
    where = ", ".join(
        f"{variable} for {owner}" if owner else variable for owner, variable in named.items()
    )
    return f"put the value in the environment variable that {field_name} names (now {where})"


def _coerce(key: str, value: Any, spec: Key) -> Any:
    """Check one value against its key's type; ints are accepted for floats."""
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"expected true or false, got {value!r}", key=key)
    if spec.kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"expected an integer, got {value!r}", key=key)
    if spec.kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"expected a number, got {value!r}", key=key)
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {value!r}", key=key)
    if spec.choices and value not in spec.choices:
        raise ConfigError(
            f"must be one of {', '.join(spec.choices)}, got {value!r}; "
            f"{_did_you_mean(value, spec.choices)}".rstrip("; "),
            key=key,
        )
    return value


S = TypeVar("S", bound="DataclassInstance")


def _replace(section: str, base: S, table: Mapping[str, Any], provider: str | None = None) -> S:
    specs = {k.name: k for k in keys(type(base))}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key not in specs:
            raise _unknown_key(section, key, base, provider)
        changes[key] = _coerce(f"{section}.{key}", value, specs[key])
    result = dataclasses.replace(base, **changes)
    _check_ranges(section, result)
    return result


def _check_ranges(section: str, value: object) -> None:
    if isinstance(value, RunSettings):
        for name in ("api_concurrency", "put_concurrency", "max_attempts", "circuit_breaker"):
            if getattr(value, name) < 1:
                raise ConfigError("must be at least 1", key=f"{section}.{name}")
    if isinstance(value, RunSettings) and not math.isfinite(value.max_mbps):
        raise ConfigError("must be a finite number (0: unlimited)", key=f"{section}.max_mbps")
    for spec in keys(type(value)):
        number = getattr(value, spec.name)
        if spec.kind in ("int", "float") and number < 0:
            raise ConfigError("must not be negative", key=f"{section}.{spec.name}")


def load_settings(
    path: Path | None = None,
    *,
    run_overrides: Mapping[str, Any] | None = None,
    provider_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Defaults, then the TOML file at `path`, then CLI overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        import tomllib  # only when there is a file (start-up time)

        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    for name in sorted(set(data) - {"run", "providers"}):
        if secret := secret_hint(name):
            raise ConfigError(f"secrets are never read from the config file: {secret}", key=name)
        if name in {f.name for f in dataclasses.fields(RunSettings)}:  # the table line forgotten
            raise ConfigError(
                f"a [run] setting outside its table: put it under [run] in {path}", key=name
            )
        hint = _did_you_mean(name, ("run", "providers"))
        raise ConfigError(f"unknown section; {hint}(known: run, providers)", key=name)
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
            hint = _did_you_mean(name, providers)
            known = ", ".join(sorted(providers))
            raise ConfigError(f"unknown provider; {hint}(known: {known})", key=f"providers.{name}")
        section = table.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError("expected a table", key=f"providers.{name}")
        merged = {**section, **((provider_overrides or {}).get(name, {}))}
        providers[name] = _replace(f"providers.{name}", providers[name], merged, provider=name)
    return Settings(run=run, providers=providers)


def check_key_variable(provider: str, field_name: str, variable: str) -> None:
    """A `ConfigError` when a key-variable setting holds no variable name (a pasted key)."""
    problem = key_variable_problem(f"providers.{provider}.{field_name}", variable)
    if problem is not None:
        raise ConfigError(problem)


def read_secrets(name: str, settings: ProviderSettings, fields: tuple[str, ...]) -> dict[str, str]:
    """The secret values named by `fields` (e.g. `api_key_env`), from the environment.

    A missing or empty variable is a `ConfigError` naming the variable and the
    key that names it. Every value read is registered for redaction.
    """
    secrets: dict[str, str] = {}
    for field_name in fields:
        variable = getattr(settings, field_name)
        check_key_variable(name, field_name, variable)
        value = os.environ.get(variable, "") if variable else ""
        if not value.strip() and keyish(variable):  # the key pasted as the variable's name
            raise ConfigError(
                f"environment variable {preview(variable)} is not set, and it looks like a key: "
                "put the key in the environment and name the variable here",
                key=f"providers.{name}.{field_name}",
            )
        if not value.strip():
            raise ConfigError(
                f"environment variable {variable or '(unset)'} is empty or not set; "
                f"export your {name} API credentials there",
                key=f"providers.{name}.{field_name}",
            )
        secrets[field_name] = sendable_secret(value, name, field_name, variable)
    return secrets


def sendable_secret(value: str, name: str, field_name: str, variable: str) -> str:
    """`value` stripped and registered for redaction; a `ConfigError` naming the
    variable (never the value) when a control character inside it cannot be sent."""
    value = value.strip()
    register_secret(value)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(
            f"environment variable {variable} holds a control character (a line break "
            f"or CR inside the value?); export your {name} API key on one line",
            key=f"providers.{name}.{field_name}",
        )
    return value
