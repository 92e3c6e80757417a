"""Authority Information Access (RFC 5280 §4.2.2.1): where a certificate's issuer can be
downloaded (caIssuers) and where its OCSP responder is. Pure: deciding *what* to fetch and
parsing what was fetched; :mod:`tlswatch.net.aia` does the fetching.

A caIssuers URL serves either one DER certificate or a "certs-only" CMS/PKCS#7 bundle
(RFC 5280 §4.2.2.1: ``application/pkix-cert`` or ``application/pkcs7-mime``); some servers
serve PEM. All four are accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from tlswatch.x509.trust import Anchors
from tlswatch.x509.verify import self_signed

#: at most this many issuers fetched for one chain (leaf → intermediates → root)
MAX_HOPS = 4


def _access_urls(cert: x509.Certificate, method: x509.ObjectIdentifier) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except Exception:  # absent or malformed: nothing to fetch
        return []
    out = []
    for desc in ext.value:
        loc = desc.access_location
        if desc.access_method == method and isinstance(loc, x509.UniformResourceIdentifier):
            out.append(loc.value)
    return out


def ca_issuers_urls(cert: x509.Certificate) -> list[str]:
    return _access_urls(cert, AuthorityInformationAccessOID.CA_ISSUERS)


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    return _access_urls(cert, AuthorityInformationAccessOID.OCSP)


def parse_issuer_response(data: bytes) -> list[x509.Certificate]:
    """The certificates in a caIssuers response (DER, PKCS#7 DER, PEM or PKCS#7 PEM).
    Raises ValueError with a readable message when it is none of those."""
    # Imported on the first fetched response, not with the module: most scans never
    # fetch, and the PKCS#7 loaders bring email's MIME machinery (≈ 1.3 MB of RSS).
    from cryptography.hazmat.primitives.serialization import pkcs7

    loaders = (
        lambda d: [x509.load_der_x509_certificate(d)],
        pkcs7.load_der_pkcs7_certificates,
        x509.load_pem_x509_certificates,
        pkcs7.load_pem_pkcs7_certificates,
    )
    for loader in loaders:
        try:
            certs = list(loader(data))
        except Exception:  # noqa: S112 - try the next encoding
            continue
        if certs:
            return certs
    raise ValueError(
        f"{len(data)} bytes that are neither a DER/PEM certificate nor a PKCS#7 bundle"
    )


def next_issuer_url(
    chain: Sequence[x509.Certificate],
    anchors: Anchors,
    fetched: Sequence[x509.Certificate],
    tried: Sequence[str],
) -> str | None:
    """The caIssuers URL to fetch next, or None when the issuer of the top of the chain is
    already known (sent, fetched or trusted) or nothing more can be fetched.

    Walks from the leaf through the certificates sent and fetched so far; where it stops
    for lack of an issuer, that certificate's first untried caIssuers URL is next.
    """
    if not chain:
        return None
    pool = [*chain[1:], *fetched]
    cur = chain[0]
    seen = {id(cur)}
    for _ in range(MAX_HOPS + len(pool) + 1):
        # Pure tests, any of which ends the walk: the anchor lookup before the name
        # comparison of self_signed, so the usual end (an intermediate the store issued)
        # skips the latter (≈ 1 µs per endpoint, issue 6).
        if anchors.contains(cur) or anchors.issuers_of(cur) or self_signed(cur):
            return None
        nxt = next(
            (c for c in pool if id(c) not in seen and c.subject == cur.issuer),
            None,
        )
        if nxt is None:
            for url in ca_issuers_urls(cur):
                if url not in tried:
                    return url  # non-http schemes (ldap://) are refused by the fetcher
            return None
        seen.add(id(nxt))
        cur = nxt
    return None


__all__ = ["MAX_HOPS", "ca_issuers_urls", "next_issuer_url", "ocsp_urls", "parse_issuer_response"]
