"""The providers by name: the closed set of names and the adapter class of each.

Owns `ProviderName` (the names, a `Literal`), `PROVIDER_NAMES` and
`provider_class`.

How it works: one small loader per provider imports its adapter module and
returns the class. The loader's return annotation is the `ProviderClass`
protocol, so mypy checks every adapter class against the class-level seam
(`capabilities`, `auth_headers`, `run_params`, `export_document`, `key_envs`,
the constructor) where it is handed out; nothing is typed `Any`.

Invariants: an adapter module is imported only when its provider is asked
for, so a command that never talks to a provider never imports aiohttp;
`PROVIDER_NAMES` is sorted and equals the `Literal`'s members.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal, TypeGuard, get_args

from ingest.errors import ConfigError

if TYPE_CHECKING:
    from ingest.providers.base import ProviderClass

ProviderName = Literal["autoenhance", "modelhunter", "novita", "scenario"]
PROVIDER_NAMES: tuple[ProviderName, ...] = tuple(sorted(get_args(ProviderName)))


def _autoenhance() -> ProviderClass:
    from ingest.providers.autoenhance import AutoenhanceProvider

    return AutoenhanceProvider


def _modelhunter() -> ProviderClass:
    from ingest.providers.modelhunter import ModelHunterProvider

    return ModelHunterProvider


def _novita() -> ProviderClass:
    from ingest.providers.novita import NovitaProvider

    return NovitaProvider


def _scenario() -> ProviderClass:
    from ingest.providers.scenario import ScenarioProvider

    return ScenarioProvider


_LOADERS: Mapping[ProviderName, Callable[[], ProviderClass]] = {
    "autoenhance": _autoenhance,
    "modelhunter": _modelhunter,
    "novita": _novita,
    "scenario": _scenario,
}


def is_provider_name(name: str) -> TypeGuard[ProviderName]:
    return name in _LOADERS


def provider_name(name: str) -> ProviderName:
    """`name` as a `ProviderName`; a `ConfigError` listing the known ones if it is not."""
    if not is_provider_name(name):
        known = ", ".join(PROVIDER_NAMES)
        raise ConfigError(f"unknown provider {name!r} (known: {known})", key="provider")
    return name


def provider_class(name: str) -> ProviderClass:
    """The adapter class registered under `name` (a journal header's name is checked too)."""
    return _LOADERS[provider_name(name)]()
