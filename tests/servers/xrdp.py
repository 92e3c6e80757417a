"""xrdp with the test's TLS certificate (security_layer=tls), and one that allows only
Standard RDP Security (security_layer=rdp: the refusal case), on loopback high ports.

Only the listener is needed for the X.224 negotiation and the TLS handshake: no sesman.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary


@dataclass(frozen=True)
class XRDPServers:
    tls_port: int
    rdp_only_port: int
    leaf: IssuedLeaf


def _ini(work: Path, name: str, port: int, layer: str, leaf: IssuedLeaf) -> Path:
    ini = work / f"{name}.ini"
    ini.write_text(
        f"""[Globals]
ini_version=1
fork=false
port=tcp://127.0.0.1:{port}
security_layer={layer}
crypt_level=high
certificate={leaf.chain_file}
key_file={leaf.key_file}
ssl_protocols=TLSv1.2, TLSv1.3
[Logging]
LogFile={work / (name + ".log")}
LogLevel=INFO
EnableSyslog=false
[Channels]
"""
    )
    return ini


@pytest.fixture(scope="session")
def xrdp_servers(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[XRDPServers]:
    binary = require_binary("/usr/sbin/xrdp")
    work = tmp_path_factory.mktemp("xrdp")
    leaf = pki.issue("xrdp")
    tls_port, rdp_port = free_ports(2)
    servers = [
        ServerProcess(
            "xrdp-tls",
            [binary, "--nodaemon", "--config", str(_ini(work, "tls", tls_port, "tls", leaf))],
            work,
        ),
        ServerProcess(
            "xrdp-rdp",
            [binary, "--nodaemon", "--config", str(_ini(work, "rdp", rdp_port, "rdp", leaf))],
            work,
        ),
    ]
    try:
        servers[0].wait_port(tls_port)
        servers[1].wait_port(rdp_port)
        yield XRDPServers(tls_port, rdp_port, leaf)
    finally:
        for s in servers:
            s.stop()
