"""The NNTP STARTTLS negotiator (RFC 4642 on RFC 3977)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.transcript import FEEDINGS, drive, drive_chunks, failure_of, split_at
from tlswatch.protocols.base import Failed, Ready
from tlswatch.protocols.nntp import NNTPNegotiator

CAPABILITIES = b"CAPABILITIES\r\n"
STARTTLS = b"STARTTLS\r\n"
MODE_READER = b"MODE READER\r\n"

# Captured from the test's INN 2.7.1 nnrpd (tests/servers/inn.py).
INN_GREETING = b"201 news.tlswatch.test InterNetNews NNRP server INN 2.7.1 ready (no posting)\r\n"
INN_CAPS = (
    b"101 Capability list:\r\nVERSION 2\r\nIMPLEMENTATION INN 2.7.1\r\nAUTHINFO SASL\r\n"
    b"COMPRESS DEFLATE\r\nHDR\r\nLIST ACTIVE ACTIVE.TIMES COUNTS DISTRIB.PATS DISTRIBUTIONS "
    b"HEADERS MODERATORS MOTD NEWSGROUPS OVERVIEW.FMT SUBSCRIPTIONS\r\nOVER\r\nREADER\r\n"
    b"SASL SCRAM-SHA-512 SCRAM-SHA-384 SCRAM-SHA-256 SCRAM-SHA-224 SCRAM-SHA-1 DIGEST-MD5 "
    b"CRAM-MD5 NTLM\r\nSTARTTLS\r\nXPAT\r\n.\r\n"
)
INN_382 = b"382 Begin TLS negotiation now\r\n"
# nnrpd with a TLS key readable by others (it refuses to use it)
INN_580 = b"580 Error initializing TLS\r\n"
# nnrpd without its overview database
INN_400 = b"400 NNTP server unavailable.  Try later!\r\n"
INN_500 = b"500 What?\r\n"

# Scripted: a mode-switching server (innd, RFC 3977 §5.3) that lists STARTTLS only in
# reader mode, and one without STARTTLS at all.
TRANSIT_CAPS = b"101 Capability list:\r\nVERSION 2\r\nIHAVE\r\nMODE-READER\r\n.\r\n"
READER_CAPS_NO_TLS = b"101 Capability list:\r\nVERSION 2\r\nREADER\r\nOVER\r\n.\r\n"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_inn_starttls_is_ready(feeding: str) -> None:
    """201, CAPABILITIES lists STARTTLS, STARTTLS, 382: ready with banner and capabilities."""
    out = drive(NNTPNegotiator, [INN_GREETING, INN_CAPS, INN_382], feeding)
    assert out.sent == [CAPABILITIES, STARTTLS]
    assert out.final == Ready(
        {
            "banner": INN_GREETING.decode().strip(),
            "capabilities": "VERSION IMPLEMENTATION AUTHINFO COMPRESS HDR LIST OVER READER "
            "SASL STARTTLS XPAT",
            "starttls_reply": "382 Begin TLS negotiation now",
        }
    )
    assert out.extra == []


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_580_is_refused(feeding: str) -> None:
    """580 to STARTTLS (RFC 4642 §2.2.2): upgrade_refused quoting the reply."""
    out = drive(NNTPNegotiator, [INN_GREETING, INN_CAPS, INN_580], feeding)
    assert failure_of(out) == (
        "upgrade_refused",
        "server refused STARTTLS: 580 Error initializing TLS",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_400_greeting_is_refused(feeding: str) -> None:
    """400 instead of 200/201 (RFC 3977 §5.1.1): upgrade_refused, nothing sent."""
    out = drive(NNTPNegotiator, [INN_400], feeding)
    assert out.sent == []
    assert failure_of(out) == (
        "upgrade_refused",
        "server refused the NNTP session: 400 NNTP server unavailable.  Try later!",
    )


def test_502_greeting_is_refused() -> None:
    """502: service permanently unavailable to us."""
    code, _ = failure_of(drive(NNTPNegotiator, [b"502 Access denied\r\n"]))
    assert code == "upgrade_refused"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_mode_switching_server_gets_mode_reader(feeding: str) -> None:
    """MODE-READER advertised without STARTTLS: MODE READER, CAPABILITIES again, then
    STARTTLS once the reader capabilities list it."""
    out = drive(
        NNTPNegotiator,
        [b"200 innd ready\r\n", TRANSIT_CAPS, INN_GREETING, INN_CAPS, INN_382],
        feeding,
    )
    assert out.sent == [CAPABILITIES, MODE_READER, CAPABILITIES, STARTTLS]
    assert isinstance(out.final, Ready)


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_no_starttls_even_after_mode_reader(feeding: str) -> None:
    """MODE READER sent once; still no STARTTLS: upgrade_not_offered, saying so."""
    out = drive(
        NNTPNegotiator,
        [b"200 innd ready\r\n", TRANSIT_CAPS, INN_GREETING, READER_CAPS_NO_TLS],
        feeding,
    )
    assert out.sent == [CAPABILITIES, MODE_READER, CAPABILITIES]
    assert failure_of(out) == (
        "upgrade_not_offered",
        "server's CAPABILITIES do not list STARTTLS (not even after MODE READER): "
        "VERSION READER OVER",
    )


def test_reader_without_starttls_is_not_offered_without_mode_reader() -> None:
    """READER (not mode-switching) without STARTTLS: no MODE READER, not offered."""
    out = drive(NNTPNegotiator, [INN_GREETING, READER_CAPS_NO_TLS])
    assert out.sent == [CAPABILITIES]
    assert failure_of(out)[0] == "upgrade_not_offered"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_rfc977_server_without_capabilities(feeding: str) -> None:
    """500 to CAPABILITIES (an RFC 977 server): STARTTLS anyway; 500 again: not offered."""
    out = drive(NNTPNegotiator, [INN_GREETING, INN_500, INN_500], feeding)
    assert out.sent == [CAPABILITIES, STARTTLS]
    assert failure_of(out) == ("upgrade_not_offered", "server does not offer STARTTLS: 500 What?")


def test_502_to_starttls_is_not_offered() -> None:
    """502 to STARTTLS (command unavailable, RFC 4642 §2.2.2): not offered."""
    out = drive(NNTPNegotiator, [INN_GREETING, INN_CAPS, b"502 Already using TLS\r\n"])
    assert failure_of(out)[0] == "upgrade_not_offered"


def test_dot_stuffed_capability_is_unstuffed() -> None:
    """A capability line starting with '..' is one dot-stuffed '.' line (RFC 3977 §3.1.1),
    not the end of the list."""
    caps = b"101 list\r\n..ODD\r\nSTARTTLS\r\n.\r\n"
    out = drive(NNTPNegotiator, [INN_GREETING, caps, INN_382])
    assert isinstance(out.final, Ready)
    assert out.final.info["capabilities"] == ".ODD STARTTLS"


def test_plaintext_after_382_is_injection() -> None:
    """Bytes after 382 in the same read never reach TLS: protocol_error."""
    out = drive(NNTPNegotiator, [INN_GREETING, INN_CAPS, INN_382 + b"211 injected\r\n"])
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert "STARTTLS response injection" in message
    assert isinstance(out.final, Failed)
    assert out.final.failure.excerpt == "211 injected\\r\\n"


def test_382_before_starttls_is_injection() -> None:
    """A 382 pipelined right behind the capability list answers nothing we sent."""
    out = drive(NNTPNegotiator, [INN_GREETING, INN_CAPS + INN_382])
    assert out.sent == [CAPABILITIES]
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert "before we sent STARTTLS" in message


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([], "server closed the connection while we waited for the greeting"),
        ([INN_GREETING], "server closed the connection while we waited for the CAPABILITIES response"),
        ([INN_GREETING, INN_CAPS[:40]], "server closed the connection while we waited for the end of the capability list"),
        ([b"200 x\r\n", TRANSIT_CAPS], "server closed the connection while we waited for the MODE READER response"),
        ([INN_GREETING, INN_CAPS], "server closed the connection while we waited for the STARTTLS response"),
    ],
)  # fmt: skip
def test_eof_in_each_state(chunks: list[bytes], message: str) -> None:
    """End of stream in every state: closed, naming what we waited for."""
    assert failure_of(drive(NNTPNegotiator, chunks, eof=True)) == ("closed", message)


@pytest.mark.parametrize("feeding", FEEDINGS)
@pytest.mark.parametrize(
    "garbage", [b"HTTP/1.1 400 Bad Request\r\n", b"\x00\x01\x02", b"SSH-2.0-OpenSSH_9.2\r\n"]
)
def test_garbage_greeting_fails_at_once(garbage: bytes, feeding: str) -> None:
    """Bytes that cannot start a status line fail on arrival, without waiting for a line."""
    out = drive(NNTPNegotiator, [garbage], feeding)
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert message.startswith("not an NNTP status line (RFC 3977 §3.2) while waiting")


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_tls_record_suggests_nntps(feeding: str) -> None:
    """A TLS alert instead of a greeting: the message points to nntps://."""
    out = drive(NNTPNegotiator, [b"\x15\x03\x03\x00\x02\x02\x46"], feeding)
    assert failure_of(out)[1].endswith("(use nntps://)")


def test_overlong_line_and_endless_list_are_capped() -> None:
    """A line without end and a never-ending capability list both fail (protocol_error)."""
    assert failure_of(drive(NNTPNegotiator, [b"200 " + b"x" * 10000]))[0] == "protocol_error"
    endless = b"101 list\r\n" + b"X\r\n" * 600
    assert failure_of(drive(NNTPNegotiator, [INN_GREETING, endless]))[0] == "protocol_error"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Whatever the server sends, the negotiator ends in an event; it never raises."""
    out = drive_chunks(NNTPNegotiator, [data])
    assert out.final is not None
    assert out.extra == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=len(INN_CAPS)), max_size=12),
    st.sampled_from([INN_382, INN_580, INN_500]),
)
def test_chunking_invariance(cuts: list[int], answer: bytes) -> None:
    """The recorded exchange with its capability list cut anywhere ends the same."""
    chunks = [INN_GREETING, *split_at(INN_CAPS, cuts), answer]
    out = drive_chunks(NNTPNegotiator, chunks, eof=False)
    whole = drive(NNTPNegotiator, [INN_GREETING, INN_CAPS, answer])
    assert out.sent == whole.sent
    assert out.final == whole.final
