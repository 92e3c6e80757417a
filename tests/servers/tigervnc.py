"""Xtigervnc offering VeNCrypt X509None with the test's certificate, and one offering only
anonymous TLS (TLSNone: no certificate exists), on loopback high ports.

Each X server needs a display number: one whose lock file and socket are absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary


@dataclass(frozen=True)
class VNCServers:
    x509_port: int
    anon_port: int
    leaf: IssuedLeaf


def _free_displays(n: int) -> list[int]:
    found = []
    for d in range(60, 200):
        if not Path(f"/tmp/.X{d}-lock").exists() and not Path(f"/tmp/.X11-unix/X{d}").exists():
            found.append(d)
            if len(found) == n:
                return found
    pytest.fail("no free X display number between :60 and :199")


@pytest.fixture(scope="session")
def vnc_servers(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VNCServers]:
    binary = require_binary("/usr/bin/Xtigervnc")
    work = tmp_path_factory.mktemp("vnc")
    leaf = pki.issue("vnc")
    x509_port, anon_port = free_ports(2)
    d1, d2 = _free_displays(2)
    common = ["-localhost", "-nolisten", "tcp", "-geometry", "320x240", "-depth", "16"]
    servers = [
        ServerProcess(
            "vnc-x509",
            [
                binary,
                f":{d1}",
                "-rfbport",
                str(x509_port),
                *common,
                "-SecurityTypes",
                "X509None",
                "-X509Cert",
                str(leaf.chain_file),
                "-X509Key",
                str(leaf.key_file),
            ],
            work,
        ),
        ServerProcess(
            "vnc-anon",
            [binary, f":{d2}", "-rfbport", str(anon_port), *common, "-SecurityTypes", "TLSNone"],
            work,
        ),
    ]
    try:
        servers[0].wait_port(x509_port)
        servers[1].wait_port(anon_port)
        yield VNCServers(x509_port, anon_port, leaf)
    finally:
        for s in servers:
            s.stop()
