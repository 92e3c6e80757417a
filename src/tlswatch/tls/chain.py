"""Reading the certificate chain exactly as the server sent it.

OpenSSL keeps the peer's Certificate message as a stack (``SSL_get_peer_cert_chain``: on
a client, leaf first, in the order sent, nothing added or reordered); pyOpenSSL returns it
as certificate objects, each written back to the DER it was parsed from. This is the one
place that knows.
"""

from __future__ import annotations

from OpenSSL import SSL, crypto


def unverified_chain_der(conn: SSL.Connection) -> tuple[bytes, ...]:
    """The peer's chain in the order it was sent, leaf first, as DER. Empty when the server
    sent no certificate (anonymous cipher suites). The certificate objects only carry the
    DER out (cheaper than ``as_cryptography=True``, which would parse each one again)."""
    certs = conn.get_peer_cert_chain() or []
    return tuple(crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in certs)
