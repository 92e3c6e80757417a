"""nats-server with TLS on a loopback high port, and one without TLS (never port 4222,
where the shared NATS runs).

nats-server 2.9 (Debian) has no ``handshake_first`` (TLS-first, added in 2.10): the
TLS-first variant is covered by a scripted server in tests/test_wrapped_broken.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary


@dataclass(frozen=True)
class NATSServers:
    tls_port: int
    plain_port: int
    leaf: IssuedLeaf


@pytest.fixture(scope="session")
def nats_servers(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NATSServers]:
    binary = require_binary("nats-server")
    work = tmp_path_factory.mktemp("nats")
    leaf = pki.issue("nats")
    tls_port, plain_port = free_ports(2)
    assert 4222 not in (tls_port, plain_port)
    tls = ServerProcess(
        "nats-tls",
        [
            binary,
            "-a",
            "127.0.0.1",
            "-p",
            str(tls_port),
            "--tls",
            "--tlscert",
            str(leaf.chain_file),
            "--tlskey",
            str(leaf.key_file),
        ],
        work,
    )
    plain = ServerProcess("nats-plain", [binary, "-a", "127.0.0.1", "-p", str(plain_port)], work)
    try:
        tls.wait_port(tls_port)
        plain.wait_port(plain_port)
        yield NATSServers(tls_port, plain_port, leaf)
    finally:
        tls.stop()
        plain.stop()
