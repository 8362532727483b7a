"""Command-line flags for every settings key, generated from the settings schema.

Every `[run]` key and every key of any `[providers.NAME]` section gets one
flag (`put_concurrency` → `--put-concurrency`), whose help is the key's own
(`ingest.schema`); a flag that is given wins over the config file. A key only
some providers have says which in its help, and giving it with another
`--provider` is an error that names its owner ("--model-id is a scenario
setting, not a novita one") instead of being ignored.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeVar

from ingest.config import RunSettings, Settings, elsewhere, load_settings, owners_of
from ingest.errors import ConfigError
from ingest.providers.settings import SETTINGS_CLASSES
from ingest.schema import Key, keys

_RUN = "run__"
_PROVIDER = "provider__"
_METAVARS = {"int": "N", "float": "X", "str": "TEXT"}
_TYPES: dict[str, type] = {"int": int, "float": float, "str": str}


def provider_keys() -> list[Key]:
    """Every key of any provider's section, once each, in declaration order."""
    seen: dict[str, Key] = {}
    for cls in SETTINGS_CLASSES.values():
        for key in keys(cls):
            seen.setdefault(key.name, key)
    common = [k for k in seen.values() if len(owners_of(k.name)) == len(SETTINGS_CLASSES)]
    return common + [k for k in seen.values() if k not in common]


def _add(group: Any, key: Key, prefix: str, help_text: str) -> None:
    kwargs: dict[str, Any] = {"dest": prefix + key.name, "default": None, "help": help_text}
    if key.kind == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif key.choices:
        kwargs["choices"] = key.choices
    else:
        kwargs["type"] = _TYPES[key.kind]
        kwargs["metavar"] = _METAVARS[key.kind]
    group.add_argument(key.flag, **kwargs)


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """`--config` and one flag per settings key."""
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (default: ./ingest.toml if present)"
    )
    run = parser.add_argument_group("run settings (override the config file)")
    for key in keys(RunSettings):
        _add(run, key, _RUN, key.help)
    add_provider_flags(parser)


def add_provider_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per provider settings key but those in `skip` (read with `provider_flags`)."""
    group = parser.add_argument_group("provider settings (for the chosen --provider)")
    for key in provider_keys():
        if key.name in skip:
            continue
        owners = owners_of(key.name)
        only = "" if len(owners) == len(SETTINGS_CLASSES) else f" [{', '.join(owners)}]"
        _add(group, key, _PROVIDER, key.help + only)


def fault_plan(text: str) -> str:
    """An argparse type: an emulator fault plan, checked (`FaultPlan.parse`), kept as text.

    A bad plan is a usage error (exit 2) naming the item and, for an unknown
    name, every valid one.
    """
    if not text:  # the flags' default: no plan, and no import of the emulator
        return text  # (argparse passes defaults through `type`: ~15 % of a 2,000-file run)
    from ingest.sim.faults import FaultPlan

    try:
        FaultPlan.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    return _above_zero(text, float, "a number of seconds")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    return _above_zero(text, int, "a whole number")


_N = TypeVar("_N", int, float)


def _above_zero(text: str, convert: type[_N], noun: str) -> _N:
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _given(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    return {
        k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None
    }


def provider_flags(args: argparse.Namespace, provider: str | None) -> dict[str, Any]:
    """The provider settings given as flags; a `ConfigError` for one `provider` lacks."""
    chosen = _given(args, _PROVIDER)
    for name in chosen:
        flag = "--" + name.replace("_", "-")
        if provider is None:
            raise ConfigError(f"{flag} is a provider setting: name the provider with --provider")
        owned = elsewhere(name, provider)
        if owned:
            raise ConfigError(f"{flag} is {owned}")
    return chosen


def settings_from_args(args: argparse.Namespace, provider: str | None) -> Settings:
    """Defaults, then the config file, then the flags given."""
    config = args.config
    if config is None and Path("ingest.toml").exists():
        config = Path("ingest.toml")
    chosen = provider_flags(args, provider)
    providers = {provider: chosen} if provider and chosen else {}
    return load_settings(config, run_overrides=_given(args, _RUN), provider_overrides=providers)
