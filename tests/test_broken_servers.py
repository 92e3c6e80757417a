"""Broken servers: every misbehaviour ends in its failure class (PRODUCT.md §2), with a
message, within its timeout, and never as an exception.

The servers are scripted (tests/support/fakeserver.py): no real server produces these
behaviours on purpose. Elapsed-time assertions are bounds (the probe ended before its
deadline plus a margin), not benchmarks.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import fakeserver as fs
from tests.support.dnsserver import DNSServer, dns_server
from tests.support.processes import free_port, require_binary
from tlswatch.errors import FailureClass
from tlswatch.model import EndpointResult, Status, TargetResult
from tlswatch.net.driver import MAX_UPGRADE_BYTES, probe_endpoint
from tlswatch.net.resolve import Address, Resolver
from tlswatch.probe import ProbeSettings, check_target, observe_endpoint
from tlswatch.protocols import ProtocolSpec
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Send
from tlswatch.targets import Target, parse_target
from tlswatch.tls.context import client_context

#: slack on top of a probe's own deadline: scheduling on a loaded 2-core machine
MARGIN = 1.5


@dataclass
class Broken:
    ports: dict[str, int]
    huge: fs.TLSServerFiles
    legacy: fs.TLSServerFiles
    dns: DNSServer


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broken]:
    openssl = require_binary("openssl")
    work = tmp_path_factory.mktemp("broken")
    huge = fs.huge_chain_server(work)
    legacy = fs.legacy_tls_server(work, openssl)
    injected_smtp = b"220 2.0.0 go ahead\r\n250 injected plaintext\r\n"
    with fs.fake_servers() as servers, dns_server({"dual.test": {"A": ["127.0.0.1"]}}) as dns:
        ports = {
            "close": servers.serve(fs.close_at_once),
            "garbage": servers.serve(fs.send_garbage),
            "flood": servers.serve(fs.flood),
            "silent": servers.serve(fs.stay_silent),
            "trickle_tls": servers.serve(fs.trickle(fs.TLS_RECORD_START)),
            "trickle_smtp": servers.serve(fs.trickle(fs.SMTP_SLOW_BANNER)),
            "alert": servers.serve(fs.answer_with_alert),
            "reset": servers.serve(fs.reset_mid_handshake),
            "malformed": servers.serve(fs.send_malformed_certificate),
            "backlog": servers.backlog_full(),
            "huge": servers.serve(fs.tls_then_wait, ssl_context=huge.context),
            "legacy": servers.serve(fs.tls_then_wait, ssl_context=legacy.context),
            "smtp_refuse": servers.serve(
                fs.smtp(
                    fs.StartTLSScript(reply=b"454 4.7.0 TLS not available due to local problem\r\n")
                )
            ),
            "smtp_no_starttls": servers.serve(fs.smtp(fs.StartTLSScript(offer=False))),
            "smtp_inject": servers.serve(fs.smtp(fs.StartTLSScript(reply=injected_smtp))),
            "imap_refuse": servers.serve(
                fs.imap(fs.StartTLSScript(reply=b"{tag} NO [UNAVAILABLE] TLS not available\r\n"))
            ),
            "imap_no_starttls": servers.serve(fs.imap(fs.StartTLSScript(offer=False))),
            "imap_inject": servers.serve(
                fs.imap(fs.StartTLSScript(reply=b"{tag} OK Begin TLS now\r\n* OK injected\r\n"))
            ),
            "postgres_refuse": servers.serve(fs.postgres(b"N")),
            "postgres_inject": servers.serve(fs.postgres(b"Sinjected plaintext")),
            "ftp_refuse": servers.serve(fs.ftp(b"534 TLS refused by policy\r\n")),
            "ftp_no_tls": servers.serve(fs.ftp(b"502 AUTH not implemented\r\n")),
            "ftp_inject": servers.serve(fs.ftp(b"234 go ahead\r\n220 injected\r\n")),
            "closed_port": free_port(),
        }
        yield Broken(ports, huge, legacy, dns)


async def probe(url: str, settings: ProbeSettings | None = None) -> tuple[TargetResult, float]:
    start = time.monotonic()
    result = await check_target(parse_target(url), settings)
    return result, time.monotonic() - start


def only_endpoint(result: TargetResult) -> EndpointResult:
    assert len(result.endpoints) == 1, result
    return result.endpoints[0]


# --- implicit TLS -----------------------------------------------------------------------

IMPLICIT_CASES = [
    # (server, failure class, text the message must contain)
    ("close", FailureClass.CLOSED, "closed the connection during the TLS handshake"),
    ("garbage", FailureClass.PROTOCOL_ERROR, "non-TLS data"),
    ("silent", FailureClass.HANDSHAKE_TIMEOUT, "did not complete within 1s (0 bytes"),
    ("trickle_tls", FailureClass.HANDSHAKE_TIMEOUT, "did not complete within 1s"),
    ("alert", FailureClass.TLS_ALERT, "alert handshake_failure"),
    ("reset", FailureClass.CLOSED, "closed the connection"),
    ("malformed", FailureClass.TLS_ERROR, "malformed certificate"),
    ("huge", FailureClass.TLS_ERROR, "too large"),
    ("backlog", FailureClass.CONNECT_TIMEOUT, "within 1s"),
    ("closed_port", FailureClass.CONNECT_REFUSED, "connection refused"),
]


@pytest.mark.parametrize(
    ("server", "code", "text"), IMPLICIT_CASES, ids=[c[0] for c in IMPLICIT_CASES]
)
async def test_implicit_tls_failure_classes(
    broken: Broken, server: str, code: FailureClass, text: str
) -> None:
    """Each broken implicit-TLS server ends in its failure class, with a message saying
    what happened, as a result that is not ok (never an exception), before timeout + margin."""
    result, elapsed = await probe(f"tls://127.0.0.1:{broken.ports[server]}?timeout=1")
    ep = only_endpoint(result)
    assert ep.error is not None, ep
    assert ep.error.code is code, ep.error
    assert text in ep.error.message
    # the verdict (unknown, or critical for some classes) is analysis' call; never ok
    assert ep.status is not Status.OK and result.status is not Status.OK
    assert ep.chain == () and ep.tls is None
    assert elapsed < 1 + MARGIN


async def test_garbage_is_quoted_safely(broken: Broken) -> None:
    """A protocol_error carries an excerpt of what arrived, with control bytes escaped (an
    ESC from the server never reaches a terminal)."""
    result, _ = await probe(f"tls://127.0.0.1:{broken.ports['garbage']}?timeout=1")
    error = only_endpoint(result).error
    assert error is not None and error.excerpt is not None
    assert error.excerpt.startswith("\\x00\\xffGARBAGE\\x1b[31m")
    assert "\x1b" not in error.describe()


async def test_trickled_tls_bytes_are_accepted_one_at_a_time(broken: Broken) -> None:
    """A server sending its first TLS record one byte per second is still recognised as
    TLS (the first-bytes sniff waits for two bytes) and then times out as a handshake,
    not as a protocol error: the phase deadline fires although bytes keep arriving."""
    result, elapsed = await probe(f"tls://127.0.0.1:{broken.ports['trickle_tls']}?timeout=2")
    error = only_endpoint(result).error
    assert error is not None and error.code is FailureClass.HANDSHAKE_TIMEOUT
    received = int(error.message.split("(")[1].split()[0])
    assert received >= 2  # at least the record type and version byte arrived
    assert elapsed < 2 + MARGIN


async def test_huge_chain_is_several_hundred_kib(broken: Broken) -> None:
    """The oversized-chain server really sends several hundred KiB of certificates (so the
    tls_error above is about size), and the probe stops at OpenSSL's cap, not by timeout."""
    assert broken.huge.chain_bytes > 300 * 1024
    assert len(broken.huge.chain_der) == 301
    result, elapsed = await probe(f"tls://127.0.0.1:{broken.ports['huge']}?timeout=5")
    error = only_endpoint(result).error
    assert error is not None and error.code is FailureClass.TLS_ERROR
    assert elapsed < 5  # ended by the size check, well before the deadline


async def test_legacy_tls_server_still_yields_its_chain(broken: Broken) -> None:
    """A TLS 1.0/1.1-only server with a SHA-1, RSA-1024 certificate still yields its chain
    and TLS facts: the probe collects; judging it is analysis' job."""
    result, _ = await probe(f"tls://127.0.0.1:{broken.ports['legacy']}?timeout=2")
    ep = only_endpoint(result)
    assert ep.error is None, ep.error
    assert ep.tls is not None and ep.tls.version in ("TLSv1", "TLSv1.1")
    assert ep.observation.chain == broken.legacy.chain_der
    (leaf,) = ep.chain
    assert leaf.key is not None and (leaf.key.type, leaf.key.bits) == ("RSA", 1024)
    assert "sha1" in leaf.signature_algorithm.lower()


async def test_bad_sni_option_is_a_tls_error(broken: Broken) -> None:
    """An SNI the ssl module refuses (leading dot) is a tls_error naming it, not a
    ValueError escaping the probe."""
    result, _ = await probe(f"tls://127.0.0.1:{broken.ports['alert']}?timeout=1&sni=.bad")
    error = only_endpoint(result).error
    assert error is not None and error.code is FailureClass.TLS_ERROR
    assert "'.bad'" in error.message


async def test_unreadable_client_certificate_is_a_tls_error(broken: Broken, tmp_path: Path) -> None:
    """A client_cert that cannot be loaded is a classified failure, not an OSError."""
    missing = tmp_path / "missing.pem"
    url = (
        f"tls://127.0.0.1:{broken.ports['alert']}?timeout=1"
        f"&client_cert={missing}&client_key={missing}"
    )
    result, _ = await probe(url)
    error = only_endpoint(result).error
    assert error is not None and error.code is FailureClass.TLS_ERROR
    assert "client_cert" in error.message


# --- DNS --------------------------------------------------------------------------------


async def test_invalid_tld_fails_without_any_query(broken: Broken) -> None:
    """A .invalid name (RFC 2606/6761) is a dns failure at once, and no question is sent,
    not even to the configured DNS server: such a lookup never leaves the machine (the
    system resolv.conf here points off-box, so this is what keeps the test local)."""
    asked = sum(broken.dns.questions.values())
    for settings in (None, ProbeSettings(Resolver(nameservers=[broken.dns.address]))):
        result, elapsed = await probe("tls://nowhere.invalid:443?timeout=1", settings)
        assert result.endpoints == ()
        assert result.error is not None and result.error.code is FailureClass.DNS
        assert "nowhere.invalid" in result.error.message
        assert result.status is Status.UNKNOWN
        assert elapsed < 1
    assert sum(broken.dns.questions.values()) == asked


async def test_nxdomain_from_dns_server_is_dns_failure(broken: Broken) -> None:
    """A name the DNS server does not know (NXDOMAIN) ends as a dns failure that says so."""
    settings = ProbeSettings(Resolver(nameservers=[broken.dns.address], timeout=2))
    result, elapsed = await probe("tls://missing.test:443?timeout=1", settings)
    assert result.error is not None and result.error.code is FailureClass.DNS
    assert "NXDOMAIN" in result.error.message
    assert broken.dns.questions[("missing.test", "A")] >= 1
    assert elapsed < 2 + MARGIN


async def test_unanswering_dns_server_is_dns_failure(broken: Broken) -> None:
    """A DNS server that never answers (a silent TCP/UDP port) is a dns failure within the
    resolver's timeout, not a hang."""
    silent = f"127.0.0.1:{free_port()}"  # nothing listens: UDP queries get no answer
    settings = ProbeSettings(Resolver(nameservers=[silent], timeout=1))
    result, elapsed = await probe("tls://dual.test:443?timeout=1", settings)
    assert result.error is not None and result.error.code is FailureClass.DNS
    assert elapsed < 1 + MARGIN


# --- STARTTLS dialogues -------------------------------------------------------------------

STARTTLS_CASES = [
    # (scheme, server, failure class)
    ("smtp", "smtp_refuse", FailureClass.UPGRADE_REFUSED),
    ("smtp", "smtp_no_starttls", FailureClass.UPGRADE_NOT_OFFERED),
    ("smtp", "smtp_inject", FailureClass.PROTOCOL_ERROR),
    ("smtp", "close", FailureClass.CLOSED),
    ("smtp", "garbage", FailureClass.PROTOCOL_ERROR),
    ("smtp", "silent", FailureClass.UPGRADE_TIMEOUT),
    ("smtp", "trickle_smtp", FailureClass.UPGRADE_TIMEOUT),
    ("imap", "imap_refuse", FailureClass.UPGRADE_REFUSED),
    ("imap", "imap_no_starttls", FailureClass.UPGRADE_NOT_OFFERED),
    ("imap", "imap_inject", FailureClass.PROTOCOL_ERROR),
    ("postgres", "postgres_refuse", FailureClass.UPGRADE_REFUSED),
    ("postgres", "postgres_inject", FailureClass.PROTOCOL_ERROR),
    ("postgres", "silent", FailureClass.UPGRADE_TIMEOUT),
    ("ftp", "ftp_refuse", FailureClass.UPGRADE_REFUSED),
    ("ftp", "ftp_no_tls", FailureClass.UPGRADE_NOT_OFFERED),
    ("ftp", "ftp_inject", FailureClass.PROTOCOL_ERROR),
]


def _negotiator_present(scheme: str) -> bool:
    ref = parse_target(f"{scheme}://127.0.0.1:1").spec.negotiator or ""
    return importlib.util.find_spec(ref.partition(":")[0]) is not None


@pytest.mark.parametrize(
    ("scheme", "server", "code"), STARTTLS_CASES, ids=[f"{c[0]}-{c[1]}" for c in STARTTLS_CASES]
)
async def test_starttls_failure_classes(
    broken: Broken, scheme: str, server: str, code: FailureClass
) -> None:
    """Refusals, missing capabilities, plaintext after the go-ahead (STARTTLS injection),
    and stalls in the plaintext dialogue each end in their failure class within the
    timeout; injected plaintext never reaches TLS (no handshake timing is recorded)."""
    assert _negotiator_present(scheme), f"the {scheme} negotiator module is missing"
    result, elapsed = await probe(f"{scheme}://127.0.0.1:{broken.ports[server]}?timeout=1")
    ep = only_endpoint(result)
    assert ep.error is not None, ep
    assert ep.error.code is code, ep.error
    assert ep.error.message
    if code is FailureClass.PROTOCOL_ERROR:
        assert ep.error.excerpt, "a protocol_error quotes what arrived"
    assert ep.timings.handshake is None
    assert ep.status is not Status.OK
    assert elapsed < 1 + MARGIN


# --- negotiator bugs --------------------------------------------------------------------


class _Exploding(Negotiator):
    """A negotiator with a bug: it raises on the server's first bytes (or at once)."""

    def __init__(self, ctx: NegotiatorContext, at_initiate: bool = False) -> None:
        super().__init__(ctx)
        self.at_initiate = at_initiate

    def initiate(self) -> list[Event]:
        if self.at_initiate:
            raise RuntimeError("initiate blew up")
        return [Send(b"HELLO\r\n")]

    def receive_data(self, data: bytes) -> list[Event]:
        raise IndexError("parser fell off the end")


@pytest.mark.parametrize("at_initiate", [False, True], ids=["receive_data", "initiate"])
async def test_negotiator_exception_becomes_protocol_error(
    broken: Broken, at_initiate: bool
) -> None:
    """A negotiator that raises is a negotiator bug: the probe reports a protocol_error
    naming the exception (and quoting the server's bytes), never a traceback."""
    port = broken.ports["garbage"]
    observation = await probe_endpoint(
        Address(2, "127.0.0.1"),
        port,
        timeout=1,
        server_hostname=None,
        context=client_context(),
        negotiator=_Exploding(NegotiatorContext("127.0.0.1", port, None), at_initiate),
        protocol_name="exploding",
    )
    assert observation.error is not None
    assert observation.error.code is FailureClass.PROTOCOL_ERROR
    if at_initiate:
        assert "RuntimeError: initiate blew up" in observation.error.message
    else:
        assert "IndexError: parser fell off the end" in observation.error.message
        assert observation.error.excerpt and "GARBAGE" in observation.error.excerpt
    assert observation.timings.connect is not None


async def test_dns_phase_obeys_the_target_timeout(broken: Broken) -> None:
    """The target's timeout= bounds name resolution too: a DNS server that never answers
    (and a resolver allowing 30 s) still ends in a dns failure after timeout=1."""
    silent = f"127.0.0.1:{free_port()}"
    settings = ProbeSettings(Resolver(nameservers=[silent], timeout=30))
    result, elapsed = await probe("tls://dual.test:443?timeout=1", settings)
    assert result.error is not None and result.error.code is FailureClass.DNS
    assert "within 1s" in result.error.message
    assert elapsed < 1 + MARGIN


class _Undecided(Negotiator):
    """A negotiator with a bug: it never decides and never caps its input."""

    def receive_data(self, data: bytes) -> list[Event]:
        return []


async def test_upgrade_plaintext_is_capped_by_the_driver(broken: Broken) -> None:
    """Whatever a negotiator does, the driver stops reading plaintext after
    MAX_UPGRADE_BYTES: a server flooding the dialogue ends in protocol_error with an
    excerpt, long before the timeout."""
    port = broken.ports["flood"]
    start = time.monotonic()
    observation = await probe_endpoint(
        Address(2, "127.0.0.1"),
        port,
        timeout=20,
        server_hostname=None,
        context=client_context(),
        negotiator=_Undecided(NegotiatorContext("127.0.0.1", port, None)),
        protocol_name="undecided",
    )
    assert observation.error is not None
    assert observation.error.code is FailureClass.PROTOCOL_ERROR
    assert f"more than {MAX_UPGRADE_BYTES} bytes" in observation.error.message
    assert observation.error.excerpt and "capability line" in observation.error.excerpt
    assert time.monotonic() - start < 10


async def test_missing_negotiator_module_is_a_classified_failure(broken: Broken) -> None:
    """A registry line whose negotiator cannot be imported (a packaging bug) fails the
    probe as protocol_error naming the cause, without connecting and without a traceback."""
    spec = ProtocolSpec("ghost", 1, "starttls", "tlswatch.protocols.no_such_module:Ghost")
    target = Target("ghost://127.0.0.1:1", "ghost", "127.0.0.1", broken.ports["garbage"], spec)
    observation = await observe_endpoint(target, Address(2, "127.0.0.1"))
    assert observation.error is not None
    assert observation.error.code is FailureClass.PROTOCOL_ERROR
    assert "ModuleNotFoundError" in observation.error.message
    assert observation.timings.connect is None
