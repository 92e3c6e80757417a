"""Client TLS contexts for probing: verification off, old protocols allowed, cached.

The handshake only *collects* the chain; verification is done separately and purely
(:mod:`tlswatch.x509`). So the context accepts what a lenient client would: TLS 1.0 up,
every cipher at OpenSSL security level 0 (SHA-1, 1024-bit RSA, small DH), and servers without
secure-renegotiation support. Contexts are built once per (ALPN, client certificate) and
reused: building one costs more than a handshake.

Which OpenSSL: the handshake runs on the OpenSSL that ``cryptography`` ships in its wheel
(4.0 with cryptography 50), through pyOpenSSL, not on the system's libssl behind the
standard ``ssl`` module (Debian 12: 3.0). OpenSSL 3.0 decodes each received certificate's
public key through its provider decoder machinery, which builds a fresh decoder chain per
certificate: measured with callgrind, 1.5 M instructions per certificate, 48 % of a
client handshake; later OpenSSL releases cache it. The same handshake costs 6.4 M
instructions on the system's 3.0 and 3.6 M here, about 0.27 ms less CPU per endpoint
(issue 6, docs/performance.md). It is still OpenSSL, with the same protocol versions,
cipher names and alert reasons.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from OpenSSL import SSL

from tlswatch.tls.engine import openssl_reason

#: what a probe hands the engine: one cached pyOpenSSL context
ClientContext = SSL.Context

#: key-exchange groups offered, in the order the system OpenSSL 3.0 offers them (the first
#: one gets a key share). Named explicitly because OpenSSL 3.5+ would otherwise lead with
#: X25519MLKEM768: a 1.2 KB post-quantum key share in every ClientHello, ~0.9 M
#: instructions of key generation per probe, and a ClientHello over one TCP segment, which
#: some old TLS stacks still mishandle. A server that only speaks ML-KEM hybrids is not
#: one a certificate monitor meets today.
GROUPS = b"X25519:P-256:X448:P-521:P-384:ffdhe2048:ffdhe3072:ffdhe4096:ffdhe6144:ffdhe8192"

#: the fallback when a build lacks one of GROUPS
CORE_GROUPS = b"X25519:P-256:P-384:P-521"

#: every cipher OpenSSL has, at security level 0: collect the chain of any server
CIPHERS = b"ALL:COMPLEMENTOFDEFAULT:@SECLEVEL=0"


class ClientCertError(Exception):
    """``client_cert=`` / ``client_key=`` could not be loaded."""


def _set_groups(ctx: SSL.Context, groups: bytes) -> None:
    # pyOpenSSL has no public call for the client's groups; cryptography's bindings expose
    # SSL_CTX_set1_curves_list (the historical name of set1_groups_list). Without it the
    # probe still works, with OpenSSL's default groups.
    raw: Any = getattr(ctx, "_context", None)
    try:
        from OpenSSL._util import lib

        if raw is not None and lib.SSL_CTX_set1_curves_list(raw, groups) != 1:
            # a build without one of the groups (e.g. no X448) refuses the whole list
            lib.SSL_CTX_set1_curves_list(raw, CORE_GROUPS)
    except (ImportError, AttributeError):  # pragma: no cover - other pyOpenSSL builds
        pass


@lru_cache(maxsize=64)
def client_context(
    alpn: tuple[str, ...] = (),
    client_cert: str | None = None,
    client_key: str | None = None,
) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE)
    # The options the standard library's client context sets (OP_ALL's interoperability
    # workarounds, incl. ClientHello padding; no compression), plus talking to servers
    # that predate RFC 5746 (OpenSSL 3 refuses them by default).
    ctx.set_options(SSL.OP_ALL | SSL.OP_NO_COMPRESSION | SSL.OP_LEGACY_SERVER_CONNECT)
    # Deliberate: old mail and directory servers still only speak TLS 1.0/1.1, and we must
    # collect their chain to report LEGACY_TLS_VERSION rather than fail.
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    ctx.set_cipher_list(CIPHERS)
    _set_groups(ctx, GROUPS)
    # Give the record buffers (≈ 34 KiB per connection) back as soon as OpenSSL is done
    # with them: 100 handshakes in flight per scan.
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    if alpn:
        ctx.set_alpn_protos([p.encode("ascii") for p in alpn])
    if client_cert:
        for path in {client_cert, client_key or client_cert}:
            open(path, "rb").close()  # unreadable: an OSError in its own words
        try:
            ctx.use_certificate_chain_file(client_cert)
            ctx.use_privatekey_file(client_key or client_cert)
            ctx.check_privatekey()
        except SSL.Error as exc:
            raise ClientCertError(openssl_reason(exc)[1] or "unusable certificate or key") from None
    return ctx


__all__ = ["CIPHERS", "GROUPS", "ClientCertError", "ClientContext", "client_context"]
