"""The POP3 STLS negotiator (RFC 2595 §4, CAPA from RFC 2449), on recorded exchanges fed
whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.transcript import CTX, FEEDINGS, drive, drive_chunks, failure_of, split_at
from tlswatch.protocols.base import Ready
from tlswatch.protocols.pop3 import MAX_CAPA_LINES, POP3Negotiator

CAPA = b"CAPA\r\n"
STLS = b"STLS\r\n"

# Captured from the test's Dovecot 2.3.19.1 (tests/servers/dovecot.py).
DOVECOT_GREETING = b"+OK Dovecot (Debian) ready.\r\n"
DOVECOT_CAPA = (
    b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\n"
    b"USER\r\nSASL PLAIN\r\n.\r\n"
)
DOVECOT_STLS = b"+OK Begin TLS negotiation now.\r\n"
# The same Dovecot on a listener with ssl=no.
DOVECOT_CAPA_NO_TLS = (
    b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSASL\r\n.\r\n"
)
DOVECOT_STLS_ERR = b"-ERR TLS support isn't enabled.\r\n"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_dovecot_stls_is_ready(feeding: str) -> None:
    """+OK greeting, CAPA listing STLS, STLS, +OK: ready with banner and capabilities."""
    out = drive(POP3Negotiator, [DOVECOT_GREETING, DOVECOT_CAPA, DOVECOT_STLS], feeding)
    assert out.sent == [CAPA, STLS]
    assert out.final == Ready(
        {
            "banner": "Dovecot (Debian) ready.",
            "capabilities": "CAPA TOP UIDL RESP-CODES PIPELINING AUTH-RESP-CODE STLS USER SASL",
            "stls_reply": "+OK Begin TLS negotiation now.",
        }
    )
    assert out.extra == []


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_dovecot_without_tls_is_not_offered(feeding: str) -> None:
    """CAPA without STLS: upgrade_not_offered listing the capabilities; STLS never sent."""
    out = drive(POP3Negotiator, [DOVECOT_GREETING, DOVECOT_CAPA_NO_TLS], feeding)
    assert out.sent == [CAPA]
    assert failure_of(out) == (
        "upgrade_not_offered",
        "server does not offer STLS: its capabilities are CAPA TOP UIDL RESP-CODES "
        "PIPELINING AUTH-RESP-CODE SASL",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_stls_refused(feeding: str) -> None:
    """STLS advertised but answered -ERR: upgrade_refused quoting the server."""
    out = drive(POP3Negotiator, [DOVECOT_GREETING, DOVECOT_CAPA, DOVECOT_STLS_ERR], feeding)
    assert failure_of(out) == (
        "upgrade_refused",
        "server refused STLS: -ERR TLS support isn't enabled.",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_no_capa_tries_stls_anyway(feeding: str) -> None:
    """A pre-RFC 2449 server answering CAPA with -ERR: STLS is tried blind, and +OK to it
    is the go-ahead."""
    out = drive(
        POP3Negotiator, [DOVECOT_GREETING, b"-ERR unknown command\r\n", DOVECOT_STLS], feeding
    )
    assert out.sent == [CAPA, STLS]
    assert isinstance(out.final, Ready)
    assert out.final.info["capabilities"] == "(CAPA not supported)"


def test_no_capa_and_no_stls_is_not_offered() -> None:
    """-ERR to CAPA and to the blind STLS: upgrade_not_offered (an old server that knows
    neither), not upgrade_refused."""
    out = drive(POP3Negotiator, [DOVECOT_GREETING, b"-ERR what\r\n", b"-ERR what\r\n"])
    assert failure_of(out) == (
        "upgrade_not_offered",
        "server supports neither CAPA nor STLS: STLS answered -ERR what",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_dot_stuffing_and_arguments(feeding: str) -> None:
    """Dot-stuffed lines are unstuffed (RFC 1939 §3), names compared case-insensitively and
    arguments dropped; "..X" is the capability ".X", not the end of the list."""
    capa = b"+OK Capability list follows\r\nsasl PLAIN LOGIN\r\n..X\r\nstls\r\nIMPLEMENTATION x y\r\n.\r\n"
    out = drive(POP3Negotiator, [DOVECOT_GREETING, capa, DOVECOT_STLS], feeding)
    assert out.sent == [CAPA, STLS]
    assert isinstance(out.final, Ready)
    assert out.final.info["capabilities"] == "SASL .X STLS IMPLEMENTATION"


def test_err_greeting_is_refused() -> None:
    """-ERR as the greeting refuses the session."""
    out = drive(POP3Negotiator, [b"-ERR [SYS/TEMP] Too many connections\r\n"])
    assert out.sent == []
    assert failure_of(out) == (
        "upgrade_refused",
        "server refused the POP3 session: -ERR [SYS/TEMP] Too many connections",
    )


def test_plaintext_after_ok_is_injection() -> None:
    """Lines arriving with the +OK to STLS are STARTTLS injection: protocol_error."""
    out = drive(
        POP3Negotiator, [DOVECOT_GREETING, DOVECOT_CAPA, DOVECOT_STLS + b"+OK injected\r\n"]
    )
    code, message = failure_of(out)
    assert code == "protocol_error" and "injection" in message
    assert out.final is not None and out.final.failure.excerpt == "+OK injected\\r\\n"


@pytest.mark.parametrize(
    "garbage",
    [
        b"220 mail.example ESMTP\r\n",
        b"* OK IMAP ready\r\n",
        b"\x00\x01",
        b"+OKAY\r\n",
        b"-ERROR\r\n",
    ],
)
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_garbage_greeting(garbage: bytes, feeding: str) -> None:
    """Anything but +OK/-ERR is a protocol error with an excerpt; bytes that cannot begin a
    status line fail without waiting for a line break."""
    out = drive(POP3Negotiator, [garbage], feeding)
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert message.startswith("not a POP3 status line (RFC 1939 §3: +OK or -ERR) while waiting")
    assert out.final is not None and out.final.failure.excerpt


def test_garbage_stls_reply() -> None:
    out = drive(POP3Negotiator, [DOVECOT_GREETING, DOVECOT_CAPA, b"OK\r\n"])
    code, message = failure_of(out)
    assert code == "protocol_error" and message.endswith("while waiting for the STLS response")


def test_tls_record_suggests_pop3s() -> None:
    """A TLS alert instead of a greeting says to use pop3s://."""
    code, message = failure_of(drive(POP3Negotiator, [b"\x15\x03\x03\x00\x02\x02\x46"]))
    assert code == "protocol_error" and "use pop3s://" in message


def test_overlong_line_is_capped() -> None:
    code, message = failure_of(drive(POP3Negotiator, [b"+OK " + b"x" * 5000]))
    assert code == "protocol_error" and "line longer than 4096 bytes" in message


def test_endless_capa_list_is_capped() -> None:
    """A CAPA list that never ends fails at the line cap."""
    data = b"+OK\r\n" + b"X-CAP\r\n" * (MAX_CAPA_LINES + 1)
    code, message = failure_of(drive(POP3Negotiator, [DOVECOT_GREETING, data]))
    assert code == "protocol_error" and f"longer than {MAX_CAPA_LINES} lines" in message


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ([], "server closed the connection before sending its POP3 greeting"),
        ([b"+OK Dove"], "server closed the connection in the middle of its greeting"),
        ([DOVECOT_GREETING], "server closed the connection without completing its CAPA response"),
        ([DOVECOT_GREETING, b"+OK\r\nTOP\r\n"], "server closed the connection without completing its CAPA response"),
        ([DOVECOT_GREETING, DOVECOT_CAPA], "server closed the connection without answering STLS"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_eof_in_each_state(server: list[bytes], message: str, feeding: str) -> None:
    """End of stream in every state is `closed`, saying where."""
    assert failure_of(drive(POP3Negotiator, server, feeding, eof=True)) == ("closed", message)


def test_input_after_the_verdict_is_ignored() -> None:
    neg = POP3Negotiator(CTX)
    neg.receive_data(DOVECOT_GREETING)
    neg.receive_data(DOVECOT_CAPA)
    assert isinstance(neg.receive_data(DOVECOT_STLS)[0], Ready)
    assert neg.receive_data(b"+OK\r\n") == []
    assert neg.receive_data(b"") == []


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    """Any bytes, cut anyhow, then end of stream: exactly one verdict, never an exception."""
    out = drive_chunks(POP3Negotiator, chunks)
    assert out.final is not None and out.extra == []


@given(
    prefix=st.sampled_from([b"", DOVECOT_GREETING, DOVECOT_GREETING + b"+OK\r\n"]),
    tail=st.binary(max_size=200),
)
def test_arbitrary_bytes_in_any_state(prefix: bytes, tail: bytes) -> None:
    """Arbitrary bytes after a valid prefix (including inside the CAPA list) end in exactly
    one verdict."""
    out = drive_chunks(POP3Negotiator, [prefix, tail])
    assert out.final is not None and out.extra == []


# Capability names other than STLS: whether STLS is listed is the `offer` flag's job.
names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-.", min_size=1, max_size=10).filter(
    lambda n: n.split(" ")[0] != "STLS"
)


@given(
    st.lists(names, max_size=8),
    st.booleans(),
    st.sampled_from([b"+OK go", b"-ERR no"]),
    st.lists(st.integers(min_value=1, max_value=300), max_size=10),
)
def test_chunking_does_not_change_the_outcome(
    caps: list[str], offer: bool, reply: bytes, cuts: list[int]
) -> None:
    """Greeting, dot-stuffed CAPA list and STLS reply cut anywhere give the same sent bytes
    and verdict as fed one response at a time."""
    listed = [*caps, "STLS"] if offer else caps
    body = b"".join(
        (b"." + c.encode() if c.startswith(".") else c.encode()) + b"\r\n" for c in listed
    )
    capa = b"+OK\r\n" + body + b".\r\n"
    stls = reply + b"\r\n"
    whole = drive(POP3Negotiator, [DOVECOT_GREETING, capa, stls])
    cut = drive_chunks(POP3Negotiator, split_at(DOVECOT_GREETING + capa + stls, cuts), eof=False)
    assert (cut.sent, cut.final) == (whole.sent, whole.final)
    assert isinstance(whole.final, Ready) == (offer and reply.startswith(b"+OK"))
