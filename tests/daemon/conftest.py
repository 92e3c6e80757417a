"""Fixtures of the daemon tests: the store on SQLite and PostgreSQL, real notification
receivers (an aiosmtpd SMTP server and an HTTP server, both on loopback), a restartable
haproxy serving a certificate of the test's choosing, and config files.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from aiosmtpd.controller import Controller

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_port, require_binary

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


# -- stores -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A uniquely named PostgreSQL database for this test session, dropped at the end."""
    name = f"tlswatch_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_pg(url: str) -> None:
    dbname = url.rsplit("/", 1)[1]
    with psycopg.connect(
        f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}", autocommit=True
    ) as conn:
        # every test starts from an empty database, so migrations run from scratch each time
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store URL for one test: a fresh SQLite file, or the session's PostgreSQL database
    emptied. Every store test runs on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tlswatch.db'}"
    url: str = request.getfixturevalue("pg_database")
    _reset_pg(url)
    return url


# -- receivers ----------------------------------------------------------------------------


@dataclass
class HttpDelivery:
    path: str
    headers: dict[str, str]
    payload: dict[str, Any]


class HttpReceiver:
    """A real HTTP server on loopback that records every POST (Apprise ``json://``).

    ``hold()`` makes the next request wait after it was recorded and before it is
    answered, until ``release()`` — the window in which a sender cannot know whether the
    receiver got the message.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[HttpDelivery] = []
        self.lock = threading.Lock()
        self.got_one = threading.Event()
        self._hold = threading.Event()
        self._held = threading.Event()
        self._release = threading.Event()
        self._skip = 0
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(
                        HttpDelivery(
                            self.path, {k: v for k, v in self.headers.items()}, json.loads(body)
                        )
                    )
                receiver.got_one.set()
                if receiver._hold.is_set() and receiver._skip > 0:
                    receiver._skip -= 1
                elif receiver._hold.is_set():
                    receiver._hold.clear()
                    receiver._held.set()
                    receiver._release.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def hold(self, skip: int = 0) -> None:
        """Answer ``skip`` requests normally, then hold the next one until release()."""
        self._skip = skip
        self._release.clear()
        self._hold.set()

    def wait_held(self, timeout: float = 30) -> bool:
        return self._held.wait(timeout)

    def release(self) -> None:
        self._release.set()

    def keys(self) -> list[str]:
        with self.lock:
            return [d.headers.get("Idempotency-Key", "") for d in self.received]


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    r.up()
    try:
        yield r
    finally:
        r.release()
        r.down()


class _SmtpHandler:
    def __init__(self, sink: list[EmailMessage]) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(
            envelope.original_content or envelope.content, policy=policy.default
        )
        self.sink.append(msg)  # type: ignore[arg-type]
        return "250 OK"


@dataclass
class SmtpReceiver:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    @property
    def url(self) -> str:
        # Apprise mailto:// to a plain SMTP port on loopback: no user (so no AUTH),
        # mode=insecure (no STARTTLS, no implicit TLS), explicit from/to addresses.
        return (
            f"mailto://127.0.0.1:{self.port}?mode=insecure&from=tlswatch@example.test"
            "&to=ops@example.test"
        )


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    port = free_port()
    r = SmtpReceiver(port)
    controller = Controller(_SmtpHandler(r.messages), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield r
    finally:
        controller.stop()


# -- a haproxy serving a certificate of the test's choosing -------------------------------


class CertServer:
    """haproxy terminating TLS on a fixed loopback port with a certificate that can be
    swapped (stop, rewrite, start on the same port): a renewal, as a server sees it."""

    def __init__(self, pki: TestPKI, work: Path) -> None:
        self.binary = require_binary("/usr/sbin/haproxy")
        self.pki = pki
        self.work = work
        self.port = free_port()
        self.proc: ServerProcess | None = None
        self.leaf: IssuedLeaf | None = None
        self.generation = 0

    def serve(self, leaf: IssuedLeaf) -> None:
        self.stop()
        self.generation += 1
        self.leaf = leaf
        cfg = self.work / f"haproxy-{self.generation}.cfg"
        cfg.write_text(
            f"""
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend tls
    bind 127.0.0.1:{self.port} ssl crt {leaf.fullchain_key_file}
    tcp-request content reject
"""
        )
        self.proc = ServerProcess(
            f"haproxy-{self.generation}", [self.binary, "-db", "-f", str(cfg)], self.work
        )
        self.proc.wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


@pytest.fixture
def cert_server(pki: TestPKI, tmp_path: Path) -> Iterator[CertServer]:
    server = CertServer(pki, tmp_path)
    try:
        yield server
    finally:
        server.stop()


def issue_expiring(
    pki: TestPKI, name: str, now: dt.datetime, days: float, lifetime: float = 365
) -> IssuedLeaf:
    """A leaf for 127.0.0.1 expiring ``days`` after ``now``, issued ``lifetime - days`` ago."""
    not_after = now + dt.timedelta(days=days)
    return pki.issue(
        name,
        "127.0.0.1",
        "localhost",
        not_before=not_after - dt.timedelta(days=lifetime),
        not_after=not_after,
        organization_unit="tlswatch tests",
    )


# -- config files -------------------------------------------------------------------------


def write_config(directory: Path, store: str, targets: list[Any], **sections: Any) -> Path:
    data: dict[str, Any] = {"store": store, "targets": targets}
    data.update(sections)
    path = directory / "tlswatch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true (readiness with a deadline, not synchronisation)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def port_closed() -> int:
    """A loopback port with nothing listening (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(coro: Any) -> Any:
    return asyncio.get_event_loop().run_until_complete(coro)
