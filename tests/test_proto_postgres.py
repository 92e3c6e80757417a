"""The PostgreSQL SSLRequest negotiator (protocol docs §55.2.10), fed whole and byte by byte."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.transcript import CTX, FEEDINGS, drive, drive_chunks, failure_of, split_at
from tlswatch.protocols import REGISTRY
from tlswatch.protocols.base import Failed, Ready
from tlswatch.protocols.postgres import PostgresNegotiator

# Int32 8, Int32 80877103 (§55.7 SSLRequest)
SSL_REQUEST = bytes.fromhex("0000000804d2162f")
# A real PostgreSQL 15 ErrorResponse (captured from the test cluster, in answer to a
# startup packet of protocol 9.9): the framing an SSLRequest-ignorant server answers with.
PG15_ERROR = bytes.fromhex(
    "450000008353464154414c0056464154414c00433041303030004d756e737570706f727465642066726f"
    "6e74656e642070726f746f636f6c20392e393a2073657276657220737570706f72747320332e3020746f"
    "20332e300046706f73746d61737465722e63004c32323230005250726f63657373537461727475705061"
    "636b65740000"
)


def test_sends_the_sslrequest() -> None:
    """The client speaks first with exactly the 8-byte SSLRequest."""
    assert drive(PostgresNegotiator, []).sent == [SSL_REQUEST]


def test_s_is_ready() -> None:
    """'S' (captured from the test cluster) is the go-ahead."""
    out = drive(PostgresNegotiator, [b"S"])
    assert out.final == Ready({"sslrequest": "S"})
    assert out.extra == []


@pytest.mark.parametrize("injected", [b"X", b"\x00", b"SELECT 1;", b"\x16\x03\x01"])
def test_bytes_after_s_are_the_cve_2021_23222_injection(injected: bytes) -> None:
    """Anything after the one-byte 'S' and before our ClientHello (even bytes that look
    like TLS) is plaintext from a man in the middle: protocol_error, never TLS."""
    out = drive(PostgresNegotiator, [b"S" + injected])
    code, message = failure_of(out)
    assert code == "protocol_error" and "injection" in message
    assert isinstance(out.final, Failed) and out.final.failure.excerpt


def test_n_is_refused_ssl_off() -> None:
    """'N' (captured from the ssl=off cluster): upgrade_refused saying TLS is off."""
    assert failure_of(drive(PostgresNegotiator, [b"N"])) == (
        "upgrade_refused",
        "server does not accept TLS (ssl=off): it answered N to SSLRequest",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_error_response_is_refused_with_its_message(feeding: str) -> None:
    """An ErrorResponse: upgrade_refused with severity, message and SQLSTATE, flagged as
    the unauthenticated server's own words (CVE-2024-10977)."""
    code, message = failure_of(drive(PostgresNegotiator, [PG15_ERROR], feeding))
    assert code == "upgrade_refused"
    assert message == (
        "server refused SSLRequest with an error (unauthenticated server text): "
        "FATAL: unsupported frontend protocol 9.9: server supports 3.0 to 3.0 "
        "(SQLSTATE 0A000)"
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_protocol_2_error_is_refused(feeding: str) -> None:
    """Pre-7.4 servers answer 'E' and one NUL-terminated string (protocol 2.0)."""
    data = b"EFATAL:  unsupported frontend protocol\n\x00"
    code, message = failure_of(drive(PostgresNegotiator, [data], feeding))
    assert code == "upgrade_refused"
    assert message.endswith("FATAL:  unsupported frontend protocol\\n")


def test_error_response_without_known_fields_shows_its_body() -> None:
    """An ErrorResponse with no S/C/M fields still yields its (escaped) body."""
    body = b"Xsomething\x00\x00"
    data = b"E" + struct.pack("!i", 4 + len(body)) + body
    code, message = failure_of(drive(PostgresNegotiator, [data]))
    assert code == "upgrade_refused" and "Xsomething" in message


def test_unterminated_protocol_2_error_is_capped() -> None:
    """A protocol-2 error string that never ends fails at the cap, not at memory."""
    code, message = failure_of(drive(PostgresNegotiator, [b"E" + b"A" * 9000]))
    assert code == "protocol_error" and "longer than 8192 bytes" in message


@pytest.mark.parametrize("feeding", FEEDINGS)
@pytest.mark.parametrize("garbage", [b"HTTP/1.1 400 Bad Request\r\n", b"\x00", b"R"])
def test_other_answers_are_protocol_errors(garbage: bytes, feeding: str) -> None:
    """Any other first byte: protocol_error at once, with an excerpt."""
    out = drive(PostgresNegotiator, [garbage], feeding)
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert message.startswith("not a PostgreSQL answer to SSLRequest")


def test_tls_alert_suggests_direct_tls() -> None:
    """A TLS record in answer (a direct-TLS port) says to use direct=1."""
    code, message = failure_of(drive(PostgresNegotiator, [b"\x15\x03\x03\x00\x02\x02\x46"]))
    assert code == "protocol_error" and "direct=1" in message


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (
            [],
            "server closed the connection without answering the SSLRequest (not a PostgreSQL server?)",
        ),
        ([b"E"], "server closed the connection in the middle of its ErrorResponse to SSLRequest"),
        (
            [PG15_ERROR[:20]],
            "server closed the connection in the middle of its ErrorResponse to SSLRequest",
        ),
    ],
)
def test_eof_in_each_state(server: list[bytes], message: str) -> None:
    """End of stream before the answer or inside an ErrorResponse: closed, saying where."""
    assert failure_of(drive(PostgresNegotiator, server, eof=True)) == ("closed", message)


def test_input_after_the_verdict_is_ignored() -> None:
    """Once done, the negotiator emits nothing more."""
    neg = PostgresNegotiator(CTX)
    neg.initiate()
    assert isinstance(neg.receive_data(b"S")[0], Ready)
    assert neg.receive_data(b"S") == []
    assert neg.receive_data(b"") == []


def test_direct_variant_is_implicit_tls_with_alpn_postgresql() -> None:
    """direct=1 selects implicit TLS offering ALPN postgresql and no negotiator."""
    spec = REGISTRY["postgres"].select({"direct": "1"})
    assert (spec.tls_mode, spec.alpn, spec.negotiator) == ("implicit", ("postgresql",), None)
    assert REGISTRY["postgres"].select({}).negotiator_factory() is PostgresNegotiator


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    """Any bytes, cut anyhow, then end of stream: exactly one verdict, never an exception."""
    out = drive_chunks(PostgresNegotiator, chunks)
    assert out.final is not None and out.extra == []


@given(
    st.dictionaries(
        st.sampled_from(b"SVCMDHPF"),
        st.binary(max_size=80).map(lambda b: b.replace(b"\x00", b"")),
        max_size=6,
    ),
    st.lists(st.integers(min_value=1, max_value=600), max_size=10),
)
def test_chunking_does_not_change_the_outcome(fields: dict[int, bytes], cuts: list[int]) -> None:
    """An ErrorResponse cut anywhere gives the same verdict as fed whole."""
    body = b"".join(bytes([k]) + v + b"\x00" for k, v in fields.items()) + b"\x00"
    data = b"E" + struct.pack("!i", 4 + len(body)) + body
    whole = drive(PostgresNegotiator, [data])
    cut = drive_chunks(PostgresNegotiator, split_at(data, cuts), eof=False)
    assert whole.final == cut.final and whole.final is not None
