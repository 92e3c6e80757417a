"""Assertions shared by the real-server tests: the probe saw exactly what the test installed."""

from __future__ import annotations

from tests.support.pki import IssuedLeaf
from tlswatch.model import EndpointResult, TargetResult
from tlswatch.probe import check_target
from tlswatch.targets import parse_target


async def probe_one(url: str) -> EndpointResult:
    """Probe ``url`` (an IP literal, so exactly one endpoint) and return that endpoint."""
    result: TargetResult = await check_target(parse_target(url))
    (endpoint,) = result.endpoints
    return endpoint


def assert_exact_chain(ep: EndpointResult, leaf: IssuedLeaf) -> None:
    """The endpoint yielded the installed chain, in the order sent: same fingerprints,
    same length (leaf + intermediate), and the leaf's exact validity dates."""
    assert ep.error is None, ep.error.describe()
    assert [c.sha256 for c in ep.chain] == leaf.chain_sha256
    assert len(ep.chain) == len(leaf.chain_der) == 2
    installed = leaf.leaf
    assert ep.chain[0].not_before == installed.not_valid_before_utc
    assert ep.chain[0].not_after == installed.not_valid_after_utc
    assert ep.tls is not None and ep.tls.version in ("TLSv1.2", "TLSv1.3")
