"""Command-line flags for every settings key, generated from the settings schema.

Every `[run]` key and every `[providers.NAME]` key gets a flag (`put_concurrency`
→ `--put-concurrency`); a flag that is given wins over the config file.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

from ingest.config import HELP, ProviderSettings, RunSettings, Settings, load_settings

_RUN = "run__"
_PROVIDER = "provider__"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_fields(group: Any, cls: type, prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        kwargs: dict[str, Any] = {
            "dest": prefix + f.name,
            "default": None,
            "help": HELP.get(f.name, ""),
        }
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = hint
            kwargs["metavar"] = {int: "N", float: "X", str: "TEXT"}[hint]
        group.add_argument(_flag(f.name), **kwargs)


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """`--config` and one flag per settings key."""
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (default: ./ingest.toml if present)"
    )
    _add_fields(
        parser.add_argument_group("run settings (override the config file)"), RunSettings, _RUN
    )
    _add_fields(
        parser.add_argument_group("provider settings (for the chosen --provider)"),
        ProviderSettings,
        _PROVIDER,
    )


def settings_from_args(args: argparse.Namespace, provider: str | None) -> Settings:
    """Defaults, then the config file, then the flags given."""
    config = args.config
    if config is None and Path("ingest.toml").exists():
        config = Path("ingest.toml")
    run = {k[len(_RUN) :]: v for k, v in vars(args).items() if k.startswith(_RUN) and v is not None}
    chosen = {
        k[len(_PROVIDER) :]: v
        for k, v in vars(args).items()
        if k.startswith(_PROVIDER) and v is not None
    }
    providers = {provider: chosen} if provider and chosen else {}
    return load_settings(config, run_overrides=run, provider_overrides=providers)
