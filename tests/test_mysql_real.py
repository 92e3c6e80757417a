"""MySQL-protocol TLS upgrade against real MariaDB instances (tests/servers/mariadb.py)."""

from __future__ import annotations

import pytest

from tests.servers.mariadb import MariaDBServer
from tests.support.realchain import assert_exact_chain, probe_one
from tlswatch.errors import FailureClass


@pytest.mark.parametrize("scheme", ["mariadb", "mysql"])
async def test_mariadb_ssl_request_yields_exact_chain(
    mariadb_tls: MariaDBServer, scheme: str
) -> None:
    """mysql:// and mariadb:// read the greeting, send SSLRequest and yield the exact
    chain; the server version (without MariaDB's 5.5.5- prefix) is in the upgrade info."""
    assert mariadb_tls.leaf is not None
    ep = await probe_one(f"{scheme}://127.0.0.1:{mariadb_tls.port}")
    assert_exact_chain(ep, mariadb_tls.leaf)
    info = ep.observation.upgrade
    assert "MariaDB" in info["server_version"]
    assert not info["server_version"].startswith("5.5.5-")
    assert int(info["capabilities"], 16) & 0x0800
    assert ep.timings.upgrade is not None


async def test_mariadb_skip_ssl_does_not_offer_tls(mariadb_no_tls: MariaDBServer) -> None:
    """MariaDB started with --skip-ssl lacks CLIENT_SSL: upgrade_not_offered."""
    ep = await probe_one(f"mariadb://127.0.0.1:{mariadb_no_tls.port}?timeout=5")
    assert ep.error is not None
    assert ep.error.code is FailureClass.UPGRADE_NOT_OFFERED
    assert "CLIENT_SSL" in ep.error.message
    assert "MariaDB" in ep.error.message
    assert ep.chain == ()
