"""Two real ``openssl ocsp`` responders on loopback for the revocation tests: one signing
with a delegated responder certificate (id-kp-OCSPSigning), one signing with the CA key
itself. Their index knows a good and a revoked leaf; a third leaf is absent (``unknown``).

``openssl ocsp -port`` takes only a port number (OpenSSL 3.0), so the responders listen on
the wildcard address; the tests only ever connect to 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.processes import ServerProcess, free_ports, require_binary
from tests.support.verdict_pki import DAY, Issued, make
from tlswatch.x509.ocsp import build_request


@dataclass(frozen=True)
class OcspSetup:
    ca_file: Path
    ca: Issued
    leaves: dict[str, Issued]  # good, revoked, unknown (delegated responder), good_by_ca, down


def _index_line(status: str, cert: Issued, revoked_at: dt.datetime | None = None) -> str:
    serial = format(cert.cert.serial_number, "X")
    serial = serial if len(serial) % 2 == 0 else "0" + serial
    exp = cert.cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    rev = f"{revoked_at:%y%m%d%H%M%S}Z,keyCompromise" if revoked_at else ""
    return f"{status}\t{exp}\t{rev}\t{serial}\tunknown\t/CN={cert.cert.subject.rfc4514_string()}\n"


def _wait_answering(
    server: ServerProcess, port: int, request: bytes, timeout: float = 30.0
) -> None:
    """Poll until the responder answers a real request. A bare connect-and-close (what
    wait_port does) wedges OpenSSL 3.0's single-process responder: it blocks reading the
    closed connection and never accepts another."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"{server.name} exited with {server.proc.returncode}", pytrace=False)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/",
            data=request,
            headers={"Content-Type": "application/ocsp-request"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)  # polling interval of a readiness loop
    pytest.fail(f"{server.name} did not answer on {port} within {timeout}s", pytrace=False)


@pytest.fixture(scope="session")
def ocsp_responders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OcspSetup]:
    binary = require_binary("openssl")
    work = tmp_path_factory.mktemp("ocsp")
    now = dt.datetime.now(dt.UTC)
    ca = make("OCSP Test CA", ca=True, now=now)
    responder = make(
        "OCSP Delegated Responder", ca, now=now, san=False, eku=(ExtendedKeyUsageOID.OCSP_SIGNING,)
    )
    delegated_port, ca_port, closed_port = free_ports(3)
    url_a = f"http://127.0.0.1:{delegated_port}"
    url_b = f"http://127.0.0.1:{ca_port}"
    url_down = f"http://127.0.0.1:{closed_port}"
    leaves = {
        "good": make(
            "good.example.test", ca, now=now, ocsp=(url_a,), dns=("good.example.test",), ips=()
        ),
        "revoked": make(
            "revoked.example.test",
            ca,
            now=now,
            ocsp=(url_a,),
            dns=("revoked.example.test",),
            ips=(),
        ),
        "unknown": make(
            "unknown.example.test",
            ca,
            now=now,
            ocsp=(url_a,),
            dns=("unknown.example.test",),
            ips=(),
        ),
        "good_by_ca": make(
            "byca.example.test", ca, now=now, ocsp=(url_b,), dns=("byca.example.test",), ips=()
        ),
        "down": make(
            "down.example.test", ca, now=now, ocsp=(url_down,), dns=("down.example.test",), ips=()
        ),
    }
    index = work / "index.txt"
    index.write_text(
        _index_line("V", leaves["good"])
        + _index_line("R", leaves["revoked"], now - 2 * DAY)
        + _index_line("V", leaves["good_by_ca"])
    )
    files = {}
    for name, item in {"ca": ca, "resp": responder}.items():
        (work / f"{name}.pem").write_bytes(item.pem)
        (work / f"{name}.key").write_bytes(item.key_pem)
        files[name] = (str(work / f"{name}.pem"), str(work / f"{name}.key"))
    servers = []
    for label, port, signer in (("delegated", delegated_port, "resp"), ("by-ca", ca_port, "ca")):
        argv = [
            binary,
            "ocsp",
            "-index",
            str(index),
            "-port",
            str(port),
            "-CA",
            files["ca"][0],
            "-rsigner",
            files[signer][0],
            "-rkey",
            files[signer][1],
            "-nmin",
            "60",
            "-ignore_err",
        ]
        servers.append(ServerProcess(f"ocsp-{label}", argv, work))
    try:
        probe = build_request(leaves["good"].cert, ca.cert)
        for server, port in zip(servers, (delegated_port, ca_port), strict=True):
            _wait_answering(server, port, probe)
        yield OcspSetup(work / "ca.pem", ca, leaves)
    finally:
        for server in servers:
            server.stop()
