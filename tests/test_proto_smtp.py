"""The SMTP and LMTP STARTTLS negotiators (RFC 3207, RFC 2033) and RFC 5321 §4.2 reply
framing, on recorded exchanges fed whole and byte by byte."""

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
from tlswatch.errors import TargetError
from tlswatch.protocols.base import NegotiatorContext, Ready
from tlswatch.protocols.smtp import (
    FALLBACK_EHLO,
    MAX_REPLY_LINES,
    LMTPNegotiator,
    Reply,
    ReplyError,
    ReplyParser,
    SMTPNegotiator,
    default_ehlo_name,
    valid_ehlo_name,
)
from tlswatch.targets import parse_target

EHLO = b"EHLO tlswatch.test\r\n"
STARTTLS = b"STARTTLS\r\n"


def smtp(ctx: NegotiatorContext) -> SMTPNegotiator:
    """The SMTP negotiator with a fixed EHLO name, so transcripts do not depend on the host."""
    return SMTPNegotiator(NegotiatorContext(ctx.host, ctx.port, ctx.sni, {"ehlo": "tlswatch.test"}))


def lmtp(ctx: NegotiatorContext) -> LMTPNegotiator:
    return LMTPNegotiator(NegotiatorContext(ctx.host, ctx.port, ctx.sni, {"ehlo": "tlswatch.test"}))


# Captured from the test's Postfix 3.7.11 (tests/servers/postfix.py).
POSTFIX_GREETING = b"220 mail.tlswatch.test ESMTP Postfix (tlswatch test)\r\n"
POSTFIX_EHLO = (
    b"250-mail.tlswatch.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
    b"250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n"
    b"250-SMTPUTF8\r\n250 CHUNKING\r\n"
)
POSTFIX_EHLO_NO_TLS = (  # the same smtpd with smtpd_tls_security_level=none
    b"250-mail.tlswatch.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
    b"250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
    b"250 CHUNKING\r\n"
)
POSTFIX_220 = b"220 2.0.0 Ready to start TLS\r\n"
POSTFIX_502 = b"502 5.5.1 Error: command not implemented\r\n"  # its STARTTLS without TLS
POSTFIX_UNKNOWN = b"500 5.5.2 Error: command not recognized\r\n"  # its answer to LHLO

# Captured from the test's Dovecot 2.3.19.1 LMTP listener (tests/servers/dovecot.py).
DOVECOT_LMTP_GREETING = b"220 mail.tlswatch.test Dovecot (Debian) ready.\r\n"
DOVECOT_LHLO = (
    b"250-mail.tlswatch.test\r\n250-8BITMIME\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n"
    b"250-PIPELINING\r\n250 STARTTLS\r\n"
)
DOVECOT_LMTP_220 = b"220 2.0.0 Begin TLS negotiation now.\r\n"

POSTFIX_INFO = {
    "banner": "mail.tlswatch.test ESMTP Postfix (tlswatch test)",
    "ehlo": "mail.tlswatch.test",
    "capabilities": "PIPELINING SIZE VRFY ETRN STARTTLS ENHANCEDSTATUSCODES 8BITMIME DSN "
    "SMTPUTF8 CHUNKING",
    "starttls_reply": "220 2.0.0 Ready to start TLS",
}


# --- recorded exchanges -------------------------------------------------------------------


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_postfix_starttls_is_ready(feeding: str) -> None:
    """Postfix: 220, EHLO, 250 with STARTTLS, STARTTLS, 220: ready, with the banner and
    the capabilities in the info."""
    out = drive(smtp, [POSTFIX_GREETING, POSTFIX_EHLO, POSTFIX_220], feeding)
    assert out.sent == [EHLO, STARTTLS]
    assert out.final == Ready(POSTFIX_INFO)
    assert out.extra == []


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_dovecot_lmtp_uses_lhlo(feeding: str) -> None:
    """LMTP sends LHLO, not EHLO (RFC 2033 §4.1), then STARTTLS."""
    out = drive(lmtp, [DOVECOT_LMTP_GREETING, DOVECOT_LHLO, DOVECOT_LMTP_220], feeding)
    assert out.sent == [b"LHLO tlswatch.test\r\n", STARTTLS]
    assert isinstance(out.final, Ready)
    assert out.final.info["capabilities"] == (
        "8BITMIME CHUNKING ENHANCEDSTATUSCODES PIPELINING STARTTLS"
    )
    assert out.final.info["banner"] == "mail.tlswatch.test Dovecot (Debian) ready."


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_postfix_without_tls_is_not_offered(feeding: str) -> None:
    """EHLO without STARTTLS: upgrade_not_offered listing the extensions; STARTTLS is never
    sent."""
    out = drive(smtp, [POSTFIX_GREETING, POSTFIX_EHLO_NO_TLS], feeding)
    assert out.sent == [EHLO]
    assert failure_of(out) == (
        "upgrade_not_offered",
        "server does not offer STARTTLS: its EHLO reply lists PIPELINING SIZE VRFY ETRN "
        "ENHANCEDSTATUSCODES 8BITMIME DSN SMTPUTF8 CHUNKING",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_lmtp_against_smtp_server(feeding: str) -> None:
    """lmtp:// at Postfix's smtpd: LHLO answered 500 is upgrade_not_offered saying the
    server does not speak LMTP."""
    out = drive(lmtp, [POSTFIX_GREETING, POSTFIX_UNKNOWN], feeding)
    assert failure_of(out) == (
        "upgrade_not_offered",
        "server rejected LHLO (500 5.5.2 Error: command not recognized): it does not speak "
        "LMTP, so it cannot offer STARTTLS (RFC 3207 §4)",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_multi_line_greeting_is_one_reply(feeding: str) -> None:
    """A multi-line 220 greeting (RFC 5321 §4.2) is read whole: EHLO is sent once, and
    the banner joins its lines."""
    greeting = b"220-mx.example ESMTP\r\n220-No UCE\r\n220 Go ahead\r\n"
    out = drive(smtp, [greeting, POSTFIX_EHLO, POSTFIX_220], feeding)
    assert out.sent == [EHLO, STARTTLS]
    assert isinstance(out.final, Ready)
    assert out.final.info["banner"] == "mx.example ESMTP No UCE Go ahead"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_bare_code_lines_and_lf_endings(feeding: str) -> None:
    """A last line that is only the code ("250", RFC 5321 §4.2 grammar) and bare-LF line
    ends are accepted."""
    out = drive(smtp, [b"220\n", b"250-mx\n250-STARTTLS\n250\n", b"220\n"], feeding)
    assert isinstance(out.final, Ready)
    assert out.final.info["capabilities"] == "STARTTLS"


def test_capability_keywords_are_case_insensitive() -> None:
    """An extension listed as "250 starttls" counts: EHLO keywords are case-insensitive
    (RFC 5321 §2.4)."""
    out = drive(smtp, [POSTFIX_GREETING, b"250-mx\r\n250 starttls\r\n", POSTFIX_220])
    assert out.sent == [EHLO, STARTTLS]
    assert isinstance(out.final, Ready)


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("greeting", "code", "message"),
    [
        (
            b"554 5.3.2 mx.example No SMTP service here\r\n",
            "upgrade_refused",
            "server refused the SMTP session (no service for us): "
            "554 5.3.2 mx.example No SMTP service here",
        ),
        (
            b"421 4.3.2 Service shutting down\r\n",
            "upgrade_refused",
            "server refused the SMTP session: 421 4.3.2 Service shutting down",
        ),
        (
            b"250 mx.example hello\r\n",
            "protocol_error",
            "unexpected SMTP greeting 250 (expected 220, RFC 5321 §4.3.1)",
        ),
    ],
)
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_greetings_other_than_220(greeting: bytes, code: str, message: str, feeding: str) -> None:
    """554 and 4xx greetings refuse the session (quoting the server); a 2xx other than 220
    is a protocol error. EHLO is never sent."""
    out = drive(smtp, [greeting], feeding)
    assert out.sent == []
    assert failure_of(out) == (code, message)


@pytest.mark.parametrize(
    ("reply", "code", "message"),
    [
        (
            b"502 5.5.2 Error: command not recognized\r\n",
            "upgrade_not_offered",
            "server rejected EHLO (502 5.5.2 Error: command not recognized): it does not "
            "support ESMTP, so it cannot offer STARTTLS (RFC 3207 §4)",
        ),
        (
            b"550 5.7.1 Go away\r\n",
            "upgrade_not_offered",
            "server rejected EHLO (550 5.7.1 Go away): it does not support ESMTP, so it "
            "cannot offer STARTTLS (RFC 3207 §4)",
        ),
        (
            b"421 4.7.0 Try again later\r\n",
            "upgrade_refused",
            "server refused EHLO: 421 4.7.0 Try again later",
        ),
        (
            b"354 go on\r\n",
            "protocol_error",
            "unexpected reply 354 to EHLO (expected 250, RFC 5321 §4.3.2)",
        ),
    ],
)
def test_ehlo_replies(reply: bytes, code: str, message: str) -> None:
    """EHLO rejected with 5xx: no ESMTP, hence no STARTTLS (we never fall back to HELO);
    4xx: refused for now; anything else: protocol error."""
    out = drive(smtp, [POSTFIX_GREETING, reply])
    assert out.sent == [EHLO]
    assert failure_of(out) == (code, message)


@pytest.mark.parametrize(
    ("reply", "code", "message"),
    [
        (
            b"454 4.7.0 TLS not available due to local problem\r\n",
            "upgrade_refused",
            "server refused STARTTLS: 454 4.7.0 TLS not available due to local problem",
        ),
        (
            b"554 5.7.3 Not now\r\n",
            "upgrade_refused",
            "server refused STARTTLS: 554 5.7.3 Not now",
        ),
        (
            POSTFIX_502,
            "upgrade_not_offered",
            "server advertised STARTTLS but does not know the command: "
            "502 5.5.1 Error: command not implemented",
        ),
        (
            b"250 2.0.0 Ok\r\n",
            "protocol_error",
            "unexpected reply 250 to STARTTLS (expected 220, RFC 3207 §4)",
        ),
    ],
)
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_starttls_replies(reply: bytes, code: str, message: str, feeding: str) -> None:
    """454 and other refusals are upgrade_refused quoting the server; a command the
    server turns out not to know is not offered; a non-220 success is a protocol error."""
    out = drive(smtp, [POSTFIX_GREETING, POSTFIX_EHLO, reply], feeding)
    assert out.sent == [EHLO, STARTTLS]
    assert failure_of(out) == (code, message)


# --- injection, garbage, caps ---------------------------------------------------------------


def test_plaintext_after_220_is_injection() -> None:
    """Bytes arriving with the 220 to STARTTLS are STARTTLS response injection (RFC 3207
    §6): protocol_error quoting them, never Ready."""
    out = drive(smtp, [POSTFIX_GREETING, POSTFIX_EHLO, POSTFIX_220 + b"250 injected\r\n"])
    code, message = failure_of(out)
    assert code == "protocol_error" and "STARTTLS response injection" in message
    assert out.final is not None and out.final.failure.excerpt == "250 injected\\r\\n"


def test_partial_line_after_220_is_injection() -> None:
    """Even an unterminated fragment after the go-ahead counts as injected plaintext."""
    out = drive(smtp, [POSTFIX_GREETING, POSTFIX_EHLO, POSTFIX_220 + b"2"])
    assert failure_of(out)[0] == "protocol_error"


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n",
        b"+OK Dovecot ready.\r\n",
        b"\x00\x01\x02\x03",
        b"HTTP/1.1 400 Bad Request\r\n",
        b"2200 ready\r\n",
        b"22",  # fine so far: no verdict until more arrives (checked below)
    ],
)
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_garbage_greeting(garbage: bytes, feeding: str) -> None:
    """Bytes that cannot begin an SMTP reply fail as soon as they arrive (no line break
    needed), as protocol_error with an excerpt, naming what was awaited."""
    out = drive(smtp, [garbage], feeding)
    if garbage == b"22":
        assert out.final is None
        return
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert message.startswith(
        "not an SMTP reply (RFC 5321 §4.2) while waiting for the SMTP greeting"
    )
    assert out.final is not None and out.final.failure.excerpt


def test_tls_record_suggests_smtps() -> None:
    """A TLS alert instead of a greeting says to use smtps://."""
    code, message = failure_of(drive(smtp, [b"\x15\x03\x03\x00\x02\x02\x46"]))
    assert code == "protocol_error" and "use smtps://" in message


def test_garbage_in_ehlo_reply_says_so() -> None:
    """A non-reply in answer to EHLO names the EHLO reply as what was awaited."""
    code, message = failure_of(drive(smtp, [POSTFIX_GREETING, b"250-mx\r\nPIPELINING\r\n"]))
    assert code == "protocol_error"
    assert message == "not an SMTP reply (RFC 5321 §4.2) while waiting for the EHLO reply"


def test_code_change_inside_multi_line_reply() -> None:
    """Lines of one reply must share its code (RFC 5321 §4.2.1)."""
    code, message = failure_of(drive(smtp, [POSTFIX_GREETING, b"250-mx\r\n220 STARTTLS\r\n"]))
    assert code == "protocol_error"
    assert "reply code changed from 250 to 220 inside a multi-line reply" in message


def test_overlong_line_is_capped() -> None:
    """A greeting line without an end fails once it passes the line cap."""
    code, message = failure_of(drive(smtp, [b"220 " + b"x" * 9000]))
    assert code == "protocol_error" and "reply line longer than 8192 bytes" in message


def test_endless_multi_line_reply_is_capped() -> None:
    """A multi-line reply that never ends fails at the line cap, not at memory exhaustion."""
    data = b"220-start\r\n" + b"220-more\r\n" * (MAX_REPLY_LINES + 1)
    code, message = failure_of(drive(smtp, [data]))
    assert code == "protocol_error" and f"longer than {MAX_REPLY_LINES} lines" in message


def test_buffer_cap() -> None:
    """The parser refuses to buffer more than its cap of unconsumed bytes."""
    parser = ReplyParser(max_bytes=100)
    with pytest.raises(ReplyError, match="more than 100 bytes"):
        parser.feed(b"2" * 101)


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ([], "server closed the connection before sending its SMTP greeting"),
        ([b"220 mail.tlswatch"], "server closed the connection in the middle of its greeting"),
        ([b"220-mail.tlswatch.test\r\n"], "server closed the connection in the middle of its greeting"),
        ([POSTFIX_GREETING], "server closed the connection without answering EHLO"),
        ([POSTFIX_GREETING, b"250-mail.tlswatch.test\r\n"], "server closed the connection without answering EHLO"),
        ([POSTFIX_GREETING, POSTFIX_EHLO], "server closed the connection without answering STARTTLS"),
        ([POSTFIX_GREETING, POSTFIX_EHLO, b"22"], "server closed the connection without answering STARTTLS"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_eof_in_each_state(server: list[bytes], message: str, feeding: str) -> None:
    """End of stream in every state is `closed`, saying where."""
    assert failure_of(drive(smtp, server, feeding, eof=True)) == ("closed", message)


def test_eof_evidence_is_quoted() -> None:
    """What arrived of an unfinished reply is quoted with the closed failure."""
    out = drive(smtp, [POSTFIX_GREETING, POSTFIX_EHLO, b"22"], eof=True)
    assert out.final is not None and out.final.failure.excerpt == "22"


def test_input_after_the_verdict_is_ignored() -> None:
    """Once done, the negotiator emits nothing more."""
    neg = smtp(CTX)
    neg.receive_data(POSTFIX_GREETING)
    neg.receive_data(POSTFIX_EHLO)
    assert isinstance(neg.receive_data(POSTFIX_220)[0], Ready)
    assert neg.receive_data(b"220 again\r\n") == []
    assert neg.receive_data(b"") == []


# --- the EHLO name ---------------------------------------------------------------------------


def test_default_ehlo_name_is_a_valid_domain() -> None:
    """Without ehlo=, EHLO carries a syntactically valid domain: the local FQDN when the
    host has one, else tlswatch.invalid."""
    name = default_ehlo_name()
    assert valid_ehlo_name(name) and "." in name
    out = drive(SMTPNegotiator, [POSTFIX_GREETING])
    assert out.sent == [f"EHLO {name}\r\n".encode()]


@pytest.mark.parametrize("name", ["[192.0.2.1]", "[IPv6:2001:db8::1]", "probe.example.net"])
def test_ehlo_option_is_sent(name: str) -> None:
    """ehlo= may be a domain or an address literal (RFC 5321 §4.1.3), sent as given."""
    url = f"smtp://127.0.0.1:25?ehlo={name}"
    target = parse_target(url)
    neg = SMTPNegotiator(NegotiatorContext("127.0.0.1", 25, None, target.options))
    assert neg.receive_data(POSTFIX_GREETING)[0].data == f"EHLO {name}\r\n".encode()  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["a%0d%0aRSET", "has space", "", "-bad.example", "[not-an-ip]"])
def test_bad_ehlo_option_is_rejected_with_the_target(bad: str) -> None:
    """An ehlo= that is not a domain or address literal is a target error: a CR/LF can
    never inject a second command into the dialogue."""
    with pytest.raises(TargetError, match="ehlo must be a domain name"):
        parse_target(f"submission://127.0.0.1?ehlo={bad}")


def test_negotiator_ignores_an_invalid_ehlo_it_is_handed() -> None:
    """Defence in depth: a context built without targets.py still never sends CR/LF."""
    neg = SMTPNegotiator(NegotiatorContext("h", 25, None, {"ehlo": "x\r\nRSET"}))
    assert neg.hello_name in (default_ehlo_name(), FALLBACK_EHLO)


# --- hypothesis ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [smtp, lmtp], ids=["smtp", "lmtp"])
@given(chunks=st.lists(st.binary(max_size=40), max_size=8))
def test_arbitrary_bytes_never_raise(make: object, chunks: list[bytes]) -> None:
    """Any bytes, cut anyhow, then end of stream: exactly one verdict, never an exception."""
    out = drive_chunks(make, chunks)  # type: ignore[arg-type]
    assert out.final is not None and out.extra == []


@given(prefix=st.sampled_from([b"", POSTFIX_GREETING, POSTFIX_GREETING + POSTFIX_EHLO]),
       tail=st.binary(max_size=200))  # fmt: skip
def test_arbitrary_bytes_in_any_state_end_in_a_failure_class(prefix: bytes, tail: bytes) -> None:
    """Arbitrary bytes after a valid prefix give exactly one verdict: Ready only when the
    tail is a complete 220 reply and nothing else; otherwise a classified failure."""
    out = drive_chunks(smtp, [prefix, tail])
    assert out.final is not None and out.extra == []
    if isinstance(out.final, Ready):
        assert prefix.endswith(POSTFIX_EHLO) and tail.startswith(b"220")


texts = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
    str.encode
)


@given(
    st.lists(texts, max_size=5),
    st.lists(st.sampled_from([b"PIPELINING", b"SIZE 1000", b"STARTTLS", b"8BITMIME"]), max_size=5),
    st.sampled_from([220, 454, 502, 554, 250]),
    st.lists(st.integers(min_value=1, max_value=800), max_size=12),
)
def test_chunking_does_not_change_the_outcome(
    banner: list[bytes], caps: list[bytes], code: int, cuts: list[int]
) -> None:
    """A whole dialogue (multi-line greeting, EHLO reply, STARTTLS reply) cut anywhere
    gives the same sent bytes and verdict as fed one reply at a time."""
    greeting = b"".join(b"220-" + t + b"\r\n" for t in banner) + b"220 ready\r\n"
    lines = [b"mx", *caps]
    ehlo = b"".join(b"250-" + c + b"\r\n" for c in lines[:-1]) + b"250 " + lines[-1] + b"\r\n"
    reply = f"{code} text\r\n".encode()
    whole = drive(smtp, [greeting, ehlo, reply])
    cut = drive_chunks(smtp, split_at(greeting + ehlo + reply, cuts), eof=False)
    assert (cut.sent, cut.final) == (whole.sent, whole.final)
    assert whole.final is not None


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=200, max_value=599), st.lists(texts, min_size=1, max_size=4)
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.integers(min_value=1, max_value=600), max_size=10),
)
def test_reply_parser_round_trip(replies: list[tuple[int, list[bytes]]], cuts: list[int]) -> None:
    """Replies serialised per RFC 5321 §4.2 and cut anywhere parse back to exactly the
    codes and lines sent."""
    wire = b""
    for code, lines in replies:
        c = str(code).encode()
        wire += (
            b"".join(c + b"-" + t + b"\r\n" for t in lines[:-1]) + c + b" " + lines[-1] + b"\r\n"
        )
    parser = ReplyParser(max_bytes=1 << 20)
    got: list[Reply] = []
    for piece in split_at(wire, cuts):
        parser.feed(piece)
        while (reply := parser.next_reply()) is not None:
            got.append(reply)
    assert [(r.code, r.lines) for r in got] == [
        (code, tuple(t.decode() for t in lines)) for code, lines in replies
    ]
    assert parser.pending == b""
