"""Fault tests: the daemon killed with SIGKILL in the middle of a delivery, SIGHUP with an
invalid file, the store file removed, the store locked. The daemon runs as a real
`tlswatch serve` process where a signal is involved."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from tests.daemon.conftest import CertServer, HttpReceiver, issue_expiring, wait_until, write_config
from tests.support.pki import TestPKI
from tlswatch.daemon.clock import ManualClock
from tlswatch.daemon.service import Service
from tlswatch.daemon.store.db import Database, StoreError
from tlswatch.daemon.store.models import OutboxRow, ProbeRow, TargetRow

TLSWATCH = str(Path(sys.executable).parent / "tlswatch")


class Daemon:
    """A `tlswatch serve` process with its log; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, config: Path, name: str = "daemon") -> None:
        self.log = config.parent / f"{name}.log"
        self._f = self.log.open("ab")
        self.proc = subprocess.Popen(
            [TLSWATCH, "serve", "-c", str(config)],
            stdout=self._f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30) -> int:
        rc = self.proc.wait(timeout)
        self._f.close()
        return rc

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._f.close()
        return self.proc.returncode


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def _rows(store_url: str, model: type, *where: object) -> list:
    """Rows of ``model`` as another process sees them ([] while the daemon is still
    creating the store)."""
    try:
        db = Database(store_url, create=False)
    except StoreError:
        return []
    try:
        with db.sessions() as s:
            return list(s.scalars(select(model).where(*where)))
    except SQLAlchemyError:
        return []
    finally:
        db.close()


def test_sigkill_between_send_and_mark_delivers_each_key_once(
    tmp_path: Path,
    store_url: str,
    cert_server: CertServer,
    pki: TestPKI,
    http_receiver: HttpReceiver,
    daemons: list[Daemon],
) -> None:
    """Three notifications (one alert, three channels). The receiver answers the first and
    holds the second after recording it; the daemon is SIGKILLed while waiting for that
    answer — it sent, but never marked. After a restart: the first is not sent again, the
    in-flight one is sent again with the same idempotency key, the third once; deduplicated
    by key the receiver has each notification exactly once, and every row is 'sent'."""
    now = dt.datetime.now(dt.UTC)
    cert_server.serve(issue_expiring(pki, "kill", now, 10))
    base = http_receiver.url
    cfg = write_config(
        tmp_path,
        store_url,
        [f"tls://127.0.0.1:{cert_server.port}"],
        defaults={"ca": str(pki.root_file), "jitter": 0},
        notify={"a": base + "/a", "b": base + "/b", "c": base + "/c"},
        alerts={"send_timeout": "20s"},
    )
    http_receiver.hold(skip=1)
    first = Daemon(cfg, "first")
    daemons.append(first)
    assert http_receiver.wait_held(30), first.text()
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    http_receiver.release()
    assert len(http_receiver.received) == 2
    (sending,) = _rows(store_url, OutboxRow, OutboxRow.state == "sending")
    (sent,) = _rows(store_url, OutboxRow, OutboxRow.state == "sent")
    assert http_receiver.keys() == [sent.idempotency_key, sending.idempotency_key]

    second = Daemon(cfg, "second")
    daemons.append(second)
    wait_until(
        lambda: len(_rows(store_url, OutboxRow, OutboxRow.state == "sent")) == 3, what="3 sent rows"
    )
    assert second.stop() == 0
    rows = _rows(store_url, OutboxRow)
    keys = Counter(http_receiver.keys())
    assert set(keys) == {r.idempotency_key for r in rows}  # deduplicated: each exactly once
    assert keys[sent.idempotency_key] == 1  # marked before the kill: never repeated
    assert keys[sending.idempotency_key] == 2  # in flight at the kill: repeated, same key
    assert sum(keys.values()) == 4
    assert "sending them again with the same idempotency key" in second.text()


def test_sighup_with_invalid_file_keeps_old_config(
    tmp_path: Path, cert_server: CertServer, pki: TestPKI, daemons: list[Daemon]
) -> None:
    """SIGHUP with a broken file: the reload is refused with file, line and key logged and
    the daemon keeps running on the old config; a later valid file is adopted."""
    cert_server.serve(issue_expiring(pki, "hup", dt.datetime.now(dt.UTC), 200))
    store = f"sqlite:///{tmp_path / 'tlswatch.db'}"
    good = [f"tls://127.0.0.1:{cert_server.port}"]
    cfg = write_config(tmp_path, store, good, defaults={"ca": str(pki.root_file), "jitter": 0})
    d = Daemon(cfg)
    daemons.append(d)
    wait_until(lambda: "tlswatch serving 1 target(s)" in d.text(), what="start")
    cfg.write_text(cfg.read_text().replace("defaults:", "defaults:\n  intervall: 1h"))
    d.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in d.text(), what="refusal")
    assert f"{cfg}:5: defaults.intervall: unknown key" in d.text()
    assert d.proc.poll() is None
    wait_until(lambda: len(_rows(store, ProbeRow)) >= 1, what="the first probe stored")
    second = f"tls://localhost:{cert_server.port}"
    write_config(tmp_path, store, [*good, second], defaults={"ca": str(pki.root_file), "jitter": 0})
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded: 2 target(s)" in d.text(), what="reload")
    wait_until(
        lambda: any(t.key == second and t.last_probe_at for t in _rows(store, TargetRow)),
        what="new target probed",
    )
    assert d.stop() == 0


def test_store_file_removed_stops_with_clear_error(
    tmp_path: Path, cert_server: CertServer, pki: TestPKI, daemons: list[Daemon]
) -> None:
    """Deleting the SQLite file under a running daemon stops it (exit 1) with a message
    saying so, instead of writing on into a deleted file."""
    cert_server.serve(issue_expiring(pki, "rm", dt.datetime.now(dt.UTC), 200))
    db = tmp_path / "tlswatch.db"
    cfg = write_config(
        tmp_path,
        f"sqlite:///{db}",
        [f"tls://127.0.0.1:{cert_server.port}"],
        defaults={"ca": str(pki.root_file), "jitter": 0, "interval": "1s"},
    )
    d = Daemon(cfg)
    daemons.append(d)
    wait_until(lambda: len(_rows(f"sqlite:///{db}", ProbeRow)) >= 1, what="the first probe stored")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    assert d.wait(30) == 1
    assert f"store {db} was removed while tlswatch was running" in d.text()


async def test_store_locked_is_reported_and_nothing_is_lost(
    tmp_path: Path, cert_server: CertServer, pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holding an exclusive lock on the SQLite store: the daemon logs that
    the store is locked, keeps the probe result in memory, and writes it (and queues its
    alert) once the lock is gone. Starting a second daemon on a locked store fails clearly."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert_server.serve(issue_expiring(pki, "lock", now, 3))
    db = tmp_path / "tlswatch.db"
    cfg = write_config(
        tmp_path,
        f"sqlite:///{db}",
        [f"tls://127.0.0.1:{cert_server.port}"],
        defaults={"ca": str(pki.root_file), "jitter": 0},
    )
    svc = Service(cfg, clock=ManualClock(now), busy_timeout=0.2)
    svc.start()
    other = sqlite3.connect(db, timeout=0.1, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.ERROR, logger="tlswatch.daemon"):
            await svc.cycle()
        assert f"store {db} is locked by another process" in caplog.text
        assert len(svc._finished) == 1  # held, not dropped
        with pytest.raises(StoreError, match="is locked by another process"):
            Service(cfg, busy_timeout=0.2).start(lock=False)
        other.execute("ROLLBACK")
        await svc.cycle()
        assert svc._finished == []
        with svc.db.transaction() as s:
            assert s.scalar(select(TargetRow.last_probe_at)) == now
            assert [r.event for r in s.scalars(select(OutboxRow))] == ["expiry:3"]
    finally:
        other.close()
        svc.close()


def test_second_daemon_on_same_store_is_refused(
    tmp_path: Path, cert_server: CertServer, pki: TestPKI
) -> None:
    """The single-instance lock: a second daemon on the same store fails with a message
    naming the lock and the pid holding it."""
    cert_server.serve(issue_expiring(pki, "two", dt.datetime.now(dt.UTC), 200))
    cfg = write_config(
        tmp_path, f"sqlite:///{tmp_path / 'tlswatch.db'}", [f"tls://127.0.0.1:{cert_server.port}"]
    )
    svc = Service(cfg)
    svc.start()
    try:
        with pytest.raises(
            StoreError, match=rf"another tlswatch serve is using .* by pid {os.getpid()}"
        ):
            Service(cfg).start()
    finally:
        svc.close()
