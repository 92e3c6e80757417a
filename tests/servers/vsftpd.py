"""vsftpd on loopback: explicit FTPS (AUTH TLS), implicit FTPS, and two refusing variants.

Each instance is one vsftpd process in the foreground (``background=NO``) with its own
config file. vsftpd insists on some access mode, so anonymous access to an empty root is
enabled (nothing is ever logged in); the secure chroot dir is an empty directory of ours.
vsftpd's default seccomp sandbox stays on: the probe never gets past the TLS handshake,
where it causes no trouble.

- ``explicit``: ssl_enable=YES, answers AUTH TLS with 234
- ``implicit``: implicit_ssl=YES, TLS from the first byte (ftps://)
- ``no_tls``: ssl_enable=NO and a two-line banner_file (a real RFC 959 multi-line 220);
  answers AUTH TLS with 530 (not offered)
- ``busy``: max_clients=1; while one client is connected, the next gets 421 at greeting
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary

VSFTPD = "/usr/sbin/vsftpd"


@dataclass(frozen=True)
class VsftpdServers:
    explicit_port: int
    implicit_port: int
    no_tls_port: int
    busy_port: int
    leaf: IssuedLeaf
    banner_lines: tuple[str, ...]


def _conf(work: Path, name: str, port: int, leaf: IssuedLeaf, extra: dict[str, str]) -> Path:
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    settings = {
        "listen": "YES",
        "listen_ipv6": "NO",
        "listen_address": "127.0.0.1",
        "listen_port": str(port),
        "background": "NO",
        "anonymous_enable": "YES",
        "anon_root": str(empty),
        "local_enable": "NO",
        "write_enable": "NO",
        "secure_chroot_dir": str(empty),
        "ssl_enable": "YES",
        "allow_anon_ssl": "YES",
        "rsa_cert_file": str(leaf.chain_file),
        "rsa_private_key_file": str(leaf.key_file),
        "xferlog_enable": "NO",
        **extra,
    }
    conf = work / f"{name}.conf"
    conf.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    conf.chmod(0o600)  # vsftpd refuses a config file others could write
    return conf


@pytest.fixture(scope="session")
def vsftpd_servers(
    pki: TestPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VsftpdServers]:
    binary = require_binary(VSFTPD)
    work = tmp_path_factory.mktemp("vsftpd")
    leaf = pki.issue("vsftpd")
    explicit, implicit, no_tls, busy = free_ports(4)
    banner = ("Welcome to the tlswatch test FTP.", "Second line of the banner.")
    banner_file = work / "banner.txt"
    banner_file.write_text("\n".join(banner) + "\n")
    variants = {
        "explicit": (explicit, {}),
        "implicit": (implicit, {"implicit_ssl": "YES"}),
        "no-tls": (no_tls, {"ssl_enable": "NO", "banner_file": str(banner_file)}),
        "busy": (busy, {"max_clients": "1"}),
    }
    servers: list[tuple[ServerProcess, int]] = []
    try:
        for name, (port, extra) in variants.items():
            conf = _conf(work, name, port, leaf, extra)
            servers.append((ServerProcess(f"vsftpd-{name}", [binary, str(conf)], work), port))
        for server, port in servers:
            server.wait_port(port)
        yield VsftpdServers(explicit, implicit, no_tls, busy, leaf, banner)
    finally:
        for server, _ in servers:
            server.stop()
