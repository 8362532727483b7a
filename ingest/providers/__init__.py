"""Provider adapters, one module (Scenario: one folder) each, found by name.

The names and the typed registry are in `ingest.providers.registry`;
re-exported here because the rest of the code imports them from this
package. Modules are imported only when their provider is used, so a
command that never talks to a provider never imports aiohttp.
"""

from __future__ import annotations

from ingest.providers.registry import (
    PROVIDER_NAMES,
    ProviderName,
    is_provider_name,
    provider_class,
    provider_name,
)

__all__ = ["PROVIDER_NAMES", "ProviderName", "is_provider_name", "provider_class", "provider_name"]
