"""The TLS engine without a network: what its ClientHello offers, the server name it sends,
and how OpenSSL's failure reasons are named. (Handshakes against real and broken servers
are in test_implicit_real.py, test_broken_servers.py and the protocol suites.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from OpenSSL import SSL

from tlswatch.errors import FailureClass
from tlswatch.tls.context import ClientCertError, client_context
from tlswatch.tls.engine import TLSEngine, alert_name, classify_ssl_error, server_name_indication

X25519 = 0x001D
SECP256R1 = 0x0017
#: X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem): the hybrid group OpenSSL 3.5+ leads with
X25519MLKEM768 = 0x11EC


def _extensions(hello: bytes) -> dict[int, bytes]:
    """The extensions of a ClientHello record (RFC 8446 §4.1.2), by type."""
    assert hello[0] == 22, "a handshake record"
    body = hello[5:]
    assert body[0] == 1, "a ClientHello"
    i = 4 + 2 + 32  # handshake header, legacy_version, random
    i += 1 + body[i]  # legacy_session_id
    i += 2 + int.from_bytes(body[i : i + 2], "big")  # cipher_suites
    i += 1 + body[i]  # legacy_compression_methods
    end = i + 2 + int.from_bytes(body[i : i + 2], "big")
    i += 2
    out: dict[int, bytes] = {}
    while i < end:
        kind = int.from_bytes(body[i : i + 2], "big")
        size = int.from_bytes(body[i + 2 : i + 4], "big")
        out[kind] = body[i + 4 : i + 4 + size]
        i += 4 + size
    return out


def _u16_list(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def test_client_hello_offers_classic_groups_with_one_x25519_key_share() -> None:
    """One X25519 key share, no post-quantum hybrid: a small ClientHello that every TLS
    stack since 2018 accepts, and no ML-KEM key generation per probe."""
    hello = TLSEngine(client_context(), "mail.example.test").initiate()
    ext = _extensions(hello)
    groups = _u16_list(ext[10][2:])  # supported_groups (RFC 8446 §4.2.7)
    assert groups[:2] == [X25519, SECP256R1]
    assert X25519MLKEM768 not in groups
    shares = ext[51][2:]  # key_share (RFC 8446 §4.2.8): group, length, key
    assert int.from_bytes(shares[:2], "big") == X25519
    assert len(shares) == 4 + 32  # exactly one share
    assert len(hello) < 600


def test_client_hello_sends_sni_for_names_only() -> None:
    ext = _extensions(TLSEngine(client_context(), "mail.example.test").initiate())
    assert b"mail.example.test" in ext[0]  # server_name (RFC 6066 §3)
    for address in ("127.0.0.1", "::1", "[::1]"):
        assert 0 not in _extensions(TLSEngine(client_context(), address).initiate())
    assert 0 not in _extensions(TLSEngine(client_context(), None).initiate())


def test_server_name_indication() -> None:
    assert server_name_indication("bücher.example") == b"xn--bcher-kva.example"
    assert server_name_indication("192.0.2.1") is None
    assert server_name_indication("") is None
    for bad in (".example", "bad\x00name", "a..b", "a" * 300):
        with pytest.raises(ValueError):
            server_name_indication(bad)


@pytest.mark.parametrize("name", [".example", "bad\x00name", "a" * 300])
def test_unsendable_server_name_is_a_tls_error_before_any_byte(name: str) -> None:
    engine = TLSEngine(client_context(), name)
    assert engine.initiate() == b""
    assert engine.failure is not None
    assert engine.failure.code is FailureClass.TLS_ERROR
    assert repr(name) in engine.failure.message


def test_client_hello_offers_alpn_of_the_context() -> None:
    ext = _extensions(TLSEngine(client_context(("postgresql",)), "db.example").initiate())
    assert b"postgresql" in ext[16]  # application_layer_protocol_negotiation (RFC 7301)


@pytest.mark.parametrize(
    ("reason", "name"),
    [
        ("TLS_ALERT_HANDSHAKE_FAILURE", "handshake_failure"),  # OpenSSL 4
        ("SSLV3_ALERT_HANDSHAKE_FAILURE", "handshake_failure"),  # OpenSSL 3
        ("TLSV1_ALERT_PROTOCOL_VERSION", "protocol_version"),
        ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "certificate_required"),
        ("WRONG_VERSION_NUMBER", None),
    ],
)
def test_alert_names(reason: str, name: str | None) -> None:
    assert alert_name(reason) == name


@pytest.mark.parametrize(
    ("queue", "code", "words"),
    [
        (
            [("SSL routines", "", "tls alert internal error")],
            FailureClass.TLS_ALERT,
            "internal_error",
        ),
        ([("SSL routines", "", "unexpected eof while reading")], FailureClass.CLOSED, "closed"),
        ([("SSL routines", "", "no protocols available")], FailureClass.TLS_ERROR, "TLS version"),
        ([("SSL routines", "", "excessive message size")], FailureClass.TLS_ERROR, "100 KiB"),
        (
            [("asn1 encoding routines", "", "wrong tag"), ("SSL routines", "", "ASN1 lib")],
            FailureClass.TLS_ERROR,
            "malformed certificate",
        ),
        ([("SSL routines", "", "wrong version number")], FailureClass.TLS_ERROR, "wrong version"),
    ],
)
def test_classify_openssl_error_queue(
    queue: list[tuple[str, str, str]], code: FailureClass, words: str
) -> None:
    """pyOpenSSL hands over OpenSSL's error queue as text; the last entry is the reason."""
    failure = classify_ssl_error(SSL.Error(queue))
    assert failure.code is code
    assert words in failure.message


def test_transport_end_is_closed() -> None:
    assert classify_ssl_error(SSL.SysCallError(-1, "Unexpected EOF")).code is FailureClass.CLOSED


def test_unknown_group_falls_back_to_the_core_groups() -> None:
    """A build of OpenSSL that lacks one of the groups refuses the whole list; the context
    then offers the core groups rather than OpenSSL's defaults (with the ML-KEM share)."""
    from tlswatch.tls import context as tls_context

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE)
    tls_context._set_groups(ctx, b"X25519:NO-SUCH-GROUP")
    groups = _u16_list(_extensions(TLSEngine(ctx, "x.example").initiate())[10][2:])
    assert groups[:2] == [X25519, SECP256R1]
    assert X25519MLKEM768 not in groups


def test_unusable_client_certificate_says_why(tmp_path: Path) -> None:
    """A client_cert file that is not a certificate: a ClientCertError in OpenSSL's words
    (the probe reports it as a tls_error), not an OpenSSL exception."""
    bad = tmp_path / "client.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(ClientCertError) as info:
        client_context((), str(bad), str(bad))
    assert str(info.value)
    assert str(info.value) != "unusable certificate or key"
