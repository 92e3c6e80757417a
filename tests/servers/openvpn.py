"""OpenVPN in point-to-point TLS-server mode (``dev null``: no tun device needed), over TCP
and UDP, with and without tls-auth, on loopback high ports.

A p2p OpenVPN server serves one peer at a time and restarts itself (after a 1 s pause)
when that peer goes away -- which a probe always does. :meth:`OpenVPNServer.wait_ready`
waits (polling the server's log, with a deadline) until it listens again, so each test
starts against a ready server without connecting to it to find out.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary

_LISTENING = {"tcp": "Listening for incoming TCP connection", "udp": "UDPv4 link local (bound)"}
_RESTART = "Restart pause"
_SESSION = {"tcp": "TCP connection established", "udp": "Initial packet from"}


@dataclass
class OpenVPNServer:
    proto: str  # "tcp" | "udp"
    port: int
    leaf: IssuedLeaf
    key: Path | None  # tls-auth static key (server uses key-direction 0), or None
    process: ServerProcess

    @property
    def scheme(self) -> str:
        return "openvpn" if self.proto == "tcp" else "openvpn+udp"

    def url(self, **options: str) -> str:
        if self.key is not None and "key" not in options:
            options = {"key": str(self.key), "key_direction": "1", **options}
        query = "&".join(f"{k}={v}" for k, v in options.items() if v is not None)
        return f"{self.scheme}://127.0.0.1:{self.port}" + (f"?{query}" if query else "")

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Until the log shows the server listening after its last restart."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                pytest.fail(f"openvpn exited:\n{self.process.log.read_text()[-3000:]}")
            log = self.process.log.read_text(errors="replace")
            # Every session a probe opens ends in a restart (the probe never finishes the
            # OpenVPN handshake); ready = every session's restart has happened and the
            # server listens again after the last one.
            sessions = log.count(_SESSION[self.proto])
            restarts = log.count(_RESTART)
            listening = log.rfind(_LISTENING[self.proto])
            if restarts >= sessions and listening > log.rfind(_RESTART):
                return
            time.sleep(0.05)  # readiness polling interval, not synchronisation
        pytest.fail(f"openvpn not ready within {timeout}s:\n{self.process.log.read_text()[-3000:]}")


@dataclass(frozen=True)
class OpenVPNServers:
    tcp: OpenVPNServer
    udp: OpenVPNServer
    tcp_tls_auth: OpenVPNServer
    udp_tls_auth: OpenVPNServer
    key: Path
    leaf: IssuedLeaf


def _config(
    work: Path, name: str, proto: str, port: int, leaf: IssuedLeaf, pki: TestPKI, key: Path | None
) -> Path:
    lines = [
        "dev null",
        f"proto {'tcp-server' if proto == 'tcp' else 'udp'}",
        "local 127.0.0.1",
        f"lport {port}",
        "tls-server",
        "dh none",  # ECDHE only: no DH parameters to generate
        f"ca {pki.root_file}",
        f"cert {leaf.chain_file}",  # leaf + intermediate: OpenVPN sends the whole file
        f"key {leaf.key_file}",
        "verb 4",
    ]
    if key is not None:
        lines.append(f"tls-auth {key} 0")
    cfg = work / f"{name}.conf"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


@pytest.fixture(scope="session")
def openvpn_servers(
    pki: TestPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenVPNServers]:
    binary = require_binary("/usr/sbin/openvpn")
    work = tmp_path_factory.mktemp("openvpn")
    leaf = pki.issue("openvpn")
    key = work / "ta.key"
    subprocess.run([binary, "--genkey", "secret", str(key)], check=True, capture_output=True)
    ports = free_ports(4)
    started: list[OpenVPNServer] = []
    try:
        for name, proto, port, k in (
            ("tcp", "tcp", ports[0], None),
            ("udp", "udp", ports[1], None),
            ("tcp-ta", "tcp", ports[2], key),
            ("udp-ta", "udp", ports[3], key),
        ):
            cfg = _config(work, name, proto, port, leaf, pki, k)
            proc = ServerProcess(f"openvpn-{name}", [binary, "--config", str(cfg)], work)
            started.append(OpenVPNServer(proto, port, leaf, k, proc))
        for server in started:
            server.wait_ready()
        yield OpenVPNServers(*started, key=key, leaf=leaf)
    finally:
        for server in started:
            server.process.stop()
