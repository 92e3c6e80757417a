"""The ManageSieve STARTTLS negotiator (RFC 5804 §2.2) and its capability-greeting
tokenizer, on recorded exchanges fed whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.transcript import CTX, FEEDINGS, drive, drive_chunks, failure_of, split_at
from tlswatch.protocols.base import Ready
from tlswatch.protocols.literals import LogicalLine
from tlswatch.protocols.sieve import MAX_CAPABILITIES, SieveNegotiator, Token, tokenize

STARTTLS = b"STARTTLS\r\n"

# Captured from the test's Dovecot 2.3.19.1 / Pigeonhole (tests/servers/dovecot.py).
DOVECOT_GREETING = (
    b'"IMPLEMENTATION" "Dovecot (Debian) Pigeonhole"\r\n'
    b'"SIEVE" "fileinto reject envelope encoded-character vacation subaddress '
    b"comparator-i;ascii-numeric relational regex imap4flags copy include variables body "
    b'enotify environment mailbox date index ihave duplicate mime foreverypart extracttext"\r\n'
    b'"NOTIFY" "mailto"\r\n"SASL" "PLAIN"\r\n"STARTTLS"\r\n"VERSION" "1.0"\r\n'
    b'OK "Dovecot (Debian) ready."\r\n'
)
DOVECOT_OK = b'OK "Begin TLS negotiation now."\r\n'
# The same Dovecot on a listener with ssl=no: it still lists STARTTLS, then says NO.
DOVECOT_NO_TLS_GREETING = DOVECOT_GREETING.replace(b'"SASL" "PLAIN"', b'"SASL" ""')
DOVECOT_NO = b'NO "TLS support isn\'t enabled."\r\n'


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_dovecot_starttls_is_ready(feeding: str) -> None:
    """Capability greeting listing STARTTLS, OK, STARTTLS, OK: ready, with the
    IMPLEMENTATION string as the banner."""
    out = drive(SieveNegotiator, [DOVECOT_GREETING, DOVECOT_OK], feeding)
    assert out.sent == [STARTTLS]
    assert out.final == Ready(
        {
            "capabilities": "IMPLEMENTATION SIEVE NOTIFY SASL STARTTLS VERSION",
            "banner": "Dovecot (Debian) Pigeonhole",
            "starttls_reply": 'OK "Begin TLS negotiation now."',
        }
    )
    assert out.extra == []


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_dovecot_refuses_starttls(feeding: str) -> None:
    """Dovecot with ssl=no advertises STARTTLS and answers NO: upgrade_refused quoting it."""
    out = drive(SieveNegotiator, [DOVECOT_NO_TLS_GREETING, DOVECOT_NO], feeding)
    assert out.sent == [STARTTLS]
    assert failure_of(out) == (
        "upgrade_refused",
        'server refused STARTTLS: NO "TLS support isn\'t enabled."',
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_no_starttls_capability_is_not_offered(feeding: str) -> None:
    """A greeting without STARTTLS: upgrade_not_offered listing the capabilities."""
    greeting = DOVECOT_GREETING.replace(b'"STARTTLS"\r\n', b"")
    out = drive(SieveNegotiator, [greeting], feeding)
    assert out.sent == []
    assert failure_of(out) == (
        "upgrade_not_offered",
        "server does not offer STARTTLS: its capabilities are IMPLEMENTATION SIEVE NOTIFY "
        "SASL VERSION",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_literals_and_escapes_in_the_greeting(feeding: str) -> None:
    """Capability names and values may be literals ({n}, {n+}) or quoted strings with
    escapes (RFC 5804 §4); names are case-insensitive; a response code is allowed on OK."""
    greeting = (
        b'{14}\r\nIMPLEMENTATION "say \\"hi\\""\r\n'
        b'"Sieve" {9+}\r\nfileinto\n\r\n'
        b'"starttls"\r\n'
        b'OK (TAG "x)y") "ready"\r\n'
    )
    out = drive(SieveNegotiator, [greeting, b"OK\r\n"], feeding)
    assert out.sent == [STARTTLS]
    assert isinstance(out.final, Ready)
    assert out.final.info["banner"] == 'say "hi"'
    assert out.final.info["capabilities"] == "IMPLEMENTATION SIEVE STARTTLS"


@pytest.mark.parametrize(
    ("server", "code", "message"),
    [
        ([b'NO "Service unavailable"\r\n'], "upgrade_refused", 'server refused the ManageSieve session: NO "Service unavailable"'),
        ([b'BYE (TRYLATER) "Too busy"\r\n'], "upgrade_refused", 'server refused the ManageSieve session: BYE (TRYLATER) "Too busy"'),
        ([DOVECOT_GREETING, b'BYE "Shutting down"\r\n'], "upgrade_refused", 'server refused STARTTLS: BYE "Shutting down"'),
    ],
)  # fmt: skip
def test_no_and_bye(server: list[bytes], code: str, message: str) -> None:
    """NO or BYE ending the greeting, or answering STARTTLS, is upgrade_refused."""
    assert failure_of(drive(SieveNegotiator, server)) == (code, message)


def test_plaintext_after_ok_is_injection() -> None:
    """Capabilities re-sent in plaintext right after the OK (RFC 5804 §2.2 has them sent
    only after the handshake) are STARTTLS injection: protocol_error."""
    out = drive(SieveNegotiator, [DOVECOT_GREETING, DOVECOT_OK + b'"SASL" "PLAIN"\r\n'])
    code, message = failure_of(out)
    assert code == "protocol_error" and "injection" in message


@pytest.mark.parametrize(
    "garbage",
    [
        b"220 mail.example ESMTP\r\n",
        b"* OK IMAP ready\r\n",
        b"\x00\x01\x02",
        b'"unterminated\r\n',
        b'"A" "B" "C"\r\n',
        b"\r\n",
    ],
)
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_garbage_greeting(garbage: bytes, feeding: str) -> None:
    """Lines that are neither capabilities nor OK/NO/BYE are a protocol error with an
    excerpt, naming what was awaited."""
    out = drive(SieveNegotiator, [garbage], feeding)
    code, message = failure_of(out)
    assert code == "protocol_error" and "while waiting for the ManageSieve greeting" in message
    assert out.final is not None and out.final.failure.excerpt


def test_capability_line_in_answer_to_starttls() -> None:
    out = drive(SieveNegotiator, [DOVECOT_GREETING, b'"STARTTLS"\r\n'])
    code, message = failure_of(out)
    assert code == "protocol_error" and "expected OK, NO or BYE in answer to STARTTLS" in message


def test_too_many_capabilities() -> None:
    greeting = b"".join(f'"X-{i}"\r\n'.encode() for i in range(MAX_CAPABILITIES + 1))
    code, message = failure_of(drive(SieveNegotiator, [greeting]))
    assert code == "protocol_error" and f"more than {MAX_CAPABILITIES} capabilities" in message


def test_overlong_line_is_capped() -> None:
    code, message = failure_of(drive(SieveNegotiator, [b'"SIEVE" "' + b"x" * 9000]))
    assert code == "protocol_error" and "longer than 8192 bytes" in message


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ([], "server closed the connection before sending its ManageSieve greeting"),
        ([b'"IMPLEMENTATION" "Dov'], "server closed the connection in the middle of its capability greeting"),
        ([b'"IMPLEMENTATION" "Dovecot"\r\n'], "server closed the connection in the middle of its capability greeting"),
        ([b'"IMPLEMENTATION" {20}\r\nDove'], "server closed the connection in the middle of its capability greeting"),
        ([DOVECOT_GREETING], "server closed the connection without answering STARTTLS"),
        ([DOVECOT_GREETING, b"O"], "server closed the connection without answering STARTTLS"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("feeding", FEEDINGS)
def test_eof_in_each_state(server: list[bytes], message: str, feeding: str) -> None:
    """End of stream in every state is `closed`, saying where."""
    assert failure_of(drive(SieveNegotiator, server, feeding, eof=True)) == ("closed", message)


def test_input_after_the_verdict_is_ignored() -> None:
    neg = SieveNegotiator(CTX)
    neg.receive_data(DOVECOT_GREETING)
    assert isinstance(neg.receive_data(DOVECOT_OK)[0], Ready)
    assert neg.receive_data(b"OK\r\n") == []
    assert neg.receive_data(b"") == []


def test_tokenizer() -> None:
    """Quoted strings unescape, literals are strings, parenthesised codes stay raw."""
    line = LogicalLine((b'OK (SASL "a\\"b") "x\\\\y" {3}', b"lit", b""))
    assert tokenize(line) == [
        Token("atom", b"OK"),
        Token("code", b'SASL "a\\"b"'),
        Token("string", b"x\\y"),
        Token("string", b"lit"),
    ]


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    """Any bytes, cut anyhow, then end of stream: exactly one verdict, never an exception."""
    out = drive_chunks(SieveNegotiator, chunks)
    assert out.final is not None and out.extra == []


@given(
    prefix=st.sampled_from([b"", b'"SIEVE" "x"\r\n', DOVECOT_GREETING]),
    tail=st.binary(max_size=200),
)
def test_arbitrary_bytes_in_any_state(prefix: bytes, tail: bytes) -> None:
    """Arbitrary bytes after a valid prefix end in exactly one verdict."""
    out = drive_chunks(SieveNegotiator, [prefix, tail])
    assert out.final is not None and out.extra == []


values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@given(
    # capability names other than STARTTLS: whether it is listed is the `offer` flag's job
    st.lists(st.tuples(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=10).filter(lambda n: n != "STARTTLS"), values, st.booleans()), max_size=6),
    st.booleans(),
    st.sampled_from([b'OK "go"', b'NO "no"', b"BYE"]),
    st.lists(st.integers(min_value=1, max_value=400), max_size=10),
)  # fmt: skip
def test_chunking_does_not_change_the_outcome(
    caps: list[tuple[str, str, bool]], offer: bool, reply: bytes, cuts: list[int]
) -> None:
    """A greeting with quoted and literal values, and the STARTTLS reply, cut anywhere give
    the same sent bytes and verdict as fed one response at a time."""
    greeting = b""
    for name, value, as_literal in caps:
        raw = value.encode()
        if as_literal:
            greeting += f'"{name}" {{{len(raw)}}}\r\n'.encode() + raw + b"\r\n"
        else:
            quoted = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
            greeting += f'"{name}" "'.encode() + quoted + b'"\r\n'
    if offer:
        greeting += b'"STARTTLS"\r\n'
    greeting += b"OK\r\n"
    answer = reply + b"\r\n"
    whole = drive(SieveNegotiator, [greeting, answer])
    cut = drive_chunks(SieveNegotiator, split_at(greeting + answer, cuts), eof=False)
    assert (cut.sent, cut.final) == (whole.sent, whole.final)
    assert isinstance(whole.final, Ready) == (offer and reply.startswith(b"OK"))
