"""Implicit TLS against a real server (haproxy): chain, TLS facts, timings, IPv6."""

from __future__ import annotations

from tests.servers.haproxy import HaproxyServer
from tlswatch.model import Status
from tlswatch.probe import check_target
from tlswatch.targets import parse_target


async def test_tls_returns_exact_chain(haproxy_tls: HaproxyServer) -> None:
    """The probe reports exactly the chain haproxy was given, in the order sent."""
    result = await check_target(parse_target(f"tls://127.0.0.1:{haproxy_tls.port}"))
    (ep,) = result.endpoints
    assert ep.error is None
    assert [c.sha256 for c in ep.chain] == haproxy_tls.leaf.chain_sha256
    assert ep.chain[0].not_after == haproxy_tls.leaf.leaf.not_valid_after_utc
    assert ep.tls is not None and ep.tls.version in ("TLSv1.2", "TLSv1.3")
    assert ep.timings.connect is not None and ep.timings.handshake is not None
    assert ep.timings.upgrade is None
    assert result.status is not Status.UNKNOWN


async def test_ipv6_literal_in_brackets(haproxy_tls: HaproxyServer) -> None:
    """[::1]:port is probed over IPv6 and yields the same leaf."""
    result = await check_target(parse_target(f"tls://[::1]:{haproxy_tls.port6}"))
    (ep,) = result.endpoints
    assert ep.address == "::1"
    assert ep.error is None
    assert ep.chain[0].sha256 == haproxy_tls.leaf.leaf_sha256
