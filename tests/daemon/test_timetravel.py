"""Time travel through an injected clock: a certificate walks from 40 days down to expiry
(the daemon probing a real haproxy once a day), then the server gets a renewed certificate.
Every notification is received by a real HTTP receiver."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from tests.daemon.conftest import CertServer, HttpReceiver, issue_expiring, write_config
from tests.support.pki import TestPKI
from tlswatch.daemon.clock import ManualClock
from tlswatch.daemon.service import Service
from tlswatch.daemon.store.models import AlertStateRow, OutboxRow, TargetRow

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


async def test_walk_to_expiry_then_renewal(
    tmp_path: Path,
    store_url: str,
    cert_server: CertServer,
    pki: TestPKI,
    http_receiver: HttpReceiver,
) -> None:
    """40 → 0 days produces exactly one notification per threshold (30, 14, 7, 3, 1) and one
    at expiry, with escalating severity; the renewal then produces exactly one recovery
    naming the old and new fingerprints, and nothing more follows."""
    old = issue_expiring(pki, "walk-old", T0, 40.5)
    cert_server.serve(old)
    cfg = write_config(
        tmp_path,
        store_url,
        [f"tls://127.0.0.1:{cert_server.port}"],
        defaults={"ca": str(pki.root_file), "interval": "1d", "jitter": 0},
        notify={"hook": http_receiver.url},
        alerts={"repeat": "30d"},  # no reminders inside this walk: only crossings count
    )
    clock = ManualClock(T0)
    svc = Service(cfg, clock=clock)
    svc.start()
    try:
        for _ in range(42):  # T0 .. T0+41d: past the expiry at T0+40.5d
            await svc.cycle()
            clock.advance(dt.timedelta(days=1))
        titles = [d.payload["title"] for d in http_receiver.received]
        port = cert_server.port
        # crossing 30 at 29.5 days left, 14 at 13.5, 7 at 6.5, 3 at 2.5, 1 at 0.5, then expiry
        assert titles == [
            f"[WARNING] Certificate expires in 29 days: 127.0.0.1:{port}",
            f"[WARNING] Certificate expires in 13 days: 127.0.0.1:{port}",
            f"[CRITICAL] Certificate expires in 6 days: 127.0.0.1:{port}",
            f"[CRITICAL] Certificate expires in 2 days: 127.0.0.1:{port}",
            f"[CRITICAL] Certificate expires in less than a day: 127.0.0.1:{port}",
            f"[CRITICAL] Certificate EXPIRED: 127.0.0.1:{port}",
        ]
        # the crossings happened on the right days (the probe at T0+n days sees 40.5-n left)
        with svc.db.transaction() as s:
            created = [r.created_at for r in s.scalars(select(OutboxRow).order_by(OutboxRow.id))]
        assert [round((c - T0).total_seconds() / 86400) for c in created] == [
            11,
            27,
            34,
            38,
            40,
            41,
        ]

        new = pki.issue(
            "walk-new",
            "127.0.0.1",
            "localhost",
            not_before=clock.now() - dt.timedelta(days=1),
            not_after=clock.now() + dt.timedelta(days=90),
            organization_unit="tlswatch tests",
        )
        cert_server.serve(new)
        for _ in range(3):
            await svc.cycle()
            clock.advance(dt.timedelta(days=1))
    finally:
        svc.close()
    assert len(http_receiver.received) == 7
    recovery = http_receiver.received[-1].payload
    assert recovery["title"] == f"[OK] Certificate replaced: 127.0.0.1:{cert_server.port}"
    assert recovery["type"] == "success"
    msg = recovery["message"]
    assert f"Old fingerprint: SHA-256 {old.leaf_sha256}\n" in msg
    assert f"New fingerprint: SHA-256 {new.leaf_sha256}\n" in msg
    assert (
        "Old expiry:      " + old.leaf.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC") in msg
    )
    assert (
        "New expiry:      " + new.leaf.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC") in msg
    )
    assert len(set(http_receiver.keys())) == 7
    with svc.db.transaction() as s:
        state = s.scalar(
            select(AlertStateRow).where(AlertStateRow.key == f"cert:{old.leaf_sha256}")
        )
        target = s.scalar(select(TargetRow))
    assert state is not None and state.resolved_at is not None and state.notify_count == 7
    assert target is not None and target.leaf_sha256 == new.leaf_sha256
