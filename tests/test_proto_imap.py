"""The IMAP STARTTLS negotiator (RFC 9051 §6.2.1) and literal-aware response framing, on
recorded exchanges fed whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.transcript import CTX, FEEDINGS, drive, drive_chunks, failure_of, split_at
from tlswatch.protocols.base import Ready
from tlswatch.protocols.imap import IMAPNegotiator, parse_response
from tlswatch.protocols.literals import (
    MAX_LITERAL,
    FramingError,
    LiteralLineReader,
    LogicalLine,
)

CAPABILITY = b"a1 CAPABILITY\r\n"
STARTTLS = b"a2 STARTTLS\r\n"

# Captured from the test's Dovecot 2.3.19.1 (tests/servers/dovecot.py).
DOVECOT_GREETING = (
    b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
    b"AUTH=PLAIN] Dovecot (Debian) ready.\r\n"
)
DOVECOT_OK = b"a2 OK Begin TLS negotiation now.\r\n"
# The same Dovecot on a listener with ssl=no: no STARTTLS, LOGINDISABLED instead.
DOVECOT_NO_TLS_GREETING = (
    b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
    b"LOGINDISABLED] Dovecot (Debian) ready.\r\n"
)
DOVECOT_BAD = b"a2 BAD TLS support isn't enabled.\r\n"  # its answer to STARTTLS there
DOVECOT_CAPABILITY = (
    b"* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
    b"AUTH=PLAIN\r\na1 OK Pre-login capabilities listed, post-login capabilities have more.\r\n"
)
# A greeting without capabilities (as Courier, Cyrus and older servers send): one more
# round trip for CAPABILITY.
PLAIN_GREETING = b"* OK IMAP4rev1 server ready\r\n"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_dovecot_greeting_capabilities_save_a_round_trip(feeding: str) -> None:
    """Dovecot lists its capabilities in the greeting (RFC 9051 §7.1): STARTTLS is sent at
    once, and its tagged OK is the go-ahead."""
    out = drive(IMAPNegotiator, [DOVECOT_GREETING, DOVECOT_OK], feeding)
    assert out.sent == [STARTTLS]
    assert out.final == Ready(
        {
            "banner": "Dovecot (Debian) ready.",
            "capabilities": "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
            "STARTTLS AUTH=PLAIN",
            "starttls_reply": "a2 OK Begin TLS negotiation now.",
        }
    )
    assert out.extra == []


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_capability_command_when_the_greeting_has_none(feeding: str) -> None:
    """A bare * OK greeting: a1 CAPABILITY, the untagged CAPABILITY line read, then a1 OK
    leads to a2 STARTTLS."""
    out = drive(IMAPNegotiator, [PLAIN_GREETING, DOVECOT_CAPABILITY, DOVECOT_OK], feeding)
    assert out.sent == [CAPABILITY, STARTTLS]
    assert isinstance(out.final, Ready)
    assert "STARTTLS" in out.final.info["capabilities"].split()
    assert out.final.info["banner"] == "IMAP4rev1 server ready"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_dovecot_without_tls_is_not_offered(feeding: str) -> None:
    """Capabilities without STARTTLS: upgrade_not_offered listing them, nothing sent."""
    out = drive(IMAPNegotiator, [DOVECOT_NO_TLS_GREETING], feeding)
    assert out.sent == []
    assert failure_of(out) == (
        "upgrade_not_offered",
        "server does not offer STARTTLS: its capabilities are IMAP4rev1 SASL-IR "
        "LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ LOGINDISABLED",
    )


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (DOVECOT_BAD, "server refused STARTTLS: a2 BAD TLS support isn't enabled."),
        (
            b"a2 NO [UNAVAILABLE] TLS not available\r\n",
            "server refused STARTTLS: a2 NO [UNAVAILABLE] TLS not available",
        ),
    ],
)
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_starttls_refused(reply: bytes, message: str, feeding: str) -> None:
    """A tagged NO or BAD to STARTTLS is upgrade_refused, quoting the server."""
    out = drive(IMAPNegotiator, [DOVECOT_GREETING, reply], feeding)
    assert failure_of(out) == ("upgrade_refused", message)


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_preauth_cannot_be_upgraded(feeding: str) -> None:
    """* PREAUTH: already authenticated, and STARTTLS is only valid before that (RFC 9051
    §6.2.1): upgrade_not_offered explaining why."""
    out = drive(IMAPNegotiator, [b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n"], feeding)
    assert out.sent == []
    code, message = failure_of(out)
    assert code == "upgrade_not_offered"
    assert "PREAUTH" in message and "only valid before authentication (RFC 9051 §6.2.1)" in message


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ([b"* BYE Too many connections\r\n"], "server refused the IMAP session: * BYE Too many connections"),
        ([PLAIN_GREETING, b"* BYE Autologout\r\n"], "server closed the IMAP connection: * BYE Autologout"),
        ([DOVECOT_GREETING, b"* BYE [UNAVAILABLE] shutting down\r\n"], "server closed the IMAP connection: * BYE [UNAVAILABLE] shutting down"),
    ],
)  # fmt: skip
def test_bye_is_refused(server: list[bytes], message: str) -> None:
    """* BYE as the greeting or at any later point ends in upgrade_refused with its text."""
    assert failure_of(drive(IMAPNegotiator, server)) == ("upgrade_refused", message)


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_untagged_data_is_skipped_anywhere(feeding: str) -> None:
    """Untagged responses between our command and its tagged reply are skipped (RFC 9051
    §7), including ones with a literal holding CRLFs and things that look like tagged
    responses."""
    noise = b"* OK [ALERT] maintenance tonight\r\n* 1 FETCH (BODY[] {13}\r\na2 OK fake\r\n)\r\n"
    out = drive(IMAPNegotiator, [DOVECOT_GREETING, noise + DOVECOT_OK], feeding)
    assert out.sent == [STARTTLS]
    assert isinstance(out.final, Ready)
    assert out.final.info["starttls_reply"] == "a2 OK Begin TLS negotiation now."


def test_lower_case_status_and_capability() -> None:
    """Response names and capabilities are case-insensitive (RFC 9051 §9)."""
    out = drive(IMAPNegotiator, [b"* ok [capability imap4rev1 starttls] hi\r\n", b"a2 ok go\r\n"])
    assert isinstance(out.final, Ready)


def test_capability_rejected_is_protocol_error() -> None:
    """A server rejecting CAPABILITY, which every IMAP server has, is a protocol error."""
    out = drive(IMAPNegotiator, [PLAIN_GREETING, b"a1 BAD unknown command\r\n"])
    code, message = failure_of(out)
    assert code == "protocol_error" and message.startswith("server rejected CAPABILITY")


def test_wrong_tag_is_protocol_error() -> None:
    """A tagged response with a tag we never sent breaks RFC 9051 §2.2.1."""
    out = drive(IMAPNegotiator, [DOVECOT_GREETING, b"x9 OK whatever\r\n"])
    code, message = failure_of(out)
    assert code == "protocol_error" and "tag 'x9' while waiting for a2" in message


def test_continuation_request_is_protocol_error() -> None:
    """A "+" continuation request: we sent no literal."""
    out = drive(IMAPNegotiator, [DOVECOT_GREETING, b"+ go ahead\r\n"])
    assert failure_of(out)[0] == "protocol_error"


def test_plaintext_after_ok_is_injection() -> None:
    """Lines arriving with the tagged OK are STARTTLS injection: protocol_error quoting
    them, never Ready."""
    out = drive(IMAPNegotiator, [DOVECOT_GREETING, DOVECOT_OK + b"* OK injected\r\n"])
    code, message = failure_of(out)
    assert code == "protocol_error" and "injection" in message
    assert out.final is not None and out.final.failure.excerpt == "* OK injected\\r\\n"


@pytest.mark.parametrize(
    "garbage",
    [
        b"220 mail.example ESMTP\r\n",  # an SMTP server: a tag "220", then not a greeting
        b"\x00\x01\x02\x03",
        b"(weird)\r\n",
        b"SSH-2.0-OpenSSH_9.2p1\r\n",
        b"\r\n",
    ],
)
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_garbage_greeting(garbage: bytes, feeding: str) -> None:
    """Anything but * OK / PREAUTH / BYE as the greeting is a protocol error with an
    excerpt, naming what was awaited."""
    out = drive(IMAPNegotiator, [garbage], feeding)
    code, message = failure_of(out)
    assert code == "protocol_error" and "IMAP greeting" in message
    assert out.final is not None and out.final.failure.excerpt


def test_tls_record_suggests_imaps() -> None:
    """A TLS alert instead of a greeting says to use imaps://."""
    code, message = failure_of(drive(IMAPNegotiator, [b"\x15\x03\x03\x00\x02\x02\x46"]))
    assert code == "protocol_error" and "use imaps://" in message


def test_overlong_line_is_capped() -> None:
    """A greeting line without an end fails once it passes the line cap."""
    code, message = failure_of(drive(IMAPNegotiator, [b"* OK " + b"x" * 9000]))
    assert code == "protocol_error" and "longer than 8192 bytes" in message


def test_oversized_literal_fails_at_its_marker() -> None:
    """A literal over the cap fails when announced, before its bytes are buffered."""
    data = DOVECOT_GREETING + b"* 1 FETCH (BODY[] {" + str(MAX_LITERAL + 1).encode() + b"}\r\n"
    code, message = failure_of(drive(IMAPNegotiator, [data]))
    assert code == "protocol_error" and f"literal of {MAX_LITERAL + 1} bytes" in message


def test_endless_literal_chain_is_capped() -> None:
    """A response made of literal after literal stops at the logical-line cap."""
    data = b"* OK hi\r\n* CAPABILITY " + b"{10}\r\n0123456789 " * 10_000
    code, message = failure_of(drive(IMAPNegotiator, [PLAIN_GREETING, data]))
    assert code == "protocol_error" and "bytes" in message


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ([], "server closed the connection before sending its IMAP greeting"),
        ([b"* OK [CAPAB"], "server closed the connection in the middle of its greeting"),
        ([PLAIN_GREETING], "server closed the connection without completing its CAPABILITY response"),
        ([PLAIN_GREETING, b"* CAPABILITY IMAP4rev1 STARTTLS\r\n"], "server closed the connection without completing its CAPABILITY response"),
        ([DOVECOT_GREETING], "server closed the connection without answering STARTTLS"),
        ([DOVECOT_GREETING, b"a2 O"], "server closed the connection without answering STARTTLS"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_eof_in_each_state(server: list[bytes], message: str, feeding: str) -> None:
    """End of stream in every state is `closed`, saying where."""
    assert failure_of(drive(IMAPNegotiator, server, feeding, eof=True)) == ("closed", message)


def test_input_after_the_verdict_is_ignored() -> None:
    """Once done, the negotiator emits nothing more."""
    neg = IMAPNegotiator(CTX)
    neg.receive_data(DOVECOT_GREETING)
    assert isinstance(neg.receive_data(DOVECOT_OK)[0], Ready)
    assert neg.receive_data(b"* OK again\r\n") == []
    assert neg.receive_data(b"") == []


# --- framing ---------------------------------------------------------------------------------


def test_parse_response_fields() -> None:
    """Tag, name, response code and text are split as RFC 9051 §7.1 lays them out."""
    r = parse_response(LogicalLine((b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready",)))
    assert (r.tag, r.name, r.code, r.text) == ("*", "OK", "CAPABILITY IMAP4rev1 STARTTLS", "ready")
    r = parse_response(LogicalLine((b"* 23 EXISTS",)))
    assert (r.tag, r.name) == ("*", "EXISTS")


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_literal_reader_keeps_literal_bytes_verbatim(feeding: str) -> None:
    """A {n} literal's bytes (CRLF included) belong to the response; the line goes on after
    them; {n+} (RFC 7888) and ~{n} (RFC 3516) are literals too."""
    data = b"* 1 FETCH (A {4}\r\nx\r\ny B ~{2+}\r\n\r\n)\r\na1 OK\r\n"
    reader = LiteralLineReader()
    lines: list[LogicalLine] = []
    for piece in [data] if feeding == "whole" else [data[i : i + 1] for i in range(len(data))]:
        reader.feed(piece)
        while (line := reader.next_line()) is not None:
            lines.append(line)
    assert [line.parts for line in lines] == [
        (b"* 1 FETCH (A {4}", b"x\r\ny", b" B ~{2+}", b"\r\n", b")"),
        (b"a1 OK",),
    ]
    assert lines[0].raw == b"* 1 FETCH (A {4}\r\nx\r\ny B ~{2+}\r\n\r\n)"


def test_literal_reader_caps_one_line() -> None:
    reader = LiteralLineReader(max_line=10)
    reader.feed(b"x" * 11)
    with pytest.raises(FramingError, match="longer than 10 bytes"):
        reader.next_line()


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    """Any bytes, cut anyhow, then end of stream: exactly one verdict, never an exception."""
    out = drive_chunks(IMAPNegotiator, chunks)
    assert out.final is not None and out.extra == []


@given(
    prefix=st.sampled_from([b"", PLAIN_GREETING, DOVECOT_GREETING]),
    tail=st.binary(max_size=200),
)
def test_arbitrary_bytes_in_any_state(prefix: bytes, tail: bytes) -> None:
    """Arbitrary bytes after a valid prefix end in exactly one verdict, never an exception."""
    out = drive_chunks(IMAPNegotiator, [prefix, tail])
    assert out.final is not None and out.extra == []


# Capability atoms other than STARTTLS: whether it is listed is the `offer` flag's job.
atoms = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=-+", min_size=1, max_size=12).filter(
    lambda a: a != "STARTTLS"
)


@given(
    st.lists(atoms, max_size=8),
    st.booleans(),
    st.sampled_from([b"OK go", b"NO no", b"BAD bad"]),
    st.lists(st.integers(min_value=1, max_value=400), max_size=10),
)
def test_chunking_does_not_change_the_outcome(
    caps: list[str], offer: bool, reply: bytes, cuts: list[int]
) -> None:
    """Greeting, CAPABILITY response (with a literal in untagged data) and STARTTLS reply
    cut anywhere give the same sent bytes and verdict as fed one response at a time."""
    listed = " ".join([*caps, "STARTTLS"] if offer else caps).encode()
    capability = b"* CAPABILITY " + listed + b"\r\n* 1 FETCH (X {3}\r\n\r\n.)\r\na1 OK done\r\n"
    starttls = b"a2 " + reply + b"\r\n"
    whole = drive(IMAPNegotiator, [PLAIN_GREETING, capability, starttls])
    cut = drive_chunks(
        IMAPNegotiator, split_at(PLAIN_GREETING + capability + starttls, cuts), eof=False
    )
    assert (cut.sent, cut.final) == (whole.sent, whole.final)
    assert whole.final is not None
    assert isinstance(whole.final, Ready) == (offer and reply.startswith(b"OK"))
