"""XMPP (Prosody), IRC (InspIRCd) and NNTP (INN nnrpd) against real servers on loopback.

For each scheme the probe must return exactly the chain the server was given (leaf
fingerprint, chain length, dates) and, for the STARTTLS schemes, time an upgrade phase.
"""

from __future__ import annotations

import pytest

from tests.servers.inn import InnServer
from tests.servers.inspircd import InspircdServer
from tests.servers.prosody import ProsodyServer
from tests.support.pki import IssuedLeaf
from tlswatch.model import EndpointResult
from tlswatch.probe import check_target
from tlswatch.targets import parse_target


async def _probe(url: str) -> EndpointResult:
    result = await check_target(parse_target(url))
    (ep,) = result.endpoints
    return ep


def _assert_chain(ep: EndpointResult, leaf: IssuedLeaf, upgraded: bool) -> None:
    assert ep.error is None, ep.error
    assert ep.chain[0].sha256 == leaf.leaf_sha256
    assert len(ep.chain) == len(leaf.chain_der) == 2
    assert [c.sha256 for c in ep.chain] == leaf.chain_sha256
    assert ep.chain[0].not_before == leaf.leaf.not_valid_before_utc
    assert ep.chain[0].not_after == leaf.leaf.not_valid_after_utc
    assert ep.tls is not None and ep.tls.version in ("TLSv1.2", "TLSv1.3")
    assert (ep.timings.upgrade is not None) is upgraded
    assert ep.timings.handshake is not None


@pytest.mark.parametrize(
    ("scheme", "port_attr", "upgraded"),
    [("xmpp", "c2s_port", True), ("xmpps", "direct_port", False), ("xmpp-server", "s2s_port", True)],
)  # fmt: skip
async def test_prosody(prosody: ProsodyServer, scheme: str, port_attr: str, upgraded: bool) -> None:
    """Client STARTTLS, direct TLS and server-to-server STARTTLS, with to = sni=localhost."""
    port = getattr(prosody, port_attr)
    ep = await _probe(f"{scheme}://127.0.0.1:{port}?sni={prosody.host}")
    _assert_chain(ep, prosody.leaf, upgraded)


async def test_xmpp_stream_to_is_the_host_name(prosody: ProsodyServer) -> None:
    """Without sni=, a host name is both SNI and the stream `to`: Prosody serves it."""
    ep = await _probe(f"xmpp://{prosody.host}:{prosody.c2s_port}?family=4")
    _assert_chain(ep, prosody.leaf, upgraded=True)


async def test_xmpp_unknown_host_is_refused(prosody: ProsodyServer) -> None:
    """A stream to a name Prosody does not serve: upgrade_refused with host-unknown —
    proof that `to` carries the SNI name."""
    ep = await _probe(f"xmpp://127.0.0.1:{prosody.c2s_port}?sni=nosuch.example")
    assert ep.error is not None
    assert ep.error.code.value == "upgrade_refused"
    assert ep.error.message == (
        "server ended the stream with error host-unknown: This server does not serve nosuch.example"
    )
    assert ep.chain == ()


async def test_xmpp_on_direct_tls_port_is_closed(prosody: ProsodyServer) -> None:
    """xmpp:// pointed at the direct-TLS port: Prosody drops our plaintext header; the
    probe ends at once as closed, naming what it waited for (never a hang)."""
    ep = await _probe(f"xmpp://127.0.0.1:{prosody.direct_port}?sni=localhost&timeout=5")
    assert ep.error is not None
    assert (ep.error.code.value, ep.error.message) == (
        "closed",
        "server closed the connection while we waited for the server's stream header",
    )


async def test_irc_on_tls_port_suggests_ircs(inspircd: InspircdServer) -> None:
    """irc:// pointed at the ircs port: GnuTLS answers our plaintext with an alert, which
    the negotiator recognises and names (use ircs://)."""
    ep = await _probe(f"irc://127.0.0.1:{inspircd.tls_port}?timeout=5")
    assert ep.error is not None
    assert ep.error.code.value == "protocol_error"
    assert ep.error.message.endswith("the port expects TLS right away (use ircs://)")


@pytest.mark.parametrize(("scheme", "upgraded"), [("irc", True), ("ircs", False)])
async def test_inspircd(inspircd: InspircdServer, scheme: str, upgraded: bool) -> None:
    """IRCv3 STARTTLS on the plaintext port, implicit TLS on the ircs port."""
    port = inspircd.plain_port if upgraded else inspircd.tls_port
    ep = await _probe(f"{scheme}://127.0.0.1:{port}")
    _assert_chain(ep, inspircd.leaf, upgraded)


@pytest.mark.parametrize(("scheme", "upgraded"), [("nntp", True), ("nntps", False)])
async def test_inn(inn: InnServer, scheme: str, upgraded: bool) -> None:
    """nnrpd: STARTTLS after CAPABILITIES, and nnrpd -S implicit TLS."""
    port = inn.starttls_port if upgraded else inn.tls_port
    ep = await _probe(f"{scheme}://127.0.0.1:{port}")
    _assert_chain(ep, inn.leaf, upgraded)
