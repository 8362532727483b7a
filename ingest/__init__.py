"""ingest: upload image datasets to providers' pre-signed URLs, resumably.

The library's public names; the command line lives in `ingest.cli`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
