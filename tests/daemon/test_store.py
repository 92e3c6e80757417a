"""The store, on SQLite and on PostgreSQL alike: migrations, certificate deduplication with
first/last seen per endpoint, change detection, offline re-evaluation, retention, the
outbox state machine and silences. Observations are built from certificates the test PKI
issues (the library's pure API is fed data; no server is imitated)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from tests.daemon.conftest import issue_expiring, write_config
from tests.support.pki import IssuedLeaf, TestPKI
from tlswatch.analysis.evaluate import evaluate_target
from tlswatch.daemon.alerts import outbox
from tlswatch.daemon.config import MonitoredTarget, load_config
from tlswatch.daemon.store import repo
from tlswatch.daemon.store.db import Database
from tlswatch.daemon.store.models import (
    Base,
    CertificateRow,
    EndpointCertificateRow,
    FindingRow,
    OutboxRow,
    ProbeRow,
    TargetRow,
)
from tlswatch.errors import Failure, FailureClass
from tlswatch.model import Observation, TLSInfo

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def db(store_url: str) -> Database:
    d = Database(store_url)
    d.migrate()
    yield d
    d.close()


def _target(
    tmp_path: Path, store_url: str, url: str = "tls://mail.example.test:465"
) -> MonitoredTarget:
    cfg = load_config(write_config(tmp_path, store_url, [url]))
    return cfg.targets[0]


def _obs(leaf: IssuedLeaf | None, address: str = "192.0.2.1", port: int = 465) -> Observation:
    if leaf is None:
        return Observation(
            address, port, error=Failure(FailureClass.CONNECT_REFUSED, "connection refused")
        )
    return Observation(
        address, port, chain=leaf.chain_der, tls=TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256")
    )


def _record(
    db: Database, mt: MonitoredTarget, now: dt.datetime, *obs: Observation
) -> repo.ProbeOutcome:
    result = evaluate_target(mt.target, list(obs), now, None)
    with db.transaction() as s:
        repo.sync_targets(s, [mt])
        return repo.record_probe(s, mt, result, now, 12.5)


def test_migrations_create_exactly_the_models(db: Database) -> None:
    """After `upgrade head` the database schema equals the SQLAlchemy models (no pending
    autogenerate differences), and migrating again is a no-op."""
    db.migrate()
    with db.engine.connect() as conn:
        diffs = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
        )
    assert diffs == []


def test_certificates_deduplicated_with_first_and_last_seen(
    tmp_path: Path, store_url: str, db: Database, pki: TestPKI
) -> None:
    """Two endpoints serving one chain over three probes: one row per certificate (exact
    DER), and each endpoint's link spans first to last probe; timestamps come back UTC."""
    leaf = issue_expiring(pki, "dedup", T0, 60)
    mt = _target(tmp_path, store_url)
    for i in range(3):
        _record(db, mt, T0 + i * HOUR, _obs(leaf, "192.0.2.1"), _obs(leaf, "192.0.2.2"))
    with db.transaction() as s:
        certs = {c.sha256: c for c in s.scalars(select(CertificateRow))}
        assert set(certs) == set(leaf.chain_sha256)
        assert certs[leaf.leaf_sha256].der == leaf.chain_der[0]
        assert certs[leaf.leaf_sha256].first_seen == T0
        assert certs[leaf.leaf_sha256].last_seen == T0 + 2 * HOUR
        links = list(
            s.scalars(select(EndpointCertificateRow).where(EndpointCertificateRow.position == 0))
        )
        assert len(links) == 2
        assert {(link.first_seen, link.last_seen) for link in links} == {(T0, T0 + 2 * HOUR)}
        t = s.scalar(select(TargetRow))
        assert t.leaf_sha256 == leaf.leaf_sha256
        assert t.not_after == leaf.leaf.not_valid_after_utc
        assert t.not_after.tzinfo is not None
        assert len(list(s.scalars(select(ProbeRow)))) == 3


def test_change_detection_findings(
    tmp_path: Path, store_url: str, db: Database, pki: TestPKI
) -> None:
    """A renewal (same subject and issuer, later expiry) is CERT_CHANGED info; a leaf from
    another issuer is CERT_CHANGED warning; two endpoints disagreeing is ENDPOINTS_DISAGREE;
    a leaf past 2/3 of its life is RENEWAL_OVERDUE."""
    mt = _target(tmp_path, store_url)
    old = issue_expiring(pki, "chg-old", T0, 20, lifetime=90)
    renewed = issue_expiring(pki, "chg-new", T0, 80, lifetime=90)
    other = pki.issue(
        "chg-other",
        "127.0.0.1",
        issuer=pki.root,
        not_before=T0 - HOUR,
        not_after=T0 + dt.timedelta(days=400),
        organization_unit="tlswatch tests",
    )

    def findings() -> dict[tuple[str, str], str]:
        with db.transaction() as s:
            return {(f.endpoint, f.code): f.severity for f in s.scalars(select(FindingRow))}

    _record(db, mt, T0, _obs(old))
    assert findings()[("192.0.2.1:465", "RENEWAL_OVERDUE")] == "warning"
    _record(db, mt, T0 + HOUR, _obs(renewed))
    f = findings()
    assert f[("192.0.2.1:465", "CERT_CHANGED")] == "info"
    assert ("192.0.2.1:465", "RENEWAL_OVERDUE") not in f
    _record(db, mt, T0 + 2 * HOUR, _obs(other))
    assert findings()[("192.0.2.1:465", "CERT_CHANGED")] == "warning"
    _record(db, mt, T0 + 3 * HOUR, _obs(other, "192.0.2.1"), _obs(renewed, "192.0.2.2"))
    f = findings()
    assert f[("", "ENDPOINTS_DISAGREE")] == "warning"
    assert ("192.0.2.1:465", "CERT_CHANGED") not in f  # an event: gone at the next probe


def test_failures_counted_and_offline_reevaluation(
    tmp_path: Path, store_url: str, db: Database, pki: TestPKI
) -> None:
    """Failures count up to the declaration threshold (default 2) and reset on success;
    while unreachable, the stored chain keeps being judged: days left advance offline."""
    mt = _target(tmp_path, store_url)
    leaf = issue_expiring(pki, "offline", T0, 10)
    assert not _record(db, mt, T0, _obs(leaf)).failed
    first = _record(db, mt, T0 + HOUR, _obs(None))
    assert (first.failed, first.consecutive_failures, first.failure_declared) == (True, 1, False)
    second = _record(db, mt, T0 + 2 * HOUR, _obs(None))
    assert (second.consecutive_failures, second.failure_declared) == (2, True)
    with db.transaction() as s:
        repo.reevaluate(s, mt, T0 + dt.timedelta(days=3))
        t = s.scalar(select(TargetRow))
        assert t.days_left == pytest.approx(7.0, abs=0.01)
        assert t.status == "unknown" or t.status in ("warning", "critical")
        assert t.leaf_sha256 == leaf.leaf_sha256
        sources = [p.source for p in s.scalars(select(ProbeRow).order_by(ProbeRow.id))]
    assert sources == ["probe", "probe", "probe", "reevaluate"]
    assert _record(db, mt, T0 + 3 * HOUR, _obs(leaf)).consecutive_failures == 0


def test_retention_purges_probe_summaries_not_certificates(
    tmp_path: Path, store_url: str, db: Database, pki: TestPKI
) -> None:
    """Purging removes probe summaries older than the cut-off and keeps certificates."""
    mt = _target(tmp_path, store_url)
    leaf = issue_expiring(pki, "retention", T0, 100)
    for day in range(5):
        _record(db, mt, T0 + dt.timedelta(days=day), _obs(leaf))
    with db.transaction() as s:
        assert repo.purge_probes(s, T0 + dt.timedelta(days=3)) == 3
    with db.transaction() as s:
        assert [
            p.checked_at for p in s.scalars(select(ProbeRow).order_by(ProbeRow.checked_at))
        ] == [T0 + dt.timedelta(days=3), T0 + dt.timedelta(days=4)]
        assert len(list(s.scalars(select(CertificateRow)))) == 2


def _enqueue(db: Database, key: str, now: dt.datetime) -> int:
    with db.transaction() as s:
        assert outbox.enqueue(
            s,
            key=key,
            alert_key="a",
            event="e",
            channel="c",
            severity="warning",
            title="t",
            body="b",
            now=now,
        )
        assert not outbox.enqueue(
            s,
            key=key,
            alert_key="a",
            event="e",
            channel="c",
            severity="warning",
            title="t",
            body="b",
            now=now,
        )
        return s.scalar(select(OutboxRow.id).where(OutboxRow.idempotency_key == key))


def test_outbox_claim_send_mark_protocol(db: Database) -> None:
    """An idempotency key is queued once; a row is claimed by one sender only; marking
    needs the claim's token; a crash's claims go back to pending; failures back off and
    dead-letter after the configured time."""
    rid = _enqueue(db, "k1", T0)
    with db.transaction() as s:
        assert outbox.claim(s, rid, "tok-a", T0)
        assert not outbox.claim(s, rid, "tok-b", T0)
        assert not outbox.mark_sent(s, rid, "tok-b", T0)
    with db.transaction() as s:
        assert outbox.recover_claims(s) == 1
    with db.transaction() as s:
        assert outbox.claim(s, rid, "tok-c", T0)
        assert not outbox.mark_sent(s, rid, "tok-a", T0)  # the dead sender's token is void
        state = outbox.mark_failed(
            s, rid, "tok-c", T0, "down", HOUR / 60, HOUR, dt.timedelta(days=1)
        )
        assert state == "pending"
    with db.transaction() as s:
        row = s.get(OutboxRow, rid)
        assert (row.attempts, row.next_attempt_at, row.last_error) == (
            2,
            T0 + HOUR / 60 * 2,
            "down",
        )
        assert not outbox.claim(s, rid, "tok-d", T0)  # not due yet
        assert outbox.claim(s, rid, "tok-d", T0 + HOUR)
        assert outbox.mark_sent(s, rid, "tok-d", T0 + HOUR)
    dead = _enqueue(db, "k2", T0)
    with db.transaction() as s:
        assert outbox.expire(s, T0 + dt.timedelta(days=1), dt.timedelta(days=1)) == 1
        assert s.get(OutboxRow, dead).state == "dead"
        assert s.get(OutboxRow, rid).state == "sent"
    with pytest.raises(outbox.OutboxStateError):
        outbox.next_state("sent", "claim")


def test_silences(tmp_path: Path, store_url: str, db: Database) -> None:
    """CLI silences persist; config silences are replaced on each sync; expired ones are
    not active."""
    cfg = load_config(
        write_config(
            tmp_path,
            store_url,
            ["tls://a.example:1"],
            silences=[
                {
                    "match": {"fingerprint": "AB" * 32},
                    "until": "2030-02-01T00:00:00Z",
                    "reason": "cfg",
                }
            ],
        )
    )
    with db.transaction() as s:
        repo.add_silence(
            s, target="tls://a.example:1", fingerprint=None, until=T0 + HOUR, reason="maint", now=T0
        )
        repo.sync_config_silences(s, cfg.model.silences, T0)
        repo.sync_config_silences(s, cfg.model.silences, T0)
    with db.transaction() as s:
        rows = repo.list_silences(s)
        assert [(r.source, r.target, r.fingerprint) for r in rows] == [
            ("cli", "tls://a.example:1", None),
            ("config", None, "ab" * 32),
        ]
        assert [r.reason for r in repo.active_silences(s, T0 + 2 * HOUR)] == ["cfg"]
        assert repo.remove_silence(s, rows[0].id)
        assert not repo.remove_silence(s, rows[0].id)
