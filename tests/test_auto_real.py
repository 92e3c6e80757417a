"""auto:// (and bare host:port on an unknown port) identifies real servers on
non-standard ports: by greeting, by a ClientHello answered with TLS, or by a
client-speaks-first probe, then probes them with the right method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from tlswatch.probe import check_target
from tlswatch.targets import parse_target

GREETING = "greeting"
SILENCE = "silence"
CLIENT_FIRST = "client-first probe"


class Case(NamedTuple):
    fixture: str
    port_of: Callable[[Any], int]
    scheme: str  # the protocol auto must detect
    detected_by: str
    query: str = ""  # extra URL options (XMPP needs its domain: sni=)


SERVERS: dict[str, Case] = {
    "haproxy-implicit": Case("haproxy_tls", lambda s: s.port, "tls", SILENCE),
    "slapd-ldaps": Case("slapd_servers", lambda s: s.ldaps_port, "tls", SILENCE),
    "slapd-starttls": Case("slapd_servers", lambda s: s.starttls_port, "ldap", CLIENT_FIRST),
    "postgres": Case("postgres_tls", lambda s: s.port, "postgres", CLIENT_FIRST),
    "mariadb": Case("mariadb_tls", lambda s: s.port, "mysql", GREETING),
    "vsftpd": Case("vsftpd_servers", lambda s: s.explicit_port, "ftp", GREETING),
    "xrdp": Case("xrdp_servers", lambda s: s.tls_port, "rdp", CLIENT_FIRST),
    "tigervnc": Case("vnc_servers", lambda s: s.x509_port, "vnc", GREETING),
    "nats": Case("nats_servers", lambda s: s.tls_port, "nats", GREETING),
    "tds-script": Case("tds_servers", lambda s: s.ports["tds"], "mssql", CLIENT_FIRST),
    # Postfix: STARTTLS port and wrapper-mode (smtps) port
    "postfix-smtp": Case("postfix", lambda s: s.submission, "smtp", GREETING),
    "postfix-smtps": Case("postfix", lambda s: s.smtps, "tls", SILENCE),
    # Dovecot: its LMTP greets "220 <host> Dovecot ready." like an SMTP server would, so
    # LMTP is told by EHLO being refused and LHLO accepted (RFC 2033 §4.1)
    "dovecot-imap": Case("dovecot", lambda s: s.ports["imap"], "imap", GREETING),
    "dovecot-imaps": Case("dovecot", lambda s: s.ports["imaps"], "tls", SILENCE),
    "dovecot-pop3": Case("dovecot", lambda s: s.ports["pop3"], "pop3", GREETING),
    "dovecot-pop3s": Case("dovecot", lambda s: s.ports["pop3s"], "tls", SILENCE),
    "dovecot-sieve": Case("dovecot", lambda s: s.ports["sieve"], "sieve", GREETING),
    "dovecot-lmtp": Case("dovecot", lambda s: s.ports["lmtp"], "lmtp", "greeting, then LHLO"),
    # Prosody waits for the client's stream header: c2s and s2s are client-first probes
    "prosody-c2s": Case("prosody", lambda s: s.c2s_port, "xmpp", CLIENT_FIRST, "sni=localhost"),
    "prosody-direct": Case("prosody", lambda s: s.direct_port, "tls", SILENCE, "sni=localhost"),
    "prosody-s2s": Case(
        "prosody", lambda s: s.s2s_port, "xmpp-server", CLIENT_FIRST, "sni=localhost"
    ),
    # InspIRCd without host-name look-ups says nothing until the client speaks
    "inspircd-plain": Case("inspircd", lambda s: s.plain_port, "irc", CLIENT_FIRST),
    "inspircd-tls": Case("inspircd", lambda s: s.tls_port, "tls", SILENCE),
    "inn-starttls": Case("inn", lambda s: s.starttls_port, "nntp", GREETING),
    "inn-tls": Case("inn", lambda s: s.tls_port, "tls", SILENCE),
}


async def _auto(port: int, query: str = "") -> Any:
    options = "timeout=3" + (f"&{query}" if query else "")
    return await check_target(parse_target(f"auto://127.0.0.1:{port}?{options}"))


def _assert_identified(result: Any, scheme: str, detected_by: str, leaf_sha256: str) -> None:
    (ep,) = result.endpoints
    upgrade = ep.observation.upgrade
    assert upgrade.get("detected") == scheme, (upgrade, ep.error)
    assert upgrade.get("detected_by") == detected_by, upgrade
    assert result.protocol == scheme
    assert ep.error is None, ep.error
    assert ep.chain and ep.chain[0].sha256 == leaf_sha256


@pytest.mark.parametrize("name", sorted(SERVERS))
async def test_auto_identifies(request: pytest.FixtureRequest, name: str) -> None:
    """auto:// reports the protocol it detected and how, and returns the server's own leaf."""
    case = SERVERS[name]
    server = request.getfixturevalue(case.fixture)
    result = await _auto(case.port_of(server), case.query)
    _assert_identified(result, case.scheme, case.detected_by, server.leaf.leaf_sha256)


async def test_auto_identifies_openvpn_p2p(openvpn_servers: Any) -> None:
    """A point-to-point OpenVPN TCP server stays silent, drops the connection on our
    ClientHello (0x16 0x03 reads as a 5635-byte packet length, over its limit) and stops
    listening until its restart: the refused next connection puts OpenVPN first, auto
    reconnects until the server listens again, and gets the installed chain."""
    server = openvpn_servers.tcp
    server.wait_ready()
    result = await _auto(server.port)
    _assert_identified(result, "openvpn", CLIENT_FIRST, openvpn_servers.leaf.leaf_sha256)


async def test_bare_unknown_port_is_auto(request: pytest.FixtureRequest) -> None:
    """A bare host:port whose port names no protocol is probed as auto://."""
    server = request.getfixturevalue("vnc_servers")
    target = parse_target(f"127.0.0.1:{server.x509_port}")
    assert target.scheme == "auto"
    result = await check_target(target)
    assert result.protocol == "vnc"
