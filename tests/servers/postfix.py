"""Postfix (Debian's package) on loopback high ports: one private instance per test session.

The instance lives entirely in a temporary directory (config_directory, queue_directory,
data_directory, log file): /etc/postfix and any system instance are never touched. Its
``master`` runs in the foreground (``-d``) as root, as Postfix requires, and starts three
smtpd listeners:

    submission  STARTTLS offered (smtpd_tls_security_level=may), the submission-style port
    smtps       wrapper mode (smtpd_tls_wrappermode=yes): implicit TLS, RFC 8314
    no_tls      smtpd_tls_security_level=none: EHLO without STARTTLS (the refusal case)

plus the internal services smtpd needs to answer EHLO (anvil for connection counting,
proxymap for its table look-ups, tlsmgr, postlogd for the log file).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary

MASTER = "/usr/lib/postfix/sbin/master"
DAEMON_DIRECTORY = "/usr/lib/postfix/sbin"
HOSTNAME = "mail.tlswatch.test"
BANNER = f"{HOSTNAME} ESMTP Postfix (tlswatch test)"


@dataclass(frozen=True)
class PostfixServer:
    submission: int  # STARTTLS
    smtps: int  # implicit TLS (wrapper mode)
    no_tls: int  # STARTTLS not offered
    leaf: IssuedLeaf
    log: Path


def _write_config(root: Path, leaf_key: Path, leaf_chain: Path, ports: list[int]) -> Path:
    etc = root / "etc"
    etc.mkdir()
    submission, smtps, no_tls = ports
    (etc / "main.cf").write_text(
        f"""\
compatibility_level = 3.6
config_directory = {etc}
queue_directory = {root / "queue"}
data_directory = {root / "data"}
daemon_directory = {DAEMON_DIRECTORY}
command_directory = /usr/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = {HOSTNAME}
mydomain = tlswatch.test
mydestination =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file = {root / "postfix.log"}
maillog_file_prefixes = {root}
smtpd_banner = $myhostname ESMTP Postfix (tlswatch test)
smtpd_peername_lookup = no
smtpd_tls_security_level = may
smtpd_tls_chain_files = {leaf_key}, {leaf_chain}
biff = no
"""
    )
    # master.cf(5): service type private unpriv chroot wakeup maxproc command
    (etc / "master.cf").write_text(
        f"""\
127.0.0.1:{submission} inet n - n - - smtpd
127.0.0.1:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt
127.0.0.1:{no_tls} inet n - n - - smtpd -o smtpd_tls_security_level=none
anvil unix - - n - 1 anvil
proxymap unix - - n - - proxymap
tlsmgr unix - - n 1000? 1 tlsmgr
postlog unix-dgram n - n - 1 postlogd
"""
    )
    return etc


@pytest.fixture(scope="session")
def postfix(pki: TestPKI) -> Iterator[PostfixServer]:
    master = require_binary(MASTER)
    postfix_command = require_binary("/usr/sbin/postfix")
    # A directory of our own, world-searchable: Postfix's daemons drop to the postfix user
    # and must reach their sockets (pytest's own temp root is private to root).
    root = Path(tempfile.mkdtemp(prefix="tlswatch-postfix-"))
    root.chmod(0o755)
    now = datetime.now(UTC).replace(microsecond=0)
    leaf = pki.issue(
        "postfix", not_before=now - timedelta(days=3), not_after=now + timedelta(days=61)
    )
    key = root / "smtpd.key"
    chain = root / "smtpd.chain.pem"
    shutil.copyfile(leaf.key_file, key)
    shutil.copyfile(leaf.chain_file, chain)
    key.chmod(0o600)
    ports = free_ports(3)
    etc = _write_config(root, key, chain, ports)
    queue = root / "queue"
    for sub in ("pid", "public", "private"):
        (queue / sub).mkdir(parents=True)
    (root / "data").mkdir()
    for owned in (queue / "public", queue / "private", root / "data"):
        shutil.chown(owned, user="postfix")
    (queue / "private").chmod(0o700)
    check = subprocess.run(
        [postfix_command, "-c", str(etc), "check"], check=False, capture_output=True, text=True
    )
    if check.returncode != 0:
        pytest.fail(f"postfix check failed:\n{check.stdout}{check.stderr}", pytrace=False)
    server = ServerProcess("postfix-master", [master, "-d", "-c", str(etc)], root)
    try:
        for port in ports:
            server.wait_port(port)
        yield PostfixServer(*ports, leaf=leaf, log=root / "postfix.log")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
