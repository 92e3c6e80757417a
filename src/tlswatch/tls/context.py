"""Client SSLContexts for probing: verification off, old protocols allowed, cached.

The handshake only *collects* the chain; verification is done separately and purely
(:mod:`tlswatch.x509`). So the context accepts what a lenient client would: TLS 1.0 up,
every cipher at OpenSSL security level 0 (SHA-1, 1024-bit RSA, small DH), and servers without
secure-renegotiation support. Contexts are built once per (ALPN, client certificate) and
reused: building one costs more than a handshake.
"""

from __future__ import annotations

import ssl
import warnings
from functools import lru_cache

# OpenSSL's SSL_OP_LEGACY_SERVER_CONNECT: talk to servers that predate RFC 5746; OpenSSL 3
# refuses them by default. The ssl module only names it from Python 3.12 on.
OP_LEGACY_SERVER_CONNECT = getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)


@lru_cache(maxsize=64)
def client_context(
    alpn: tuple[str, ...] = (),
    client_cert: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.options |= OP_LEGACY_SERVER_CONNECT
    with warnings.catch_warnings():
        # Deliberate: old mail and directory servers still only speak TLS 1.0/1.1, and we
        # must collect their chain to report LEGACY_TLS_VERSION rather than fail.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        except (ValueError, ssl.SSLError):  # pragma: no cover - OpenSSL without TLS 1.0
            pass
    try:
        ctx.set_ciphers("ALL:COMPLEMENTOFDEFAULT:@SECLEVEL=0")
    except ssl.SSLError:  # pragma: no cover - LibreSSL has no security levels
        ctx.set_ciphers("ALL")
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx
