"""fixes16: defects found in review, each with the test that showed it."""

from __future__ import annotations

import socket
import sys
import types

import aiohttp
import pytest

from ingest.errors import Action
from tests.unit.test_fixes10 import _tries


class _DNSError(Exception):
    """`aiodns.error.DNSError`: raised as ``DNSError(code, pycares.errno.strerror(code))``."""


def _aiodns_error(code: int, text: str) -> aiohttp.ClientConnectorDNSError:
    """As aiohttp's `AsyncResolver.resolve` and `TCPConnector` build it with aiodns:
    ``raise OSError(None, msg) from DNSError(code, msg)``, then
    ``ClientConnectorDNSError(key, that OSError)``."""
    os_error = OSError(None, text)
    os_error.__cause__ = _DNSError(code, text)
    key = aiohttp.client_reqrep.ConnectionKey("images.example", 80, False, True, None, None, None)
    return aiohttp.ClientConnectorDNSError(key, os_error)


@pytest.fixture
def aiodns(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiodns is not a dependency: its error module as aiohttp would have imported it."""
    errors = types.ModuleType("aiodns.error")
    errors.DNSError = _DNSError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiodns.error", errors)


@pytest.mark.usefixtures("aiodns")
def test_an_aiodns_timeout_gets_the_runs_retry_budget_its_name_not_found_three_tries() -> None:
    # With aiodns installed only getaddrinfo's EAI_AGAIN was temporary: c-ares's timeout
    # (ARES_ETIMEOUT, 12) was refused as a name not found after 3 short tries.
    again, err = _tries(_aiodns_error(12, "Timeout while contacting DNS servers"))
    assert again >= 8 and err.action is Action.FAIL_ITEM  # 8 tries and 90 s, as any outage
    assert err.message == (
        "cannot reach the source: host not found (Timeout while contacting DNS servers) "
        f"(after {again} tries): http://images.example/x.png"
    )
    unreached, _ = _tries(_aiodns_error(11, "Could not contact DNS servers"))  # ECONNREFUSED
    assert unreached >= 8
    unknown, _ = _tries(_aiodns_error(4, "Domain name not found"))  # ARES_ENOTFOUND
    assert unknown == 3


def test_a_gaierror_is_still_read_by_its_errno() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("images.example", 80, False, True, None, None, None)
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    tries, _ = _tries(aiohttp.ClientConnectorDNSError(key, unknown))
    assert tries == 3
