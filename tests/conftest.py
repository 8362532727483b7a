"""Shared test setup: anyio on asyncio for every async test, and Hypothesis without
its per-example time limit.

Hypothesis fails an example that takes over 200 ms by default: a limit on the
machine's speed, which a test must not depend on (a loaded CI machine made
`test_digestset::test_matches_a_python_set` fail once that way). Examples stay
bounded by their counts (`max_examples`), and pytest-timeout bounds each test.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

settings.register_profile("ingest", deadline=None)
settings.load_profile("ingest")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
