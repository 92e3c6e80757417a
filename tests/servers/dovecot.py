"""Dovecot (Debian's dovecot-core, -imapd, -pop3d, -lmtpd, -managesieved) on loopback high
ports: one private instance per test session, ``dovecot -F`` in the foreground with a
self-contained config (base_dir, state_dir, log file, certificate and a one-user
passwd-file all in a temporary directory; /etc/dovecot is never read).

Listeners on 127.0.0.1: imap (STARTTLS), imaps, pop3 (STLS), pop3s, sieve (ManageSieve
STARTTLS) and lmtp over TCP (STARTTLS). The refusal cases listen on 127.0.0.2 (loopback
too), where a ``local 127.0.0.2 { ssl = no }`` filter turns TLS off for the login
services: IMAP and POP3 then stop advertising STARTTLS/STLS, and ManageSieve, which keeps
advertising STARTTLS, answers it with ``NO "TLS support isn't enabled."``.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary

DOVECOT = "/usr/sbin/dovecot"
HOSTNAME = "mail.tlswatch.test"
NO_TLS_ADDRESS = "127.0.0.2"
SCHEMES = ("imap", "imaps", "pop3", "pop3s", "sieve", "lmtp")
NO_TLS_SCHEMES = ("imap", "pop3", "sieve")


@dataclass(frozen=True)
class DovecotServer:
    ports: dict[str, int]  # scheme -> port on 127.0.0.1
    no_tls_ports: dict[str, int]  # scheme -> port on NO_TLS_ADDRESS, TLS disabled
    leaf: IssuedLeaf
    log: Path


def _free_ports_on(address: str, n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((address, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _listener(name: str, address: str, port: int, ssl: bool = False) -> str:
    return (
        f"  inet_listener {name} {{\n    address = {address}\n    port = {port}\n"
        + ("    ssl = yes\n" if ssl else "")
        + "  }\n"
    )


def _config(root: Path, ports: dict[str, int], no_tls: dict[str, int]) -> str:
    return f"""\
base_dir = {root / "run"}
state_dir = {root / "state"}
instance_name = tlswatch-test
log_path = {root / "dovecot.log"}
info_log_path = {root / "dovecot.log"}
hostname = {HOSTNAME}
protocols = imap pop3 lmtp sieve
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root / "server.chain.pem"}
ssl_key = <{root / "server.key"}
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = {root / "passwd"}
}}
userdb {{
  driver = passwd-file
  args = {root / "passwd"}
}}
mail_location = maildir:~/Maildir
service imap-login {{
{_listener("imap", "127.0.0.1", ports["imap"])}\
{_listener("imaps", "127.0.0.1", ports["imaps"], ssl=True)}\
{_listener("imap_notls", NO_TLS_ADDRESS, no_tls["imap"])}\
}}
service pop3-login {{
{_listener("pop3", "127.0.0.1", ports["pop3"])}\
{_listener("pop3s", "127.0.0.1", ports["pop3s"], ssl=True)}\
{_listener("pop3_notls", NO_TLS_ADDRESS, no_tls["pop3"])}\
}}
service managesieve-login {{
{_listener("sieve", "127.0.0.1", ports["sieve"])}\
{_listener("sieve_notls", NO_TLS_ADDRESS, no_tls["sieve"])}\
}}
service lmtp {{
{_listener("lmtp", "127.0.0.1", ports["lmtp"])}\
}}
local {NO_TLS_ADDRESS} {{
  ssl = no
}}
"""


@pytest.fixture(scope="session")
def dovecot(pki: TestPKI) -> Iterator[DovecotServer]:
    binary = require_binary(DOVECOT)
    require_binary("/usr/lib/dovecot/managesieve-login")  # dovecot-managesieved
    require_binary("/usr/lib/dovecot/lmtp")  # dovecot-lmtpd
    # World-searchable: Dovecot's auth and login processes run as dovecot/dovenull and
    # reach their sockets under base_dir by path (pytest's temp root is private to root).
    root = Path(tempfile.mkdtemp(prefix="tlswatch-dovecot-"))
    root.chmod(0o755)
    now = datetime.now(UTC).replace(microsecond=0)
    leaf = pki.issue(
        "dovecot", not_before=now - timedelta(days=5), not_after=now + timedelta(days=47)
    )
    shutil.copyfile(leaf.chain_file, root / "server.chain.pem")
    shutil.copyfile(leaf.key_file, root / "server.key")
    (root / "server.key").chmod(0o600)
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir(mode=0o755)
    # passwd-file(5): user:password:uid:gid:gecos:home; nobody can log in (no test does)
    (root / "passwd").write_text(f"probe:{{CRYPT}}*:65534:65534::{root / 'mail'}\n")
    ports = dict(zip(SCHEMES, free_ports(len(SCHEMES)), strict=True))
    no_tls = dict(
        zip(NO_TLS_SCHEMES, _free_ports_on(NO_TLS_ADDRESS, len(NO_TLS_SCHEMES)), strict=True)
    )
    config = root / "dovecot.conf"
    config.write_text(_config(root, ports, no_tls))
    server = ServerProcess("dovecot", [binary, "-F", "-c", str(config)], root)
    try:
        for port in ports.values():
            server.wait_port(port)
        for port in no_tls.values():
            server.wait_port(port, NO_TLS_ADDRESS)
        yield DovecotServer(ports, no_tls, leaf, root / "dovecot.log")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
