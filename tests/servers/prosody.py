"""Prosody 0.12 on loopback: XMPP client STARTTLS, client direct TLS, server-to-server STARTTLS.

One prosody process in the foreground (``daemonize = false``) with a self-contained config
in the session's temporary directory; ``run_as_root`` keeps it from switching to the
prosody user (which could not read pytest's private temporary directory). One VirtualHost,
``localhost``, with the test leaf; a stream addressed to any other name is answered with
the ``host-unknown`` stream error (RFC 6120 §4.9.3.6).

- ``c2s_port``: jabber:client, STARTTLS required (``c2s_require_encryption``)
- ``direct_port``: ``c2s_direct_tls_ports`` (XEP-0368, xmpps://)
- ``s2s_port``: jabber:server, STARTTLS required
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary

VIRTUAL_HOST = "localhost"


@dataclass(frozen=True)
class ProsodyServer:
    c2s_port: int
    direct_port: int
    s2s_port: int
    leaf: IssuedLeaf
    host: str = VIRTUAL_HOST


@pytest.fixture(scope="session")
def prosody(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProsodyServer]:
    binary = require_binary("/usr/bin/prosody")
    work = tmp_path_factory.mktemp("prosody")
    (work / "data").mkdir()
    leaf = pki.issue("prosody", VIRTUAL_HOST, "127.0.0.1")
    c2s, direct, s2s = free_ports(3)
    cfg = work / "prosody.cfg.lua"
    ssl = f'{{ certificate = "{leaf.chain_file}", key = "{leaf.key_file}" }}'
    cfg.write_text(
        f"""
run_as_root = true
daemonize = false
pidfile = "{work}/prosody.pid"
data_path = "{work}/data"
certificates = "{work}"
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_direct_tls_ports = {{ {direct} }}
s2s_ports = {{ {s2s} }}
s2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
log = {{ info = "{work}/prosody-info.log" }}
modules_enabled = {{ "tls", "saslauth", "disco", "ping", "dialback" }}
modules_disabled = {{ "posix" }}
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
authentication = "internal_hashed"
ssl = {ssl}
VirtualHost "{VIRTUAL_HOST}"
    ssl = {ssl}
"""
    )
    server = ServerProcess("prosody", [binary, "--config", str(cfg)], work)
    try:
        for port in (c2s, direct, s2s):
            server.wait_port(port)
        yield ProsodyServer(c2s, direct, s2s, leaf)
    finally:
        server.stop()
