"""LDAP StartTLS and LDAPS against a real OpenLDAP slapd (tests/servers/slapd.py)."""

from __future__ import annotations

from tests.servers.slapd import SlapdServers
from tests.support.realchain import assert_exact_chain, probe_one
from tlswatch.errors import FailureClass


async def test_ldap_starttls_yields_exact_chain(slapd_servers: SlapdServers) -> None:
    """ldap:// runs the StartTLS extended operation, then yields slapd's exact chain."""
    ep = await probe_one(f"ldap://127.0.0.1:{slapd_servers.starttls_port}")
    assert_exact_chain(ep, slapd_servers.leaf)
    assert ep.observation.upgrade["ldap_result"] == "success (0)"
    assert ep.timings.upgrade is not None and ep.timings.handshake is not None


async def test_ldaps_yields_exact_chain(slapd_servers: SlapdServers) -> None:
    """ldaps:// is TLS from the first byte and yields the same chain, with no upgrade."""
    ep = await probe_one(f"ldaps://127.0.0.1:{slapd_servers.ldaps_port}")
    assert_exact_chain(ep, slapd_servers.leaf)
    assert ep.timings.upgrade is None


async def test_slapd_without_tls_refuses_starttls(slapd_servers: SlapdServers) -> None:
    """A slapd with no TLS configured answers protocolError: upgrade_not_offered naming it."""
    ep = await probe_one(f"ldap://127.0.0.1:{slapd_servers.no_tls_port}?timeout=5")
    assert ep.error is not None
    assert ep.error.code is FailureClass.UPGRADE_NOT_OFFERED
    assert "protocolError (2)" in ep.error.message
    assert "unsupported extended operation" in ep.error.message
    assert ep.chain == ()


async def test_starttls_at_the_ldaps_port_fails_fast(slapd_servers: SlapdServers) -> None:
    """ldap:// pointed at the LDAPS port does not hang: slapd's TLS layer drops the
    connection on our plaintext request, which the probe reports as `closed`."""
    ep = await probe_one(f"ldap://127.0.0.1:{slapd_servers.ldaps_port}?timeout=5")
    assert ep.error is not None
    assert ep.error.code is FailureClass.CLOSED
    assert "without answering the StartTLS request" in ep.error.message
    assert ep.chain == ()
