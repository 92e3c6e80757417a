"""MSSQL, RDP, VNC, NATS and OpenVPN against real servers (and the tsql-proven TDS script):
each probe returns exactly the chain its server was given; each refusal ends in its class."""

from __future__ import annotations

import time

import pytest

from tests.servers.nats import NATSServers
from tests.servers.openvpn import OpenVPNServer, OpenVPNServers
from tests.servers.tds import ERROR_MESSAGE, TDSServers
from tests.servers.tigervnc import VNCServers
from tests.servers.xrdp import XRDPServers
from tests.support.pki import IssuedLeaf
from tlswatch.model import EndpointResult, TargetResult
from tlswatch.probe import check_target
from tlswatch.targets import parse_target


async def probe(url: str) -> TargetResult:
    return await check_target(parse_target(url))


def only(result: TargetResult) -> EndpointResult:
    (ep,) = result.endpoints
    return ep


def assert_exact_chain(ep: EndpointResult, leaf: IssuedLeaf) -> None:
    assert ep.error is None, ep.error
    assert [c.sha256 for c in ep.chain] == leaf.chain_sha256
    assert ep.tls is not None and ep.tls.version in ("TLSv1.2", "TLSv1.3")
    assert ep.timings.upgrade is not None and ep.timings.handshake is not None


# --- MSSQL ---------------------------------------------------------------------------------


async def test_mssql_tls_inside_tds(tds_servers: TDSServers) -> None:
    """TDS PRELOGIN then TLS inside PRELOGIN packets yields the script's chain; the same
    script was first proven with FreeTDS tsql (encryption=require, CA-verified)."""
    assert ERROR_MESSAGE in tds_servers.tsql_output
    assert "tlswatch_probe" in tds_servers.logins
    result = await probe(tds_servers.url("tds"))
    ep = only(result)
    assert_exact_chain(ep, tds_servers.leaf)
    assert result.tls_mode == "wrapped"
    assert ep.observation.upgrade["encryption"] == "ENCRYPT_ON"
    assert ep.tls is not None and ep.tls.version == "TLSv1.2"


async def test_mssql_strict_is_tls_first_with_alpn(tds_servers: TDSServers) -> None:
    """strict=1 (TDS 8.0) starts with TLS and offers ALPN tds/8.0."""
    result = await probe(tds_servers.url("strict", strict="1"))
    ep = only(result)
    assert ep.error is None, ep.error
    assert [c.sha256 for c in ep.chain] == tds_servers.leaf.chain_sha256
    assert ep.tls is not None and ep.tls.alpn == "tds/8.0"
    assert result.tls_mode == "implicit"


async def test_mssql_encrypt_not_sup(tds_servers: TDSServers) -> None:
    """A server answering ENCRYPT_NOT_SUP gives upgrade_not_offered."""
    ep = only(await probe(tds_servers.url("not_sup")))
    assert ep.error is not None and ep.error.code == "upgrade_not_offered"
    assert "ENCRYPT_NOT_SUP" in ep.error.message


async def test_mssql_error_token_is_refusal(tds_servers: TDSServers) -> None:
    """An ERROR token instead of the PRELOGIN answer is upgrade_refused quoting its text."""
    ep = only(await probe(tds_servers.url("error")))
    assert ep.error is not None and ep.error.code == "upgrade_refused"
    assert ep.error.excerpt is not None and "Login is disabled" in ep.error.excerpt


# --- RDP -----------------------------------------------------------------------------------


async def test_rdp_xrdp_tls(xrdp_servers: XRDPServers) -> None:
    """xrdp selects TLS in its RDP_NEG_RSP and serves the installed chain."""
    ep = only(await probe(f"rdp://127.0.0.1:{xrdp_servers.tls_port}"))
    assert_exact_chain(ep, xrdp_servers.leaf)
    assert ep.observation.upgrade["selected_protocol"] == "TLS"


async def test_rdp_standard_security_only(xrdp_servers: XRDPServers) -> None:
    """xrdp with security_layer=rdp gives upgrade_not_offered naming Standard RDP Security."""
    ep = only(await probe(f"rdp://127.0.0.1:{xrdp_servers.rdp_only_port}"))
    assert ep.error is not None and ep.error.code == "upgrade_not_offered"
    assert "Standard RDP Security" in ep.error.message


# --- VNC -----------------------------------------------------------------------------------


async def test_vnc_vencrypt_x509(vnc_servers: VNCServers) -> None:
    """Xtigervnc with X509None: RFB 3.8, VeNCrypt 0.2, sub-type X509None, then the chain."""
    ep = only(await probe(f"vnc://127.0.0.1:{vnc_servers.x509_port}"))
    assert_exact_chain(ep, vnc_servers.leaf)
    assert ep.observation.upgrade["vencrypt_subtype"] == "X509None"
    assert ep.observation.upgrade["rfb_version"] == "3.8"


async def test_vnc_anonymous_tls_has_no_certificate(vnc_servers: VNCServers) -> None:
    """Xtigervnc offering only TLSNone is reported as having no certificate."""
    ep = only(await probe(f"vnc://127.0.0.1:{vnc_servers.anon_port}"))
    assert ep.error is not None and ep.error.code == "upgrade_not_offered"
    assert "no certificate" in ep.error.message and "TLSNone" in ep.error.message


# --- NATS ----------------------------------------------------------------------------------


async def test_nats_tls_after_info(nats_servers: NATSServers) -> None:
    """nats-server --tls: INFO says tls_required, then TLS yields the installed chain."""
    ep = only(await probe(f"nats://127.0.0.1:{nats_servers.tls_port}"))
    assert_exact_chain(ep, nats_servers.leaf)
    assert ep.observation.upgrade["tls"] == "required"


async def test_nats_without_tls(nats_servers: NATSServers) -> None:
    """A nats-server without TLS gives upgrade_not_offered."""
    ep = only(await probe(f"nats://127.0.0.1:{nats_servers.plain_port}"))
    assert ep.error is not None and ep.error.code == "upgrade_not_offered"


# --- OpenVPN -------------------------------------------------------------------------------


def _servers(s: OpenVPNServers) -> dict[str, OpenVPNServer]:
    return {
        "tcp": s.tcp,
        "udp": s.udp,
        "tcp_tls_auth": s.tcp_tls_auth,
        "udp_tls_auth": s.udp_tls_auth,
    }


@pytest.mark.parametrize("which", ["tcp", "udp", "tcp_tls_auth", "udp_tls_auth"])
async def test_openvpn_control_channel(openvpn_servers: OpenVPNServers, which: str) -> None:
    """The reset exchange, then TLS in P_CONTROL_V1 packets (tls-auth HMAC when keyed),
    over TCP and UDP, yields the installed chain."""
    server = _servers(openvpn_servers)[which]
    server.wait_ready()
    result = await probe(server.url(timeout="8"))
    ep = only(result)
    assert_exact_chain(ep, openvpn_servers.leaf)
    assert result.tls_mode == "wrapped"
    assert ep.observation.upgrade["tls_auth"] == ("yes" if server.key else "no")


@pytest.mark.parametrize("which", ["tcp_tls_auth", "udp_tls_auth"])
async def test_openvpn_tls_auth_without_key(openvpn_servers: OpenVPNServers, which: str) -> None:
    """A tls-auth server probed without key= ends in upgrade_refused saying a key is needed,
    before the phase timeout (the server silently drops unauthenticated packets)."""
    server = _servers(openvpn_servers)[which]
    server.wait_ready()
    start = time.monotonic()
    ep = only(await probe(server.url(key=None, timeout="3")))  # type: ignore[arg-type]
    elapsed = time.monotonic() - start
    assert ep.error is not None and ep.error.code == "upgrade_refused", ep.error
    assert "key" in ep.error.message and "tls-auth" in ep.error.message
    assert elapsed < 3.0


async def test_openvpn_wrong_key_direction(openvpn_servers: OpenVPNServers) -> None:
    """key_direction=0 (the server's own direction) is refused, and the message says the
    key or direction does not match."""
    server = openvpn_servers.udp_tls_auth
    server.wait_ready()
    ep = only(await probe(server.url(key_direction="0", timeout="2")))
    assert ep.error is not None and ep.error.code == "upgrade_refused"
    assert "key_direction" in ep.error.message
