"""AIA caIssuers fetching against a loopback HTTP server (stdlib http.server): the missing
intermediate served as DER and as PKCS#7 completes the chain (CHAIN_INCOMPLETE); a dead
URL, a 10 MB response, a stalled server and an ldap:// URL are findings, not crashes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.support.httpfiles import Route, serve
from tests.support.processes import free_port
from tests.support.verdict_pki import NOW, make
from tlswatch.analysis.evaluate import evaluate_target
from tlswatch.model import Observation, Status, TLSInfo
from tlswatch.net.evidence import EvidenceOptions, gather_evidence
from tlswatch.net.http import FetchError, fetch
from tlswatch.targets import parse_target

ROOT = make("AIA Root", ca=True)
INTER = make("AIA Intermediate", ROOT, ca=True)
TEN_MB = 10 * 1024 * 1024
STALL = threading.Event()


def _ten_mb() -> Iterator[bytes]:
    for _ in range(TEN_MB // 65536):
        yield b"\0" * 65536


def _stall() -> Iterator[bytes]:
    yield b"0"
    STALL.wait(30)  # released at module teardown


@pytest.fixture(scope="module")
def aia_server() -> Iterator:
    p7 = pkcs7.serialize_certificates([INTER.cert], serialization.Encoding.DER)
    routes = {
        "/inter.der": Route(INTER.der, "application/pkix-cert"),
        "/inter.p7c": Route(p7, "application/pkcs7-mime"),
        "/big": Route(b"\0" * TEN_MB),
        "/big-stream": Route(_ten_mb, send_length=False),
        "/stall": Route(_stall, send_length=False),
        "/html": Route(b"<html>not a certificate</html>", "text/html"),
    }
    with serve(routes) as srv:
        yield srv
        STALL.set()


@pytest.fixture(scope="module")
def root_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("aia") / "root.pem"
    p.write_bytes(ROOT.pem)
    return p


async def _check(
    url: str, root_file: Path, opts: EvidenceOptions | None = None, endpoints: int = 1
):
    leaf = make("www.example.test", INTER, ca_issuers=(url,), slot=abs(hash(url)) % 997)
    target = parse_target(f"tls://www.example.test:443?trust=none&ca={root_file}")
    obs = [
        Observation(f"192.0.2.{i + 1}", 443, (leaf.der,), TLSInfo("TLSv1.3", "X"))
        for i in range(endpoints)
    ]
    observed = await gather_evidence(target, obs, opts or EvidenceOptions(timeout=2.0))
    return observed, evaluate_target(target, observed, NOW)


def _codes(result) -> dict[str, str]:
    return {f.code: f.severity.value for e in result.endpoints for f in e.findings}


@pytest.mark.parametrize("path", ["/inter.der", "/inter.p7c"])
async def test_missing_intermediate_fetched(aia_server, root_file: Path, path: str) -> None:
    """The intermediate served as DER or PKCS#7 completes the chain: verdict
    unable_to_get_issuer with CHAIN_INCOMPLETE (critical), not CHAIN_UNTRUSTED."""
    observed, result = await _check(aia_server.url(path), root_file)
    assert observed[0].fetched[0].data is not None
    codes = _codes(result)
    assert codes.get("CHAIN_INCOMPLETE") == "critical" and "CHAIN_UNTRUSTED" not in codes
    assert result.endpoints[0].verification.code == "unable_to_get_issuer"


async def test_one_download_per_run(aia_server, root_file: Path) -> None:
    """Three endpoints with the same AIA URL cost one download (per-run cache)."""
    opts = EvidenceOptions(timeout=2.0)
    url = aia_server.url("/inter.der") + "?cache"
    before = len(aia_server.hits)
    await _check(url, root_file, opts, endpoints=3)
    await _check(url, root_file, opts)
    assert len(aia_server.hits) - before == 1


async def test_no_fetch(aia_server, root_file: Path) -> None:
    """fetch_issuers=False (--no-fetch): nothing downloaded, chain plainly untrusted."""
    before = len(aia_server.hits)
    observed, result = await _check(
        aia_server.url("/inter.der") + "?nofetch", root_file, EvidenceOptions(fetch_issuers=False)
    )
    assert observed[0].fetched == () and len(aia_server.hits) == before
    assert _codes(result).get("CHAIN_UNTRUSTED") == "critical"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/big", "exceeds the 1048576-byte cap"),
        ("/big-stream", "exceeds the 1048576-byte cap"),
        ("/html", "neither a DER/PEM certificate nor a PKCS#7"),
        ("/missing", "HTTP 404"),
    ],
)
async def test_bad_downloads_are_findings(
    aia_server, root_file: Path, path: str, reason: str
) -> None:
    """A 10 MB body (announced or streamed), HTML and a 404 each give AIA_FETCH_FAILED
    (warning) naming the reason; the chain stays CHAIN_UNTRUSTED."""
    started = time.monotonic()
    _, result = await _check(aia_server.url(path), root_file)
    assert time.monotonic() - started < 10
    findings = [f for e in result.endpoints for f in e.findings if f.code == "AIA_FETCH_FAILED"]
    assert findings and reason in findings[0].message, findings
    assert result.status is Status.CRITICAL and "CHAIN_UNTRUSTED" in _codes(result)


async def test_dead_url(root_file: Path) -> None:
    """A closed loopback port: AIA_FETCH_FAILED 'cannot connect', no exception."""
    _, result = await _check(f"http://127.0.0.1:{free_port()}/inter.der", root_file)
    (f,) = [f for e in result.endpoints for f in e.findings if f.code == "AIA_FETCH_FAILED"]
    assert "cannot connect" in f.message


async def test_stalled_server_times_out(aia_server) -> None:
    """A server that sends one byte and stalls is cut off at the deadline."""
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        await fetch(aia_server.url("/stall"), timeout=1.0)
    assert time.monotonic() - started < 5


async def test_unsupported_scheme(root_file: Path) -> None:
    """ldap:// caIssuers URLs are refused with a message, not fetched."""
    _, result = await _check("ldap://127.0.0.1/cn=ca?cACertificate", root_file)
    (f,) = [f for e in result.endpoints for f in e.findings if f.code == "AIA_FETCH_FAILED"]
    assert "unsupported URL scheme 'ldap'" in f.message
