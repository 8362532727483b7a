"""Package names imported on first use, so importing a package costs only what is used.

Owns `lazy_names`: the module `__getattr__` of a package whose ``__init__``
names what its submodules define (`ingest.manifest`, `ingest.manifest.packed`,
`ingest.journal`). Such a package imports its names under ``TYPE_CHECKING``
(for the type checker) and sets ``__getattr__ = lazy_names(...)``; the first
lookup of a name imports its module and stores the value in the package, so
later lookups never reach the function.

Invariant: a name not in the table is an `AttributeError`, as for any module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module `__getattr__`: name -> the value of that name in module `homes[name]`."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    return __getattr__
