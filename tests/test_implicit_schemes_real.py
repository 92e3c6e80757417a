"""Every implicit-TLS scheme not covered by its own server, against haproxy (real TLS).

The scheme only changes the default port and the ALPN offered; with an explicit port each
must reach the TLS handshake at once and report exactly the chain haproxy was given.
"""

from __future__ import annotations

import pytest

from tests.servers.haproxy import HaproxyServer
from tlswatch.probe import check_target
from tlswatch.targets import parse_target

IMPLICIT_SCHEMES = [
    "tls", "smtps", "submissions", "imaps", "pop3s", "ftps", "ldaps", "mongodb", "redis",
    "rediss", "amqps", "mqtts", "kafka", "sips", "dot", "nntps", "ircs", "xmpps",
]  # fmt: skip


@pytest.mark.parametrize("scheme", IMPLICIT_SCHEMES)
async def test_implicit_scheme_returns_exact_chain(scheme: str, haproxy_tls: HaproxyServer) -> None:
    """scheme://127.0.0.1:PORT: no upgrade phase, the installed chain, dates and version."""
    result = await check_target(parse_target(f"{scheme}://127.0.0.1:{haproxy_tls.port}"))
    assert result.tls_mode == "implicit"
    (ep,) = result.endpoints
    assert ep.error is None, ep.error
    assert [c.sha256 for c in ep.chain] == haproxy_tls.leaf.chain_sha256
    assert ep.chain[0].not_before == haproxy_tls.leaf.leaf.not_valid_before_utc
    assert ep.chain[0].not_after == haproxy_tls.leaf.leaf.not_valid_after_utc
    assert ep.timings.upgrade is None and ep.timings.handshake is not None
    assert ep.tls is not None and ep.tls.version in ("TLSv1.2", "TLSv1.3")


async def test_https_negotiates_alpn(haproxy_tls: HaproxyServer) -> None:
    """https:// offers h2 and http/1.1; haproxy (alpn h2,http/1.1) picks h2."""
    result = await check_target(parse_target(f"https://127.0.0.1:{haproxy_tls.alpn_port}"))
    (ep,) = result.endpoints
    assert ep.error is None, ep.error
    assert ep.tls is not None and ep.tls.alpn == "h2"
    assert [c.sha256 for c in ep.chain] == haproxy_tls.leaf.chain_sha256


async def test_tls_offers_no_alpn(haproxy_tls: HaproxyServer) -> None:
    """tls:// offers no ALPN, so none is negotiated even where the server has some."""
    result = await check_target(parse_target(f"tls://127.0.0.1:{haproxy_tls.alpn_port}"))
    (ep,) = result.endpoints
    assert ep.error is None, ep.error
    assert ep.tls is not None and ep.tls.alpn is None
