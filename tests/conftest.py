"""Shared test setup: anyio on asyncio for every async test, and Hypothesis without
its per-example time limit.

Hypothesis fails an example that takes over 200 ms by default: a limit on the
machine's speed, which a test must not depend on (a loaded CI machine made
`test_digestset::test_matches_a_python_set` fail once that way). Examples stay
bounded by their counts (`max_examples`), and pytest-timeout bounds each test.

The package's bytecode is written once, before any test: the suite's second
set-up command installs it editable, and where PYTHONDONTWRITEBYTECODE is set
(it is on these machines) every `ingest` process a test starts would otherwise
compile every module again, ~0.3 s of CPU each, as no regular install does.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import pytest
from hypothesis import settings

import ingest

settings.register_profile("ingest", deadline=None)
settings.load_profile("ingest")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # once, in xdist's controller (or a plain run)
        compileall.compile_dir(str(Path(ingest.__file__).parent), quiet=1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
