"""Provider adapters, one module each, found by name.

Modules are imported only when their provider is used, so a command that
never talks to a provider never imports aiohttp.
"""

from __future__ import annotations

import importlib
from typing import Any

from ingest.errors import ConfigError

_MODULES: dict[str, tuple[str, str]] = {
    "autoenhance": ("ingest.providers.autoenhance", "AutoenhanceProvider"),
    "modelhunter": ("ingest.providers.modelhunter", "ModelHunterProvider"),
    "novita": ("ingest.providers.novita", "NovitaProvider"),
    "scenario": ("ingest.providers.scenario", "ScenarioProvider"),
}

PROVIDER_NAMES: tuple[str, ...] = tuple(sorted(_MODULES))


def provider_class(name: str) -> Any:
    """The adapter class registered under `name`."""
    try:
        module_name, class_name = _MODULES[name]
    except KeyError:
        known = ", ".join(PROVIDER_NAMES)
        raise ConfigError(f"unknown provider {name!r} (known: {known})", key="provider") from None
    return getattr(importlib.import_module(module_name), class_name)
