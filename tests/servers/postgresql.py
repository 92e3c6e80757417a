"""PostgreSQL 15 clusters of the tests' own (ssl=on and ssl=off), and haproxy offering
ALPN ``postgresql`` for the ``direct=1`` (PostgreSQL 17 direct TLS) variant.

The clusters never touch the one running on 5432: each is initdb'ed into a fresh directory
under /tmp, listens only on 127.0.0.1 at a free port and keeps its Unix socket in that
directory. PostgreSQL refuses to run as root, so initdb and postgres run as the ``postgres``
user (``setpriv``, which execs in place: the process we started is the postmaster, and
SIGINT is its documented "fast shutdown"). The directory is under /tmp rather than pytest's
tmp dir because pytest's is private to root.

PostgreSQL 17 (the first with direct TLS) is not in Debian 12, so ``direct=1`` is tested
against haproxy terminating TLS with ALPN ``postgresql``: what is checked is that the
probe offers that ALPN and goes TLS-first.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class PostgresServer:
    port: int
    leaf: IssuedLeaf | None  # None: ssl=off


@dataclass(frozen=True)
class DirectTLSServer:
    port: int
    leaf: IssuedLeaf


def _as_postgres(uid: int, gid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"]


@pytest.fixture(scope="session")
def _pg_base() -> Iterator[Path]:
    """A /tmp directory the postgres user owns, removed at the end of the session."""
    base = Path(tempfile.mkdtemp(prefix="tlswatch-pg-"))
    base.chmod(0o711)  # the postgres user must reach its cluster directory inside
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _cluster(base: Path, name: str, leaf: IssuedLeaf | None) -> Iterator[PostgresServer]:
    initdb = require_binary(str(PG_BIN / "initdb"))
    postgres = require_binary(str(PG_BIN / "postgres"))
    require_binary("setpriv")
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("no postgres user: the postgresql-15 package creates it", pytrace=False)
    work = base / name
    work.mkdir()
    os.chown(work, pw.pw_uid, pw.pw_gid)
    as_pg = _as_postgres(pw.pw_uid, pw.pw_gid)
    data = work / "data"
    done = subprocess.run(
        [*as_pg, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
         "-E", "UTF8", "--locale=C.UTF-8"],
        check=False, cwd=work, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode:
        pytest.fail(f"initdb failed ({done.returncode}):\n{done.stderr}", pytrace=False)
    (port,) = free_ports(1)
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(work),
        "fsync": "off",
        "shared_buffers": "16MB",
        "max_connections": "20",
        "ssl": "on" if leaf else "off",
    }
    if leaf is not None:
        # PostgreSQL wants its key owned by its user with mode 0600 (§19.9.3).
        for src, dst in ((leaf.chain_file, "server.crt"), (leaf.key_file, "server.key")):
            shutil.copy(src, work / dst)
            os.chown(work / dst, pw.pw_uid, pw.pw_gid)
            (work / dst).chmod(0o600)
        settings["ssl_cert_file"] = str(work / "server.crt")
        settings["ssl_key_file"] = str(work / "server.key")
    argv = [*as_pg, postgres, "-D", str(data)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    server = ServerProcess(f"postgres-{name}", argv, work)
    try:
        server.wait_port(port)
        yield PostgresServer(port, leaf)
    finally:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                server.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        server.stop()


@pytest.fixture(scope="session")
def postgres_tls(pki: TestPKI, _pg_base: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL 15 cluster with ssl=on and a leaf of the test PKI."""
    yield from _cluster(_pg_base, "ssl-on", pki.issue("postgres"))


@pytest.fixture(scope="session")
def postgres_no_tls(_pg_base: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL 15 cluster with ssl=off: it answers SSLRequest with 'N'."""
    yield from _cluster(_pg_base, "ssl-off", None)


@pytest.fixture(scope="session")
def postgres_direct_tls(
    pki: TestPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DirectTLSServer]:
    """haproxy terminating TLS with ALPN ``postgresql`` (stand-in for PostgreSQL 17)."""
    binary = require_binary("/usr/sbin/haproxy")
    work = tmp_path_factory.mktemp("pg-direct")
    leaf = pki.issue("postgres-direct")
    (port,) = free_ports(1)
    cfg = work / "haproxy.cfg"
    cfg.write_text(
        f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend pgdirect
    bind 127.0.0.1:{port} ssl crt {leaf.fullchain_key_file} alpn postgresql
    tcp-request content reject
"""
    )
    server = ServerProcess("haproxy-pg-direct", [binary, "-db", "-f", str(cfg)], work)
    try:
        server.wait_port(port)
        yield DirectTLSServer(port, leaf)
    finally:
        server.stop()


__all__ = ["DirectTLSServer", "PostgresServer"]
