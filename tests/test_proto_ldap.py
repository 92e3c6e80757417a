"""The LDAP StartTLS negotiator (RFC 4511 §4.14), fed whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.transcript import CTX, FEEDINGS, drive, drive_chunks, failure_of, split_at
from tlswatch.protocols import ber
from tlswatch.protocols.base import Failed, Ready
from tlswatch.protocols.ldap import LDAPNegotiator, start_tls_request

# Captured from the test's slapd 2.5 (tests/servers/slapd.py): the StartTLS success, and
# the answer of a slapd without TLS configured.
SLAPD_SUCCESS = bytes.fromhex("300c02010178070a010004000400")
SLAPD_NO_TLS = bytes.fromhex(
    "302a02010178250a01020400041e756e737570706f7274656420657874656e646564206f7065726174696f6e"
)
# What we send: LDAPMessage { messageID 1, extendedReq [APPLICATION 23] { requestName [0]
# "1.3.6.1.4.1.1466.20037" } } (RFC 4511 §4.12, §4.14.1).
START_TLS = bytes.fromhex("301d02010177188016") + b"1.3.6.1.4.1.1466.20037"


def extended_response(
    message_id: int,
    code: int,
    diagnostic: bytes = b"",
    name: bytes | None = None,
) -> bytes:
    """An LDAPMessage carrying an ExtendedResponse (RFC 4511 §4.12)."""
    fields = [
        ber.encode_integer(code, ber.ENUMERATED),
        ber.encode(ber.OCTET_STRING, b""),
        ber.encode(ber.OCTET_STRING, diagnostic),
    ]
    if name is not None:
        fields.append(ber.encode(ber.context(10), name))
    op = ber.encode_sequence(*fields, tag=ber.application(24))
    return ber.encode_sequence(ber.encode_integer(message_id), op)


def test_request_bytes_are_the_rfc_4511_extended_request() -> None:
    """The request is exactly the StartTLS ExtendedRequest with message id 1."""
    assert start_tls_request() == START_TLS
    assert drive(LDAPNegotiator, []).sent == [START_TLS]


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_slapd_success_is_ready(feeding: str) -> None:
    """slapd's success response (resultCode 0, no responseName) is the go-ahead."""
    out = drive(LDAPNegotiator, [SLAPD_SUCCESS], feeding)
    assert out.sent == [START_TLS]
    assert out.final == Ready({"ldap_result": "success (0)"})
    assert out.extra == []


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_slapd_without_tls_is_refused_with_code_and_diagnostic(feeding: str) -> None:
    """protocolError from a server without TLS means StartTLS is not implemented there
    (RFC 4511 §4.12): upgrade_not_offered with the result code name, the server's
    diagnosticMessage and what the code means."""
    code, message = failure_of(drive(LDAPNegotiator, [SLAPD_NO_TLS], feeding))
    assert code == "upgrade_not_offered"
    assert message.startswith(
        'server refused StartTLS: protocolError (2): "unsupported extended operation"'
    )
    assert "does not recognise StartTLS" in message


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_unavailable_is_refused(feeding: str) -> None:
    """unavailable (52) with a diagnostic: refused, naming both."""
    data = extended_response(1, 52, b"TLS not available")
    code, message = failure_of(drive(LDAPNegotiator, [data], feeding))
    assert code == "upgrade_refused"
    assert 'unavailable (52): "TLS not available"' in message


def test_unknown_result_code_is_named_as_such() -> None:
    """A result code outside RFC 4511 is still reported, with its number."""
    code, message = failure_of(drive(LDAPNegotiator, [extended_response(1, 4242)]))
    assert (code, message) == (
        "upgrade_refused",
        "server refused StartTLS: unknown result code (4242)",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_notice_of_disconnection_is_refused(feeding: str) -> None:
    """An unsolicited Notice of Disconnection (message 0, 1.3.6.1.4.1.1466.20036) instead
    of the answer means the server is dropping us: upgrade_refused."""
    notice = extended_response(0, 52, b"server shutting down", b"1.3.6.1.4.1.1466.20036")
    code, message = failure_of(drive(LDAPNegotiator, [notice], feeding))
    assert code == "upgrade_refused"
    assert "Notice of Disconnection" in message and "unavailable (52)" in message
    assert "server shutting down" in message


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_other_unsolicited_notifications_are_skipped(feeding: str) -> None:
    """An unsolicited notification that is not a disconnection is skipped, and the
    response that follows it decides."""
    other = extended_response(0, 0, b"", b"1.2.3.4")
    out = drive(LDAPNegotiator, [other + SLAPD_SUCCESS], feeding)
    assert isinstance(out.final, Ready)


def test_too_many_unsolicited_notifications() -> None:
    """A server sending endless notifications ends in protocol_error, not a loop."""
    other = extended_response(0, 0, b"", b"1.2.3.4")
    code, message = failure_of(drive(LDAPNegotiator, [other * 9]))
    assert code == "protocol_error" and "unsolicited notifications" in message


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_long_form_lengths_and_response_name(feeding: str) -> None:
    """Non-minimal 4-octet lengths (as Active Directory sends) and an echoed responseName
    are accepted."""
    inner = b"\x0a\x01\x00\x04\x00\x04\x00\x8a\x16" + b"1.3.6.1.4.1.1466.20037"
    op = b"\x78\x84" + len(inner).to_bytes(4, "big") + inner
    body = b"\x02\x01\x01" + op
    message = b"\x30\x84" + len(body).to_bytes(4, "big") + body
    out = drive(LDAPNegotiator, [message], feeding)
    assert isinstance(out.final, Ready)


def test_plaintext_after_success_is_injection() -> None:
    """Bytes after the success response, in the same read, are STARTTLS injection:
    protocol_error, never TLS."""
    injected = extended_response(2, 0)
    out = drive(LDAPNegotiator, [SLAPD_SUCCESS + injected])
    code, message = failure_of(out)
    assert code == "protocol_error" and "injection" in message
    assert isinstance(out.final, Failed) and out.final.failure.excerpt


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_not_ber_is_protocol_error_with_excerpt(feeding: str) -> None:
    """An answer that is not an LDAPMessage fails at its first byte, with an excerpt."""
    out = drive(LDAPNegotiator, [b"HTTP/1.1 400 Bad Request\r\n\r\n"], feeding)
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert message == "not an LDAP server: the answer to StartTLS is not a BER LDAPMessage"
    assert isinstance(out.final, Failed)
    assert out.final.failure.excerpt is not None
    assert out.final.failure.excerpt.startswith("H")


def test_tls_alert_suggests_ldaps() -> None:
    """A TLS alert in answer (an LDAPS port) says to use ldaps://."""
    code, message = failure_of(drive(LDAPNegotiator, [b"\x15\x03\x03\x00\x02\x02\x46"]))
    assert code == "protocol_error" and "use ldaps://" in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (extended_response(2, 0), "answer to message 2; we only sent message 1"),
        (b"\x30\x07\x02\x01\x01\x61\x02\x0a\x00", "not an ExtendedResponse"),
        (b"\x30\x03\x04\x01\x01", "expected SEQUENCE { messageID"),
        (b"\x30\x05\x02\x01\x01\x78\x00", "ExtendedResponse does not start with resultCode"),
        (b"\x30\x80\x02\x01\x01", "indefinite length"),
        (b"\x30\x84\x7f\xff\xff\xff", "exceeds the cap of 65536 bytes"),
        (b"\x30\x04\x02\x05\x01\x01", "truncated element"),
    ],
)
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_malformed_messages_are_protocol_errors(data: bytes, expected: str, feeding: str) -> None:
    """Messages that are BER but not a valid answer, and invalid or oversize BER, end in
    protocol_error naming the problem (oversize: from the header alone)."""
    code, message = failure_of(drive(LDAPNegotiator, [data], feeding))
    assert code == "protocol_error"
    assert expected in message


def test_eof_before_any_answer() -> None:
    """The server closing without a byte: closed, saying it did not answer."""
    code, message = failure_of(drive(LDAPNegotiator, [], eof=True))
    assert (code, message) == (
        "closed",
        "server closed the connection without answering the StartTLS request",
    )


@pytest.mark.parametrize("cut", [1, 2, 5, len(SLAPD_SUCCESS) - 1])
def test_eof_in_the_middle_of_the_answer(cut: int) -> None:
    """The server closing mid-message: closed, with what had arrived."""
    code, message = failure_of(drive(LDAPNegotiator, [SLAPD_SUCCESS[:cut]], eof=True))
    assert code == "closed" and "in the middle of its answer" in message


def test_input_after_the_verdict_is_ignored() -> None:
    """Once done, the negotiator emits nothing more (the driver has moved on)."""
    neg = LDAPNegotiator(CTX)
    neg.initiate()
    assert isinstance(neg.receive_data(SLAPD_SUCCESS)[0], Ready)
    assert neg.receive_data(b"more") == []
    assert neg.receive_data(b"") == []


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    """Whatever arrives, cut however, the negotiator ends in exactly one verdict (or is
    still waiting) and never raises."""
    out = drive_chunks(LDAPNegotiator, chunks)
    assert out.extra == []
    assert out.final is not None  # end of stream always decides


@given(
    st.integers(min_value=0, max_value=127),
    st.binary(max_size=300),
    st.lists(st.integers(min_value=1, max_value=400), max_size=10),
)
def test_chunking_does_not_change_the_outcome(
    code: int, diagnostic: bytes, cuts: list[int]
) -> None:
    """A response cut anywhere gives the same verdict as the response whole."""
    data = extended_response(1, code, diagnostic)
    whole = drive(LDAPNegotiator, [data])
    cut = drive_chunks(LDAPNegotiator, split_at(data, cuts), eof=False)
    assert whole.final == cut.final and whole.final is not None
