"""auto:// detection rules that go beyond the first greeting line, sans-IO: an unlabelled
``220`` greeting whose server refuses EHLO is tried with LHLO on the same connection (LMTP,
RFC 2033 §4.1), and the order of the client-speaks-first candidates follows how the server
took our ClientHello. Recorded exchanges are fed whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.transcript import FEEDINGS, drive, failure_of
from tests.test_proto_smtp import (
    DOVECOT_LHLO,
    DOVECOT_LMTP_220,
    DOVECOT_LMTP_GREETING,
    POSTFIX_220,
    POSTFIX_EHLO,
    POSTFIX_GREETING,
)
from tlswatch.protocols.auto import (
    CLIENT_FIRST,
    SILENT_ON_CLIENT_HELLO,
    STOPS_LISTENING,
    AutoNegotiator,
    client_first_order,
)
from tlswatch.protocols.base import Ready
from tlswatch.protocols.smtp import default_ehlo_name

NAME = default_ehlo_name().encode()
EHLO = b"EHLO " + NAME + b"\r\n"
LHLO = b"LHLO " + NAME + b"\r\n"
STARTTLS = b"STARTTLS\r\n"

# recorded from the test servers (tests/test_proto_smtp.py): Dovecot 2.3 LMTP greets
# without saying LMTP, refuses EHLO with the 500 RFC 2033 §4.1 recommends, and lists
# STARTTLS in its LHLO reply; Postfix 3.7 accepts EHLO
DOVECOT_LMTP = [
    DOVECOT_LMTP_GREETING,
    b"500 5.5.1 Unknown command\r\n",
    DOVECOT_LHLO,
    DOVECOT_LMTP_220,
]
POSTFIX = [POSTFIX_GREETING, POSTFIX_EHLO, POSTFIX_220]
# an SMTP server without ESMTP: it refuses EHLO and, being no LMTP server, LHLO too
NO_ESMTP = [
    b"220 old.example Sendmail 8.6 ready\r\n",
    b'500 5.5.1 Command unrecognized: "EHLO"\r\n',
    b'500 5.5.1 Command unrecognized: "LHLO"\r\n',
]


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_unlabelled_220_refusing_ehlo_is_lmtp(feeding: str) -> None:
    """EHLO refused after an unlabelled 220: LHLO follows on the same connection, and the
    LMTP dialogue reaching STARTTLS reports detected=lmtp, by greeting then LHLO."""
    out = drive(AutoNegotiator, DOVECOT_LMTP, feeding)
    assert out.sent == [EHLO, LHLO, STARTTLS]
    assert isinstance(out.final, Ready)
    assert out.final.info["detected"] == "lmtp"
    assert out.final.info["detected_by"] == "greeting, then LHLO"
    assert out.extra == []


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_smtp_accepting_ehlo_stays_smtp(feeding: str) -> None:
    """An SMTP server that accepts EHLO is never sent LHLO: detected=smtp by greeting."""
    out = drive(AutoNegotiator, POSTFIX, feeding)
    assert out.sent == [EHLO, STARTTLS]
    assert isinstance(out.final, Ready)
    assert (out.final.info["detected"], out.final.info["detected_by"]) == ("smtp", "greeting")


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_ehlo_and_lhlo_refused_keeps_the_smtp_verdict(feeding: str) -> None:
    """A server refusing both EHLO and LHLO is an SMTP server without ESMTP: the failure is
    SMTP's own (upgrade_not_offered naming EHLO), not an LMTP one."""
    out = drive(AutoNegotiator, NO_ESMTP, feeding)
    assert out.sent == [EHLO, LHLO]
    code, message = failure_of(out)
    assert code == "upgrade_not_offered"
    assert message.startswith("server rejected EHLO (500 5.5.1 Command unrecognized")


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_close_after_refused_ehlo_keeps_the_smtp_verdict(feeding: str) -> None:
    """The connection dropping before LHLO is answered is no evidence of LMTP either."""
    out = drive(AutoNegotiator, DOVECOT_LMTP[:2], feeding, eof=True)
    assert out.sent == [EHLO, LHLO]
    code, message = failure_of(out)
    assert code == "upgrade_not_offered"
    assert message.startswith("server rejected EHLO (500 5.5.1 Unknown command)")


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_labelled_lmtp_greeting_goes_straight_to_lhlo(feeding: str) -> None:
    """A greeting that says LMTP needs no EHLO probe."""
    out = drive(
        AutoNegotiator, [b"220 lmtp.example LMTP server ready\r\n", *DOVECOT_LMTP[2:]], feeding
    )
    assert out.sent == [LHLO, STARTTLS]
    assert isinstance(out.final, Ready)
    assert (out.final.info["detected"], out.final.info["detected_by"]) == ("lmtp", "greeting")


def test_candidate_order() -> None:
    """By default the table order; an unanswered ClientHello puts IRC first (it waits for a
    line); a refusal after our first connection puts OpenVPN first (p2p servers restart
    after each peer); candidates already tried are left out."""
    assert client_first_order(False) == CLIENT_FIRST
    assert client_first_order(True)[0] == "irc"
    assert client_first_order(False, stops_listening=True)[0] == "openvpn"
    assert client_first_order(True, True)[:2] == ("openvpn", "irc")
    assert "postgres" not in client_first_order(False, True, ("postgres",))


@given(
    unanswered=st.booleans(),
    stops=st.booleans(),
    tried=st.sets(st.sampled_from(CLIENT_FIRST)),
)
def test_candidate_order_is_a_permutation(unanswered: bool, stops: bool, tried: set[str]) -> None:
    """Whatever the signals, every untried candidate comes exactly once, the favoured ones
    first, the rest in table order."""
    order = client_first_order(unanswered, stops, tuple(tried))
    assert sorted(order) == sorted(set(CLIENT_FIRST) - tried)
    favoured = (STOPS_LISTENING if stops else ()) + (SILENT_ON_CLIENT_HELLO if unanswered else ())
    head = [s for s in favoured if s not in tried]
    assert list(order[: len(head)]) == head
    rest = list(order[len(head) :])
    assert rest == [s for s in CLIENT_FIRST if s in rest]
