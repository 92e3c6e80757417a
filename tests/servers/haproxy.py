"""haproxy serving implicit TLS on a loopback port (the generic `tls://` server)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import (
    ServerProcess,
    free_dual_stack_port,
    free_ports,
    require_binary,
)


@dataclass(frozen=True)
class HaproxyServer:
    port: int  # IPv4 127.0.0.1
    port6: int  # IPv6 ::1
    leaf: IssuedLeaf
    dual_port: int = 0  # one port number bound on both 127.0.0.1 and ::1 (dual stack)
    alpn_port: int = 0  # 127.0.0.1, offering ALPN h2,http/1.1 (https://)


@pytest.fixture(scope="session")
def haproxy_tls(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaproxyServer]:
    binary = require_binary("/usr/sbin/haproxy")
    work = tmp_path_factory.mktemp("haproxy")
    leaf = pki.issue("haproxy")
    port, port6, alpn_port = free_ports(3)
    dual_port = free_dual_stack_port()
    cfg = work / "haproxy.cfg"
    cfg.write_text(
        f"""
global
    maxconn 2000
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend tls4
    bind 127.0.0.1:{port} ssl crt {leaf.fullchain_key_file}
    bind [::1]:{port6} ssl crt {leaf.fullchain_key_file}
    bind 127.0.0.1:{dual_port} ssl crt {leaf.fullchain_key_file}
    bind [::1]:{dual_port} ssl crt {leaf.fullchain_key_file}
    bind 127.0.0.1:{alpn_port} ssl crt {leaf.fullchain_key_file} alpn h2,http/1.1
    tcp-request content reject
"""
    )
    server = ServerProcess("haproxy", [binary, "-db", "-f", str(cfg)], work)
    try:
        server.wait_port(port)
        server.wait_port(port6, "::1")
        server.wait_port(dual_port)
        server.wait_port(dual_port, "::1")
        server.wait_port(alpn_port)
        yield HaproxyServer(port, port6, leaf, dual_port, alpn_port)
    finally:
        server.stop()
