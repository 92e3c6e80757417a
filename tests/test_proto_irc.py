"""The IRC STARTTLS negotiator (IRCv3 tls extension) and IRC message framing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.transcript import FEEDINGS, drive, drive_chunks, failure_of, split_at
from tlswatch.protocols.base import Failed, Ready
from tlswatch.protocols.irc import IRCNegotiator, Message, parse_message

OPENING = b"CAP LS 302\r\nSTARTTLS\r\n"

# Captured from the test's InspIRCd 3.15 (tests/servers/inspircd.py) and the same server
# before host-name lookups were turned off (the NOTICE lines).
INSPIRCD_NOTICES = (
    b":irc.tlswatch.test NOTICE * :*** Looking up your hostname...\r\n"
    b":irc.tlswatch.test NOTICE * :*** Could not resolve your hostname: Request timed out; "
    b"using your IP address (127.0.0.1) instead.\r\n"
)
INSPIRCD_CAP_LS = (
    b":irc.tlswatch.test CAP * LS :inspircd.org/poison inspircd.org/standard-replies tls \r\n"
)
INSPIRCD_670 = b":irc.tlswatch.test 670 * :STARTTLS successful, go ahead with TLS handshake\r\n"
# InspIRCd, STARTTLS after registration
INSPIRCD_691 = (
    b":irc.tlswatch.test 691 a :STARTTLS is not permitted after client registration is complete\r\n"
)

# Scripted, in the shapes real servers use: a server with CAP but without the extension,
# a server without STARTTLS (421), a 451 for unregistered clients, a K-line, a PING.
CAP_NO_TLS = b":irc.example.net CAP * LS :multi-prefix\r\n"
CAP_MULTI = (
    b":irc.example.net CAP * LS * :multi-prefix sasl=PLAIN,EXTERNAL\r\n"
    b":irc.example.net CAP * LS :tls server-time\r\n"
)
UNKNOWN_CAP = b":irc.example.net 421 * CAP :Unknown command\r\n"
UNKNOWN_STARTTLS = b":irc.example.net 421 * STARTTLS :Unknown command\r\n"
NOT_REGISTERED = b":irc.example.net 451 * STARTTLS :You have not registered\r\n"
ERROR_KLINE = b"ERROR :Closing Link: 127.0.0.1 (K-Lined)\r\n"
PING = b"PING :irc.example.net\r\n"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_inspircd_starttls_is_ready(feeding: str) -> None:
    """NOTICEs ignored, CAP LS lists tls, 670: ready; both commands sent at connect."""
    out = drive(IRCNegotiator, [INSPIRCD_NOTICES, INSPIRCD_CAP_LS + INSPIRCD_670], feeding)
    assert out.sent == [OPENING]
    assert out.final == Ready(
        {
            "cap_tls": "yes",
            "caps": "inspircd.org/poison inspircd.org/standard-replies tls",
            "server": "irc.tlswatch.test",
            "starttls_reply": "670 * STARTTLS successful, go ahead with TLS handshake",
        }
    )
    assert out.extra == []


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_server_without_cap_answers_670(feeding: str) -> None:
    """No CAP reply at all (InspIRCd without its cap module): 670 alone is enough."""
    out = drive(IRCNegotiator, [INSPIRCD_670], feeding)
    assert isinstance(out.final, Ready)
    assert out.final.info["cap_tls"] == "unknown"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_multi_line_cap_ls_and_421_for_cap(feeding: str) -> None:
    """CAP 302 continuation lines are joined; 421 about CAP is not about STARTTLS."""
    out = drive(IRCNegotiator, [UNKNOWN_CAP, CAP_MULTI, INSPIRCD_670], feeding)
    assert isinstance(out.final, Ready)
    assert out.final.info["caps"] == "multi-prefix sasl server-time tls"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_691_is_refused(feeding: str) -> None:
    """691 ERR_STARTTLS: upgrade_refused quoting the server."""
    out = drive(IRCNegotiator, [INSPIRCD_691], feeding)
    assert failure_of(out) == (
        "upgrade_refused",
        "server refused STARTTLS: 691 a STARTTLS is not permitted after client registration "
        "is complete",
    )


@pytest.mark.parametrize(
    ("reply", "code", "message"),
    [
        (CAP_NO_TLS, "upgrade_not_offered", "server's CAP LS does not list the tls capability (no STARTTLS): multi-prefix"),
        (UNKNOWN_STARTTLS, "upgrade_not_offered", "server does not offer STARTTLS: 421 * STARTTLS Unknown command"),
        (NOT_REGISTERED, "upgrade_not_offered", "server does not offer STARTTLS: 451 * STARTTLS You have not registered"),
        (ERROR_KLINE, "upgrade_refused", "server closed the link: Closing Link: 127.0.0.1 (K-Lined)"),
        (b":irc.example.net 465 * :You are banned\r\n", "upgrade_refused", "server bans this client: 465 * You are banned"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_refusals_and_not_offered(reply: bytes, code: str, message: str, feeding: str) -> None:
    """Each answer meaning 'no STARTTLS here' maps to its class, quoting the server."""
    out = drive(IRCNegotiator, [INSPIRCD_NOTICES, reply], feeding)
    assert failure_of(out) == (code, message)


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_ping_is_answered(feeding: str) -> None:
    """PING before the answer gets a PONG with the same token (RFC 2812 §3.7.2)."""
    out = drive(IRCNegotiator, [PING, INSPIRCD_670], feeding)
    assert out.sent == [OPENING, b"PONG :irc.example.net\r\n"]
    assert isinstance(out.final, Ready)


def test_plaintext_after_670_is_injection() -> None:
    """Bytes after 670 in the same read never reach TLS: protocol_error."""
    out = drive(IRCNegotiator, [INSPIRCD_670 + b":evil PRIVMSG x :hi\r\n"])
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert "STARTTLS response injection" in message
    assert isinstance(out.final, Failed)
    assert out.final.failure.excerpt == ":evil PRIVMSG x :hi\\r\\n"


@pytest.mark.parametrize("chunks", [[], [INSPIRCD_NOTICES], [INSPIRCD_CAP_LS], [INSPIRCD_670[:20]]])
def test_eof_in_each_state_is_closed(chunks: list[bytes]) -> None:
    """End of stream before the STARTTLS answer, wherever it comes: closed."""
    assert failure_of(drive(IRCNegotiator, chunks, eof=True)) == (
        "closed",
        "server closed the connection before answering STARTTLS",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_tls_record_suggests_ircs(feeding: str) -> None:
    """A TLS alert on the plaintext port: protocol_error pointing to ircs://."""
    out = drive(IRCNegotiator, [b"\x15\x03\x03\x00\x02\x02\x46"], feeding)
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert message.endswith("(use ircs://)")


@pytest.mark.parametrize(
    "garbage", [b"HTTP/1.1 400 Bad Request\r\n", b"\x00\x00\x00\r\n", b"12 bad\r\n"]
)
def test_garbage_is_protocol_error(garbage: bytes) -> None:
    """Lines that are not IRC messages: protocol_error quoting them."""
    code, message = failure_of(drive(IRCNegotiator, [garbage]))
    assert code == "protocol_error"
    assert "while waiting for the STARTTLS answer" in message


def test_line_and_dialogue_caps() -> None:
    """A line over 512+8191 bytes and endless chatter without an answer are capped."""
    assert failure_of(drive(IRCNegotiator, [b":s NOTICE * :" + b"x" * 9000]))[0] == (
        "protocol_error"
    )
    chatter = b":s NOTICE * :hello\r\n" * 4000
    assert failure_of(drive(IRCNegotiator, [chatter]))[1].startswith("more than 65536 bytes")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b":irc.example 670 * :go ahead", Message("irc.example", "670", ("*", "go ahead"))),
        (b"PING :tok en", Message("", "PING", ("tok en",))),
        (b"@time=2024 :s CAP * LS :a b", Message("s", "CAP", ("*", "LS", "a b"))),
        (b"notice AUTH :*** hi", Message("", "NOTICE", ("AUTH", "*** hi"))),
        (b":s 005 n " + b"A " * 20 + b":x", Message("s", "005", ("n", *["A"] * 13, "A A A A A A A :x"))),
    ],
)  # fmt: skip
def test_message_framing(line: bytes, expected: Message) -> None:
    """Tags, prefix, command (case-folded), middle params, trailing; at most 15 params
    (RFC 1459 §2.3.1), the 15th taking the rest of the line."""
    assert parse_message(line) == expected


def test_empty_line_is_ignored() -> None:
    """Empty messages are silently ignored (RFC 1459 §2.3.1)."""
    assert parse_message(b"") is None
    out = drive(IRCNegotiator, [b"\r\n\r\n" + INSPIRCD_670])
    assert isinstance(out.final, Ready)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Whatever the server sends, the negotiator ends in an event; it never raises."""
    out = drive_chunks(IRCNegotiator, [data])
    assert out.final is not None
    assert out.extra == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=400), max_size=12),
    st.sampled_from([INSPIRCD_670, INSPIRCD_691, UNKNOWN_STARTTLS, ERROR_KLINE]),
)
def test_chunking_invariance(cuts: list[int], answer: bytes) -> None:
    """The recorded exchange cut anywhere ends the same as fed whole."""
    data = INSPIRCD_NOTICES + PING + INSPIRCD_CAP_LS + answer
    out = drive_chunks(IRCNegotiator, split_at(data, cuts), eof=False)
    whole = drive(IRCNegotiator, [data])
    assert out.sent == whole.sent
    assert out.final == whole.final
