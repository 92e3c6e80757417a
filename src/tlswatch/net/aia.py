"""Fetching missing issuers from AIA caIssuers URLs (RFC 5280 §4.2.2.1).

What to fetch is decided purely (:func:`tlswatch.x509.aia.next_issuer_url`); this module
only moves bytes, through a per-run cache so a thousand endpoints behind one CA cost one
download.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from tlswatch.model import Fetched
from tlswatch.net.http import FetchError, fetch
from tlswatch.net.runcache import RunCache
from tlswatch.x509 import aia
from tlswatch.x509.trust import Anchors


async def fetch_issuer(url: str, cache: RunCache[Fetched], timeout: float, cap: int) -> Fetched:
    """One caIssuers URL as a :class:`Fetched` (data or error), cached per run."""

    async def get() -> Fetched:
        try:
            data = await fetch(url, timeout=timeout, cap=cap)
        except FetchError as exc:
            return Fetched("ca_issuers", url, error=str(exc))
        return Fetched("ca_issuers", url, data=data)

    return await cache.get(("ca_issuers", url), get)


async def complete_chain(
    chain: Sequence[x509.Certificate],
    anchors: Anchors,
    cache: RunCache[Fetched],
    timeout: float,
    cap: int,
) -> tuple[Fetched, ...]:
    """Fetch issuers hop by hop until the chain reaches a known certificate, a fetch
    fails, or :data:`~tlswatch.x509.aia.MAX_HOPS` downloads were made."""
    results: list[Fetched] = []
    certs: list[x509.Certificate] = []
    for _ in range(aia.MAX_HOPS):
        url = aia.next_issuer_url(chain, anchors, certs, [f.url for f in results])
        if url is None:
            break
        got = await fetch_issuer(url, cache, timeout, cap)
        results.append(got)
        if got.data is None:
            break
        try:
            certs.extend(aia.parse_issuer_response(got.data))
        except ValueError:
            break  # the evaluation reports what the URL served
    return tuple(results)


__all__ = ["complete_chain", "fetch_issuer"]
