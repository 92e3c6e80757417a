"""FTP AUTH TLS and implicit FTPS against real vsftpd instances (tests/servers/vsftpd.py)."""

from __future__ import annotations

import socket
import time

from tests.servers.vsftpd import VsftpdServers
from tests.support.realchain import assert_exact_chain, probe_one
from tlswatch.errors import FailureClass


async def test_ftp_auth_tls_yields_exact_chain(vsftpd_servers: VsftpdServers) -> None:
    """ftp:// reads the 220 greeting, sends AUTH TLS, gets 234 and yields the exact chain."""
    ep = await probe_one(f"ftp://127.0.0.1:{vsftpd_servers.explicit_port}")
    assert_exact_chain(ep, vsftpd_servers.leaf)
    assert ep.observation.upgrade["banner"].startswith("(vsFTPd ")
    assert ep.observation.upgrade["auth_reply"].startswith("234 ")
    assert ep.timings.upgrade is not None


async def test_implicit_ftps_yields_exact_chain(vsftpd_servers: VsftpdServers) -> None:
    """ftps:// (implicit_ssl=YES) is TLS from the first byte and yields the exact chain."""
    ep = await probe_one(f"ftps://127.0.0.1:{vsftpd_servers.implicit_port}")
    assert_exact_chain(ep, vsftpd_servers.leaf)
    assert ep.timings.upgrade is None


async def test_vsftpd_without_tls_does_not_offer_auth_tls(vsftpd_servers: VsftpdServers) -> None:
    """vsftpd with ssl_enable=NO (behind a multi-line 220 banner) answers AUTH TLS with 530:
    upgrade_not_offered, quoting the reply."""
    ep = await probe_one(f"ftp://127.0.0.1:{vsftpd_servers.no_tls_port}?timeout=5")
    assert ep.error is not None
    assert ep.error.code is FailureClass.UPGRADE_NOT_OFFERED
    assert ep.error.message == (
        "server does not support AUTH TLS: 530 Please login with USER and PASS."
    )


def _hold_connection(port: int, deadline: float) -> socket.socket:
    """A connection that occupies the only client slot: it has had its 220 greeting. A
    slot may still be held for a moment by a client that just left (the fixture's readiness
    check), so retry until the deadline."""
    while True:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        greeting = s.recv(4096)
        if greeting.startswith(b"220"):
            return s
        s.close()
        assert time.monotonic() < deadline, f"no free slot on the busy vsftpd: {greeting!r}"


async def test_vsftpd_full_refuses_with_421(vsftpd_servers: VsftpdServers) -> None:
    """A vsftpd at max_clients greets with 421: upgrade_refused quoting the server."""
    held = _hold_connection(vsftpd_servers.busy_port, time.monotonic() + 10)
    try:
        ep = await probe_one(f"ftp://127.0.0.1:{vsftpd_servers.busy_port}?timeout=5")
    finally:
        held.close()
    assert ep.error is not None
    assert ep.error.code is FailureClass.UPGRADE_REFUSED
    assert ep.error.message == (
        "server refused the FTP session: 421 There are too many connected users, please try later."
    )
