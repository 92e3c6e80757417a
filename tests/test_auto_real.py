"""auto:// (and bare host:port on an unknown port) identifies real servers on
non-standard ports: by greeting, by a ClientHello answered with TLS, or by a
client-speaks-first probe, then probes them with the right method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tlswatch.probe import check_target
from tlswatch.targets import parse_target

# (fixture, port of the fixture value, detected scheme, chain expected)
SERVERS: dict[str, tuple[str, Callable[[Any], int], str, bool]] = {
    "haproxy-implicit": ("haproxy_tls", lambda s: s.port, "tls", True),
    "slapd-ldaps": ("slapd_servers", lambda s: s.ldaps_port, "tls", True),
    "slapd-starttls": ("slapd_servers", lambda s: s.starttls_port, "ldap", True),
    "postgres": ("postgres_tls", lambda s: s.port, "postgres", True),
    "mariadb": ("mariadb_tls", lambda s: s.port, "mysql", True),
    "vsftpd": ("vsftpd_servers", lambda s: s.explicit_port, "ftp", True),
    "xrdp": ("xrdp_servers", lambda s: s.tls_port, "rdp", True),
    "tigervnc": ("vnc_servers", lambda s: s.x509_port, "vnc", True),
    "nats": ("nats_servers", lambda s: s.tls_port, "nats", True),
    "tds-script": ("tds_servers", lambda s: s.ports["tds"], "mssql", True),
}


@pytest.mark.parametrize("name", sorted(SERVERS))
async def test_auto_identifies(request: pytest.FixtureRequest, name: str) -> None:
    """auto:// reports the protocol it detected and returns the server's own leaf."""
    fixture, port_of, scheme, has_chain = SERVERS[name]
    server = request.getfixturevalue(fixture)
    result = await check_target(parse_target(f"auto://127.0.0.1:{port_of(server)}?timeout=3"))
    (ep,) = result.endpoints
    assert ep.observation.upgrade.get("detected") == scheme, (ep.observation.upgrade, ep.error)
    assert result.protocol == scheme
    if has_chain:
        assert ep.error is None, ep.error
        assert ep.chain and ep.chain[0].sha256 == server.leaf.leaf_sha256


async def test_bare_unknown_port_is_auto(request: pytest.FixtureRequest) -> None:
    """A bare host:port whose port names no protocol is probed as auto://."""
    server = request.getfixturevalue("vnc_servers")
    target = parse_target(f"127.0.0.1:{server.x509_port}")
    assert target.scheme == "auto"
    result = await check_target(target)
    assert result.protocol == "vnc"
