"""The mail family against real servers: Postfix (tests/servers/postfix.py) for SMTP
STARTTLS and smtps, Dovecot (tests/servers/dovecot.py) for IMAP, IMAPS, POP3, POP3S,
ManageSieve and LMTP."""

from __future__ import annotations

import pytest

from tests.servers.dovecot import NO_TLS_ADDRESS, DovecotServer
from tests.servers.postfix import BANNER, PostfixServer
from tests.support.pki import IssuedLeaf
from tests.support.realchain import assert_exact_chain
from tlswatch.errors import FailureClass
from tlswatch.model import EndpointResult
from tlswatch.probe import check_target
from tlswatch.targets import parse_target


async def _probe(url: str, tls_mode: str, leaf: IssuedLeaf) -> EndpointResult:
    """Probe ``url`` and check what every successful mail probe must show: the installed
    chain exactly, the scheme's TLS mode, and an upgrade timing only for STARTTLS."""
    result = await check_target(parse_target(url))
    assert result.tls_mode == tls_mode
    (ep,) = result.endpoints
    assert_exact_chain(ep, leaf)
    assert ep.timings.connect is not None and ep.timings.handshake is not None
    if tls_mode == "starttls":
        assert ep.timings.upgrade is not None and ep.timings.upgrade > 0
    else:
        assert ep.timings.upgrade is None
        assert dict(ep.observation.upgrade) == {}
    return ep


# --- Postfix ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["smtp", "submission"])
async def test_postfix_starttls(postfix: PostfixServer, scheme: str) -> None:
    """smtp:// and submission:// read Postfix's 220, send EHLO, find STARTTLS among its
    extensions, get 220 to STARTTLS and yield exactly the installed chain."""
    ep = await _probe(f"{scheme}://127.0.0.1:{postfix.submission}", "starttls", postfix.leaf)
    info = ep.observation.upgrade
    assert info["banner"] == BANNER
    assert info["ehlo"] == "mail.tlswatch.test"
    assert "STARTTLS" in info["capabilities"].split()
    assert info["starttls_reply"] == "220 2.0.0 Ready to start TLS"


@pytest.mark.parametrize("scheme", ["smtps", "submissions"])
async def test_postfix_wrapper_mode(postfix: PostfixServer, scheme: str) -> None:
    """smtps:// and submissions:// against smtpd_tls_wrappermode=yes: TLS from the first
    byte, the exact chain, no plaintext dialogue."""
    await _probe(f"{scheme}://127.0.0.1:{postfix.smtps}", "implicit", postfix.leaf)


async def test_postfix_without_tls_does_not_offer_starttls(postfix: PostfixServer) -> None:
    """Postfix with smtpd_tls_security_level=none leaves STARTTLS out of its EHLO reply:
    upgrade_not_offered, listing what it does offer, and no TLS is attempted."""
    result = await check_target(parse_target(f"smtp://127.0.0.1:{postfix.no_tls}"))
    (ep,) = result.endpoints
    assert ep.error is not None and ep.error.code is FailureClass.UPGRADE_NOT_OFFERED
    assert ep.error.message.startswith("server does not offer STARTTLS: its EHLO reply lists ")
    assert "PIPELINING" in ep.error.message and "STARTTLS" not in ep.error.message.split()
    assert ep.chain == () and ep.timings.handshake is None


# --- Dovecot ------------------------------------------------------------------------------

STARTTLS_INFO = {
    # scheme: (upgrade info key, expected value)
    "imap": ("starttls_reply", "a2 OK Begin TLS negotiation now."),
    "pop3": ("stls_reply", "+OK Begin TLS negotiation now."),
    "sieve": ("starttls_reply", 'OK "Begin TLS negotiation now."'),
    "lmtp": ("starttls_reply", "220 2.0.0 Begin TLS negotiation now."),
}


@pytest.mark.parametrize("scheme", sorted(STARTTLS_INFO))
async def test_dovecot_starttls(dovecot: DovecotServer, scheme: str) -> None:
    """imap://, pop3://, sieve:// and lmtp:// run their plaintext dialogue with Dovecot,
    get its go-ahead and yield exactly the installed chain."""
    ep = await _probe(f"{scheme}://127.0.0.1:{dovecot.ports[scheme]}", "starttls", dovecot.leaf)
    key, value = STARTTLS_INFO[scheme]
    assert ep.observation.upgrade[key] == value
    caps = ep.observation.upgrade["capabilities"].split()
    assert ("STLS" if scheme == "pop3" else "STARTTLS") in caps


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
async def test_dovecot_implicit(dovecot: DovecotServer, scheme: str) -> None:
    """imaps:// and pop3s:// (inet_listener ssl=yes) yield exactly the installed chain."""
    await _probe(f"{scheme}://127.0.0.1:{dovecot.ports[scheme]}", "implicit", dovecot.leaf)


async def test_dovecot_banners(dovecot: DovecotServer) -> None:
    """The dialogue records Dovecot's greetings: IMAP/POP3 "Dovecot (Debian) ready.", the
    ManageSieve IMPLEMENTATION string, and the LMTP 220 with the configured hostname."""
    seen = {}
    for scheme in ("imap", "pop3", "sieve", "lmtp"):
        result = await check_target(parse_target(f"{scheme}://127.0.0.1:{dovecot.ports[scheme]}"))
        seen[scheme] = result.endpoints[0].observation.upgrade["banner"]
    assert seen == {
        "imap": "Dovecot (Debian) ready.",
        "pop3": "Dovecot (Debian) ready.",
        "sieve": "Dovecot (Debian) Pigeonhole",
        "lmtp": "mail.tlswatch.test Dovecot (Debian) ready.",
    }


NO_TLS_CASES = [
    # scheme, failure class, message start
    ("imap", FailureClass.UPGRADE_NOT_OFFERED, "server does not offer STARTTLS: its capabilities are "),
    ("pop3", FailureClass.UPGRADE_NOT_OFFERED, "server does not offer STLS: its capabilities are "),
    ("sieve", FailureClass.UPGRADE_REFUSED, "server refused STARTTLS: NO \"TLS support isn't enabled.\""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scheme", "code", "message"), NO_TLS_CASES, ids=[c[0] for c in NO_TLS_CASES]
)
async def test_dovecot_with_ssl_off(
    dovecot: DovecotServer, scheme: str, code: FailureClass, message: str
) -> None:
    """Dovecot with ssl=no on a listener: IMAP and POP3 stop advertising STARTTLS/STLS
    (upgrade_not_offered, listing the capabilities); ManageSieve still advertises STARTTLS
    but answers it with NO (upgrade_refused, quoting the server)."""
    url = f"{scheme}://{NO_TLS_ADDRESS}:{dovecot.no_tls_ports[scheme]}"
    (ep,) = (await check_target(parse_target(url))).endpoints
    assert ep.error is not None and ep.error.code is code, ep.error
    assert ep.error.message.startswith(message)
    assert ep.chain == () and ep.timings.handshake is None
