"""The XMPP STARTTLS negotiators (RFC 6120 §5) and their XML stream reader."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.transcript import FEEDINGS, drive, drive_chunks, failure_of, split_at
from tlswatch.protocols.base import DEFAULT_MAX_BUFFER, Failed, NegotiatorContext, Ready
from tlswatch.protocols.xmpp import (
    XMPPClientNegotiator,
    XMPPServerNegotiator,
    stream_to,
)

STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"

# Captured from the test's Prosody 0.12.3 (tests/servers/prosody.py), client port.
PROSODY_C2S = (
    b"<?xml version='1.0'?><stream:stream from='localhost' "
    b"xmlns:stream='http://etherx.jabber.org/streams' xml:lang='en' "
    b"id='05162333-9eed-4d62-bc12-39b7448bc42e' xmlns='jabber:client' version='1.0'>"
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
    b"</starttls></stream:features>"
)
PROSODY_PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
# Prosody, a stream addressed to a name it does not serve.
PROSODY_HOST_UNKNOWN = (
    b"<?xml version='1.0'?><stream:stream from='nosuch.example' "
    b"xmlns:stream='http://etherx.jabber.org/streams' xml:lang='en' "
    b"id='369a8aa2-6a3e-45c3-951a-f75b43889287' xmlns='jabber:client' version='1.0'>"
    b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
    b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>This server does not serve "
    b"nosuch.example</text></stream:error></stream:stream>"
)
# Prosody, server-to-server port.
PROSODY_S2S = (
    b"<?xml version='1.0'?><stream:stream from='localhost' xmlns='jabber:server' "
    b"version='1.0' xmlns:stream='http://etherx.jabber.org/streams' xml:lang='en' to='' "
    b"id='a53c6d23-fbcf-45ad-b91e-00ca4c8fc463' xmlns:db='jabber:server:dialback'>"
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
    b"</starttls><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>"
)

# Scripted (no real server shows these on demand): a server without TLS configured, in
# Prosody's format with only SASL offered; a <failure/> answer; another stream prefix.
NO_TLS = PROSODY_C2S.replace(
    b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>",
    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    b"</mechanisms>",
)
FAILURE = b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"
OTHER_PREFIX = (
    b'<s:stream xmlns:s="http://etherx.jabber.org/streams" xmlns="jabber:client" '
    b'version="1.0" from="example.org"><s:features>\n  <starttls '
    b'xmlns="urn:ietf:params:xml:ns:xmpp-tls"/>\n</s:features>'
)

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"]><stream:stream>&lol9;"
)


def header(neg_cls: type[XMPPClientNegotiator], to: str = "server.example") -> bytes:
    ns = "jabber:client" if neg_cls is XMPPClientNegotiator else "jabber:server"
    db = " xmlns:db='jabber:server:dialback'" if ns == "jabber:server" else ""
    return (
        f"<?xml version='1.0'?><stream:stream to=\"{to}\" version='1.0' xmlns='{ns}'{db} "
        "xmlns:stream='http://etherx.jabber.org/streams'>"
    ).encode()


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_prosody_c2s_starttls_is_ready(feeding: str) -> None:
    """Stream header with to = the SNI name, features with <starttls><required/>, send
    <starttls/>, <proceed/>: ready, with the stream facts in the info."""
    out = drive(XMPPClientNegotiator, [PROSODY_C2S, PROSODY_PROCEED], feeding)
    assert out.sent == [header(XMPPClientNegotiator), STARTTLS]
    assert out.final == Ready(
        {
            "stream_to": "server.example",
            "stream_from": "localhost",
            "stream_id": "05162333-9eed-4d62-bc12-39b7448bc42e",
            "stream_version": "1.0",
            "features": "starttls",
            "starttls": "required",
        }
    )
    assert out.extra == []


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_prosody_s2s_starttls_is_ready(feeding: str) -> None:
    """jabber:server stream (with the dialback namespace) offering starttls and dialback."""
    out = drive(XMPPServerNegotiator, [PROSODY_S2S, PROSODY_PROCEED], feeding)
    assert out.sent == [header(XMPPServerNegotiator), STARTTLS]
    assert isinstance(out.final, Ready)
    assert out.final.info["features"] == "starttls dialback"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_other_prefix_and_whitespace_between_elements(feeding: str) -> None:
    """Namespaces are resolved, not matched by prefix: s:stream / s:features work, and
    whitespace inside features and between top-level elements is ignored."""
    out = drive(XMPPClientNegotiator, [OTHER_PREFIX, b"\n ", PROSODY_PROCEED], feeding)
    assert isinstance(out.final, Ready)
    assert out.final.info["starttls"] == "optional"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_host_unknown_is_refused_with_condition_and_text(feeding: str) -> None:
    """<stream:error><host-unknown/><text>…</text> is upgrade_refused naming both."""
    out = drive(XMPPClientNegotiator, [PROSODY_HOST_UNKNOWN], feeding)
    assert out.sent == [header(XMPPClientNegotiator)]
    assert failure_of(out) == (
        "upgrade_refused",
        "server ended the stream with error host-unknown: "
        "This server does not serve nosuch.example",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_features_without_starttls_is_not_offered(feeding: str) -> None:
    """Features without <starttls/>: upgrade_not_offered listing what is offered."""
    out = drive(XMPPClientNegotiator, [NO_TLS], feeding)
    assert out.sent == [header(XMPPClientNegotiator)]
    assert failure_of(out) == (
        "upgrade_not_offered",
        "server's stream features do not offer STARTTLS (features: mechanisms)",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_failure_is_refused(feeding: str) -> None:
    """<failure/> after <starttls/> (RFC 6120 §5.4.2.2): upgrade_refused."""
    out = drive(XMPPClientNegotiator, [PROSODY_C2S, FAILURE], feeding)
    assert failure_of(out) == (
        "upgrade_refused",
        "server answered <starttls/> with <failure/> (RFC 6120 §5.4.2.2)",
    )


def test_pre_rfc3920_stream_is_not_offered() -> None:
    """A stream header without version='1.0' (RFC 6120 §4.7.5): no features, no STARTTLS."""
    old = PROSODY_C2S.replace(b"'jabber:client' version='1.0'", b"'jabber:client'").split(
        b"<stream:features>"
    )[0]
    code, message = failure_of(drive(XMPPClientNegotiator, [old]))
    assert code == "upgrade_not_offered"
    assert "pre-RFC 3920" in message


def test_wrong_stream_namespace_is_protocol_error() -> None:
    """A jabber:server stream answering our jabber:client header is not what we asked."""
    code, message = failure_of(drive(XMPPClientNegotiator, [PROSODY_S2S]))
    assert code == "protocol_error"
    assert message.startswith("server's stream is jabber:server, expected jabber:client")


def test_plaintext_after_proceed_is_injection() -> None:
    """Bytes after <proceed/> in the same read never reach TLS: protocol_error."""
    out = drive(XMPPClientNegotiator, [PROSODY_C2S, PROSODY_PROCEED + b"<message/>"])
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert "STARTTLS response injection" in message
    assert isinstance(out.final, Failed)
    assert out.final.failure.excerpt == "<message/>"


def test_proceed_before_starttls_is_injection() -> None:
    """<proceed/> arriving with the features, before we sent <starttls/>, answers nothing:
    a planted go-ahead (injection), protocol_error, never ready."""
    out = drive(XMPPClientNegotiator, [PROSODY_C2S + PROSODY_PROCEED])
    assert out.sent == [header(XMPPClientNegotiator)]
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert "before we asked for STARTTLS" in message


@pytest.mark.parametrize(
    ("state", "chunks", "message"),
    [
        ("header", [], "server closed the connection while we waited for the server's stream header"),
        ("header-partial", [b"<?xml version='1.0'?><stream:str"], "server closed the connection while we waited for the server's stream header"),
        ("features", [PROSODY_C2S.split(b"<stream:features>")[0]], "server closed the connection while we waited for the stream features"),
        ("starttls", [PROSODY_C2S], "server closed the connection while we waited for the answer to <starttls/>"),
    ],
)  # fmt: skip
def test_eof_in_each_state_is_closed(state: str, chunks: list[bytes], message: str) -> None:
    """End of stream in every state: closed, naming what we waited for."""
    out = drive(XMPPClientNegotiator, chunks, eof=True)
    assert failure_of(out) == ("closed", message)


def test_stream_close_before_features_is_refused() -> None:
    """</stream:stream> right after the header: the server ended the stream."""
    head = PROSODY_C2S.split(b"<stream:features>")[0]
    assert failure_of(drive(XMPPClientNegotiator, [head + b"</stream:stream>"])) == (
        "upgrade_refused",
        "server closed its XML stream while we waited for the stream features",
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_billion_laughs_is_rejected_before_any_expansion(feeding: str) -> None:
    """A DTD with nested entities fails on its '<!' — nothing is expanded, at once."""
    start = time.perf_counter()
    out = drive(XMPPClientNegotiator, [BILLION_LAUGHS], feeding)
    assert time.perf_counter() - start < 0.5
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert "RFC 6120 §11.1 forbids them" in message


@pytest.mark.parametrize(
    "bad",
    [
        b"<!-- comment -->",
        b"<![CDATA[x]]>",
        b"<?php evil ?>",
        b"<stream:features><x>&lol;</x></stream:features>",
        b"<stream:features><x a='&ext;'/></stream:features>",
    ],
)
def test_comments_pis_and_undeclared_entities_are_rejected(bad: bytes) -> None:
    """Comments, CDATA, processing instructions and entity references other than the five
    predefined ones (RFC 6120 §11.1) are protocol errors."""
    head = PROSODY_C2S.split(b"<stream:features>")[0]
    code, _ = failure_of(drive(XMPPClientNegotiator, [head + bad]))
    assert code == "protocol_error"


def test_predefined_entities_and_char_refs_are_resolved() -> None:
    """&amp; &lt; &#65; &#x42; in a stream error text are decoded."""
    err = (
        b"<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>a &amp; b &lt; &#65;&#x42;</text>"
        b"</stream:error>"
    )
    head = PROSODY_C2S.split(b"<stream:features>")[0]
    assert failure_of(drive(XMPPClientNegotiator, [head + err])) == (
        "upgrade_refused",
        "server ended the stream with error see-other-host: a & b < AB",
    )


@pytest.mark.parametrize(
    "oversize",
    [
        b"<stream:stream a='" + b"x" * (DEFAULT_MAX_BUFFER + 10),  # endless tag
        PROSODY_C2S.split(b"<stream:features>")[0]
        + b"<stream:features>"
        + b"<x/>" * (DEFAULT_MAX_BUFFER // 4 + 10),  # endless element
        PROSODY_C2S.split(b"<stream:features>")[0] + b"<a>" * 40,  # deep nesting
    ],
)
def test_oversize_xml_is_rejected_fast(oversize: bytes) -> None:
    """An endless tag, an endless features element and deep nesting are capped and fail
    quickly (protocol_error), whole and byte by byte."""
    for feeding in FEEDINGS:
        start = time.perf_counter()
        code, _ = failure_of(drive(XMPPClientNegotiator, [oversize], feeding))
        assert code == "protocol_error"
        assert time.perf_counter() - start < 5


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_tls_record_suggests_xmpps(feeding: str) -> None:
    """A TLS alert where the stream header should be: the message points to xmpps://."""
    out = drive(XMPPClientNegotiator, [b"\x15\x03\x03\x00\x02\x02\x46"], feeding)
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert message.endswith("(use xmpps://)")


def test_garbage_is_protocol_error() -> None:
    """An HTTP answer on the XMPP port: protocol_error quoting it."""
    out = drive(XMPPClientNegotiator, [b"HTTP/1.1 400 Bad Request\r\n\r\n"])
    code, message = failure_of(out)
    assert code == "protocol_error"
    assert (
        message
        == "character data before the stream header while waiting for the server's stream header"
    )


@pytest.mark.parametrize(
    ("sni", "host", "expected"),
    [
        ("chat.example", "10.0.0.1", "chat.example"),
        (None, "example.org", "example.org"),
        (None, "127.0.0.1", "127.0.0.1"),
        (None, "::1", "[::1]"),
    ],
)
def test_stream_to_is_sni_else_host(sni: str | None, host: str, expected: str) -> None:
    """`to` is the SNI name, else the host; IPv6 literals in brackets (RFC 7622 §3.2)."""
    assert stream_to(NegotiatorContext(host, 5222, sni)) == expected


def test_stream_to_is_escaped() -> None:
    """A user-given sni with XML metacharacters cannot break our stream header."""
    neg = XMPPClientNegotiator(NegotiatorContext("h", 5222, "a'b\"<&"))
    (send,) = neg.initiate()
    assert b'to="a\'b&quot;&lt;&amp;"' in send.data  # type: ignore[union-attr]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Whatever the server sends, the negotiator ends in an event or waits; it never raises."""
    for cls in (XMPPClientNegotiator, XMPPServerNegotiator):
        out = drive_chunks(cls, [data])
        assert out.final is not None
        assert out.extra == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=len(PROSODY_C2S)), max_size=12),
    st.lists(st.integers(min_value=1, max_value=len(PROSODY_PROCEED)), max_size=4),
)
def test_chunking_invariance(cuts: list[int], cuts2: list[int]) -> None:
    """The recorded exchange cut anywhere gives the same outcome as fed whole."""
    chunks = split_at(PROSODY_C2S, cuts) + split_at(PROSODY_PROCEED, cuts2)
    out = drive_chunks(XMPPClientNegotiator, chunks, eof=False)
    whole = drive(XMPPClientNegotiator, [PROSODY_C2S, PROSODY_PROCEED])
    assert out.sent == whole.sent
    assert isinstance(whole.final, Ready)
    assert out.final == whole.final


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([[PROSODY_HOST_UNKNOWN], [NO_TLS], [PROSODY_C2S, FAILURE], [BILLION_LAUGHS]]),
    st.lists(st.integers(min_value=1, max_value=800), max_size=12),
)
def test_chunking_invariance_of_failures(flights: list[bytes], cuts: list[int]) -> None:
    """Refusals and rejections are the same however each server flight is cut (the excerpt
    of the evidence may be shorter: it is what had arrived). Flights stay in order: a
    <failure/> that arrives before we asked for STARTTLS is a different exchange (the
    injection case), so cuts never merge two flights."""
    chunks = [chunk for flight in flights for chunk in split_at(flight, cuts)]
    out = drive_chunks(XMPPClientNegotiator, chunks)
    assert failure_of(out) == failure_of(drive_chunks(XMPPClientNegotiator, flights))
