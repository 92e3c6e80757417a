"""The FTP AUTH TLS negotiator (RFC 4217 §4) and RFC 959 §4.2 reply framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.transcript import (
    CTX,
    FEEDINGS,
    drive,
    drive_chunks,
    failure_of,
    split_at,
)
from tlswatch.protocols.base import Ready
from tlswatch.protocols.ftp import MAX_REPLY_LINES, FTPNegotiator, ReplyError, ReplyParser

AUTH_TLS = b"AUTH TLS\r\n"

# Captured from the test's vsftpd 3.0.3 instances (tests/servers/vsftpd.py).
VSFTPD_GREETING = b"220 (vsFTPd 3.0.3)\r\n"
VSFTPD_234 = b"234 Proceed with negotiation.\r\n"
VSFTPD_BANNER = (
    b"220-Welcome to the tlswatch test FTP.\r\n220-Second line of the banner.\r\n220 \r\n"
)
VSFTPD_530 = b"530 Please login with USER and PASS.\r\n"
VSFTPD_421 = b"421 There are too many connected users, please try later.\r\n"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_vsftpd_auth_tls_is_ready(feeding: str) -> None:
    """220, AUTH TLS, 234: ready, with the banner and the reply in the info."""
    out = drive(FTPNegotiator, [VSFTPD_GREETING, VSFTPD_234], feeding)
    assert out.sent == [AUTH_TLS]
    assert out.final == Ready(
        {"banner": "(vsFTPd 3.0.3)", "auth_reply": "234 Proceed with negotiation."}
    )
    assert out.extra == []


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_multi_line_banner_then_530_is_not_offered(feeding: str) -> None:
    """vsftpd without TLS: its multi-line 220 is one greeting (AUTH TLS is sent once), and
    530 to AUTH TLS is upgrade_not_offered quoting the reply."""
    out = drive(FTPNegotiator, [VSFTPD_BANNER, VSFTPD_530], feeding)
    assert out.sent == [AUTH_TLS]
    assert failure_of(out) == (
        "upgrade_not_offered",
        "server does not support AUTH TLS: 530 Please login with USER and PASS.",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_421_greeting_is_refused(feeding: str) -> None:
    """421 instead of 220 (too many users): upgrade_refused, AUTH TLS never sent."""
    out = drive(FTPNegotiator, [VSFTPD_421], feeding)
    assert out.sent == []
    assert failure_of(out) == (
        "upgrade_refused",
        "server refused the FTP session: 421 There are too many connected users, please try later.",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_120_then_220(feeding: str) -> None:
    """120 "ready in nnn minutes" is a preliminary reply: wait for the 220 (RFC 959 §4.2)."""
    out = drive(
        FTPNegotiator, [b"120 Service ready in 1 minutes.\r\n220 ready\r\n", VSFTPD_234], feeding
    )
    assert out.sent == [AUTH_TLS]
    assert isinstance(out.final, Ready)
    assert out.final.info["delay"] == "120 Service ready in 1 minutes."


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_rfc959_multi_line_example(feeding: str) -> None:
    """The RFC 959 §4.2 example: inner lines may start with digits, even another code,
    and only "123 " with the opening code ends the reply."""
    greeting = (
        b"220-First line\r\nSecond line\r\n  234 A line beginning with numbers\r\n"
        b"234 not the end either\r\n220-still going\r\n220 The last line\r\n"
    )
    out = drive(FTPNegotiator, [greeting, VSFTPD_234], feeding)
    assert out.sent == [AUTH_TLS]
    assert isinstance(out.final, Ready)
    assert out.final.info["banner"].startswith("First line Second line")
    assert out.final.info["banner"].endswith("still going The last line")


def test_334_is_accepted_as_go_ahead() -> None:
    """334 (as pre-RFC 4217 drafts answered) is accepted like 234."""
    out = drive(FTPNegotiator, [VSFTPD_GREETING, b"334 AUTH TLS OK.\r\n"])
    assert isinstance(out.final, Ready)


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (b"500 AUTH not understood\r\n", "upgrade_not_offered"),
        (b"501 Syntax error\r\n", "upgrade_not_offered"),
        (b"502 Command not implemented\r\n", "upgrade_not_offered"),
        (b"504 Unknown security mechanism\r\n", "upgrade_not_offered"),
        (b"431 Unable to accept security mechanism\r\n", "upgrade_refused"),
        (b"534 Policy requires SSL\r\n", "upgrade_refused"),
        (b"421 Service closing\r\n", "upgrade_refused"),
        (b"550 Denied\r\n", "upgrade_refused"),
        (b"200 OK\r\n", "protocol_error"),
        (b"331 Need password\r\n", "protocol_error"),
        (b"150 Opening\r\n", "protocol_error"),
    ],
)
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_auth_replies_are_classified(reply: bytes, code: str, feeding: str) -> None:
    """Each AUTH TLS reply class maps to its failure class, the message quoting it."""
    out = drive(FTPNegotiator, [VSFTPD_GREETING, reply], feeding)
    got_code, message = failure_of(out)
    assert got_code == code
    assert reply[:3].decode() in message


@pytest.mark.parametrize(
    ("greeting", "code"),
    [(b"554 No service\r\n", "upgrade_refused"), (b"230 Logged in\r\n", "protocol_error")],
)
def test_other_greetings(greeting: bytes, code: str) -> None:
    """A 5xx greeting refuses; a non-220 positive greeting is a protocol error."""
    out = drive(FTPNegotiator, [greeting])
    assert out.sent == []
    assert failure_of(out)[0] == code


def test_plaintext_after_234_is_injection() -> None:
    """Lines arriving with the 234 are STARTTLS injection: protocol_error, with them as
    the excerpt."""
    out = drive(FTPNegotiator, [VSFTPD_GREETING, VSFTPD_234 + b"250 injected\r\n"])
    code, message = failure_of(out)
    assert code == "protocol_error" and "injection" in message
    assert out.final is not None and "250 injected" in (out.final.failure.excerpt or "")


@pytest.mark.parametrize("feeding", FEEDINGS)
@pytest.mark.parametrize(
    "garbage",
    [b"SSH-2.0-OpenSSH_9.2p1\r\n", b"\x00\x01\x02\x03", b"22x", b"2200 ok\r\n", b"HTTP/1.1"],
)
def test_garbage_greeting_fails_at_once(garbage: bytes, feeding: str) -> None:
    """Bytes that cannot begin an FTP reply fail as soon as they arrive, no line break
    needed, with an excerpt."""
    out = drive(FTPNegotiator, [garbage], feeding)
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert message.startswith("not an FTP reply (RFC 959 §4.2) while waiting for the greeting")


def test_garbage_auth_reply() -> None:
    """A non-reply in answer to AUTH TLS says which reply was awaited."""
    out = drive(FTPNegotiator, [VSFTPD_GREETING, b"\x16\x03\x01\x00"])
    code, message = failure_of(out)
    assert code == "protocol_error" and "while waiting for the AUTH TLS reply" in message


def test_tls_record_suggests_ftps() -> None:
    """A TLS record instead of a greeting says to use ftps://."""
    code, message = failure_of(drive(FTPNegotiator, [b"\x15\x03\x03\x00\x02\x02\x46"]))
    assert code == "protocol_error" and "use ftps://" in message


def test_overlong_line_is_capped() -> None:
    """A greeting line without an end fails once it passes the line cap."""
    out = drive(FTPNegotiator, [b"220 " + b"x" * 9000])
    code, message = failure_of(out)
    assert code == "protocol_error" and "reply line too long" in message


def test_endless_multi_line_reply_is_capped() -> None:
    """A multi-line reply that never ends fails at the line cap, not at memory exhaustion."""
    data = b"220-start\r\n" + b" more\r\n" * (MAX_REPLY_LINES + 1)
    code, message = failure_of(drive(FTPNegotiator, [data]))
    assert code == "protocol_error" and "multi-line reply longer than" in message


def test_buffer_cap() -> None:
    """The parser refuses to buffer more than its cap of unconsumed bytes."""
    parser = ReplyParser(max_bytes=100)
    with pytest.raises(ReplyError, match="more than 100 bytes"):
        parser.feed(b"2" * 101)


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ([], "server closed the connection before sending its FTP greeting"),
        ([b"220 (vsF"], "server closed the connection in the middle of its greeting"),
        ([b"220-Welcome\r\n"], "server closed the connection in the middle of its greeting"),
        ([VSFTPD_GREETING], "server closed the connection without answering AUTH TLS"),
        ([VSFTPD_GREETING, b"23"], "server closed the connection without answering AUTH TLS"),
    ],
)
def test_eof_in_each_state(server: list[bytes], message: str) -> None:
    """End of stream in every state is `closed`, saying where."""
    assert failure_of(drive(FTPNegotiator, server, eof=True)) == ("closed", message)


def test_input_after_the_verdict_is_ignored() -> None:
    """Once done, the negotiator emits nothing more."""
    neg = FTPNegotiator(CTX)
    neg.receive_data(VSFTPD_GREETING)
    assert isinstance(neg.receive_data(VSFTPD_234)[0], Ready)
    assert neg.receive_data(b"220 again\r\n") == []
    assert neg.receive_data(b"") == []


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    """Any bytes, cut anyhow, then end of stream: exactly one verdict, never an exception."""
    out = drive_chunks(FTPNegotiator, chunks)
    assert out.final is not None and out.extra == []


texts = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
    str.encode
)


@given(
    st.lists(texts, max_size=5),
    st.sampled_from([234, 334, 431, 500, 502, 504, 530, 534, 200]),
    st.lists(st.integers(min_value=1, max_value=600), max_size=12),
)
def test_chunking_does_not_change_the_outcome(
    banner: list[bytes], code: int, cuts: list[int]
) -> None:
    """A greeting (one line or many) and an AUTH reply cut anywhere give the same sent
    bytes and verdict as fed whole."""
    greeting = b"".join(b"220-" + t + b"\r\n" for t in banner) + b"220 ready\r\n"
    reply = f"{code} text\r\n".encode()
    whole = drive(FTPNegotiator, [greeting, reply])
    cut = drive_chunks(FTPNegotiator, split_at(greeting + reply, cuts), eof=False)
    assert (cut.sent, cut.final) == (whole.sent, whole.final)
    assert whole.final is not None
