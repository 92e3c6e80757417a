"""MariaDB instances of the tests' own: one with TLS, one started with --skip-ssl.

Never the server on 3306: each instance gets a fresh data directory
(``mariadb-install-db``), a free loopback port, its own socket and pid file, and
``--no-defaults`` so nothing from /etc/mysql applies. Both run as root (``--user=root``);
small InnoDB sizes keep start-up and disk use low.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary

INSTALL_DB = "/usr/bin/mariadb-install-db"
MARIADBD = "/usr/sbin/mariadbd"
_SMALL = ["--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M"]


@dataclass(frozen=True)
class MariaDBServer:
    port: int
    leaf: IssuedLeaf | None  # None: --skip-ssl


def _instance(work: Path, leaf: IssuedLeaf | None, ca: Path) -> Iterator[MariaDBServer]:
    install = require_binary(INSTALL_DB)
    mariadbd = require_binary(MARIADBD)
    data = work / "data"
    done = subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", "--user=root",
         "--auth-root-authentication-method=normal", "--skip-test-db", *_SMALL],
        check=False, cwd=work, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode:
        pytest.fail(
            f"mariadb-install-db failed ({done.returncode}):\n{done.stdout}{done.stderr}",
            pytrace=False,
        )
    (port,) = free_ports(1)
    argv = [
        mariadbd, "--no-defaults", f"--datadir={data}", f"--port={port}",
        "--bind-address=127.0.0.1", f"--socket={work / 'mysqld.sock'}",
        f"--pid-file={work / 'mysqld.pid'}", "--user=root", "--skip-log-bin",
        "--skip-name-resolve", *_SMALL,
    ]  # fmt: skip
    if leaf is None:
        argv.append("--skip-ssl")
    else:
        argv += [f"--ssl-cert={leaf.chain_file}", f"--ssl-key={leaf.key_file}", f"--ssl-ca={ca}"]
    server = ServerProcess("mariadbd", argv, work)
    try:
        server.wait_port(port, timeout=60)
        yield MariaDBServer(port, leaf)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb_tls(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """MariaDB with --ssl-cert/--ssl-key: its greeting carries CLIENT_SSL."""
    yield from _instance(
        tmp_path_factory.mktemp("mariadb-tls"), pki.issue("mariadb"), pki.root_file
    )


@pytest.fixture(scope="session")
def mariadb_no_tls(
    pki: TestPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MariaDBServer]:
    """MariaDB with --skip-ssl: its greeting lacks CLIENT_SSL."""
    yield from _instance(tmp_path_factory.mktemp("mariadb-plain"), None, pki.root_file)


__all__ = ["MariaDBServer"]
