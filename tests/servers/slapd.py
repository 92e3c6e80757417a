"""OpenLDAP slapd: StartTLS (ldap://) and LDAPS on loopback, plus a slapd with no TLS.

slapd runs in the foreground (``-d 0``) from a minimal slapd.conf in a temp dir: no
database at all, since StartTLS and LDAPS are answered by the frontend. The TLS instance
gets leaf + intermediate as its certificate file; the second instance has no TLS settings,
so it answers StartTLS with protocolError (RFC 4511 §4.12), a real refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary

SLAPD = "/usr/sbin/slapd"


@dataclass(frozen=True)
class SlapdServers:
    starttls_port: int  # ldap:// with StartTLS
    ldaps_port: int  # ldaps://
    no_tls_port: int  # ldap:// on a slapd without TLS configured
    leaf: IssuedLeaf


def _conf(work: Path, name: str, tls: IssuedLeaf | None, ca: Path) -> Path:
    lines = [f"pidfile {work / name}.pid", f"argsfile {work / name}.args"]
    if tls is not None:
        lines += [
            f"TLSCertificateFile {tls.chain_file}",
            f"TLSCertificateKeyFile {tls.key_file}",
            f"TLSCACertificateFile {ca}",
        ]
    conf = work / f"{name}.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


@pytest.fixture(scope="session")
def slapd_servers(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServers]:
    binary = require_binary(SLAPD)
    work = tmp_path_factory.mktemp("slapd")
    leaf = pki.issue("slapd")
    starttls, ldaps, plain = free_ports(3)
    tls_conf = _conf(work, "slapd-tls", leaf, pki.root_file)
    plain_conf = _conf(work, "slapd-plain", None, pki.root_file)
    servers = [
        ServerProcess(
            "slapd-tls",
            [
                binary,
                "-d",
                "0",
                "-f",
                str(tls_conf),
                "-h",
                f"ldap://127.0.0.1:{starttls}/ ldaps://127.0.0.1:{ldaps}/",
            ],
            work,
        ),
        ServerProcess(
            "slapd-plain",
            [binary, "-d", "0", "-f", str(plain_conf), "-h", f"ldap://127.0.0.1:{plain}/"],
            work,
        ),
    ]
    try:
        servers[0].wait_port(starttls)
        servers[0].wait_port(ldaps)
        servers[1].wait_port(plain)
        yield SlapdServers(starttls, ldaps, plain, leaf)
    finally:
        for server in servers:
            server.stop()
