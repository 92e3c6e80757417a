"""Alerts delivered through Apprise to real receivers on loopback: an SMTP server (aiosmtpd,
``mailto://``) and an HTTP server (``json://``); retries, backoff and dead-lettering against
a receiver that is down. The daemon runs in-process with a manual clock; the monitored
server is a real haproxy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from tests.daemon.conftest import (
    CertServer,
    HttpReceiver,
    SmtpReceiver,
    issue_expiring,
    write_config,
)
from tests.support.pki import TestPKI
from tlswatch.daemon.clock import ManualClock
from tlswatch.daemon.service import Service
from tlswatch.daemon.store.models import OutboxRow

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _service(
    tmp_path: Path,
    store_url: str,
    server: CertServer,
    pki: TestPKI,
    notify: dict[str, str],
    **extra: object,
) -> tuple[Service, ManualClock]:
    cfg = write_config(
        tmp_path,
        store_url,
        [f"tls://127.0.0.1:{server.port}"],
        defaults={"ca": str(pki.root_file), "jitter": 0},
        notify=notify,
        **extra,
    )
    clock = ManualClock(T0)
    svc = Service(cfg, clock=clock)
    svc.start()
    return svc, clock


def _outbox(svc: Service) -> list[OutboxRow]:
    with svc.db.transaction() as s:
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))


async def test_expiry_alert_exact_messages_by_mail_and_webhook(
    tmp_path: Path,
    store_url: str,
    cert_server: CertServer,
    pki: TestPKI,
    smtp_receiver: SmtpReceiver,
    http_receiver: HttpReceiver,
) -> None:
    """A certificate 20 days from expiry yields one notification per channel, and both
    carry exactly the expected title and body: days left, UTC expiry, subject, issuer,
    fingerprint, endpoint host:port, finding, next step, and the idempotency key."""
    leaf = issue_expiring(pki, "mail-expiry", T0, 20)
    cert_server.serve(leaf)
    svc, _ = _service(
        tmp_path,
        store_url,
        cert_server,
        pki,
        {"mail": smtp_receiver.url, "hook": http_receiver.url},
    )
    try:
        await svc.cycle()
    finally:
        svc.close()
    cert = leaf.leaf
    expires = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    title = f"[WARNING] Certificate expires in 20 days: 127.0.0.1:{cert_server.port}"
    body_head = (
        "The certificate served by the endpoints below expires within 30 days.\n"
        "\n"
        "Days left:   20.0 days\n"
        f"Expires:     {expires}\n"
        f"Subject:     {cert.subject.rfc4514_string()}\n"
        f"Issuer:      {cert.issuer.rfc4514_string()}\n"
        f"Fingerprint: SHA-256 {leaf.leaf_sha256}\n"
        f"Endpoints:   127.0.0.1:{cert_server.port}\n"
        "Finding:     CERT_EXPIRES_SOON (warning)\n"
        "Next step:   Plan the renewal: renew the certificate and reload every service listed above.\n"
        "\n"
        "-- tlswatch, notification key "
    )
    assert len(http_receiver.received) == 1
    hook = http_receiver.received[0]
    assert hook.path == "/hook"
    assert hook.payload["title"] == title
    assert hook.payload["type"] == "warning"
    key = hook.headers["Idempotency-Key"]
    assert hook.payload["message"] == body_head + key

    assert len(smtp_receiver.messages) == 1
    mail = smtp_receiver.messages[0]
    assert mail["Subject"] == title
    assert mail["To"] == "ops@example.test"
    mail_key = mail["Idempotency-Key"]
    assert mail_key != key  # one key per (notification, channel)
    # SMTP carries lines with CRLF (RFC 5321 §2.3.8); the text is otherwise identical
    assert mail.get_content().replace("\r\n", "\n").rstrip("\n") == body_head + mail_key
    rows = _outbox(svc)
    assert sorted((r.channel, r.state, r.attempts) for r in rows) == [
        ("hook", "sent", 1),
        ("mail", "sent", 1),
    ]
    assert {r.idempotency_key for r in rows} == {key, mail_key}


async def test_receiver_down_for_several_rounds_then_up_delivers_once(
    tmp_path: Path,
    store_url: str,
    cert_server: CertServer,
    pki: TestPKI,
    http_receiver: HttpReceiver,
) -> None:
    """While the webhook is down every retry round fails with backoff; when it comes back
    the notification arrives exactly once and later rounds send nothing more."""
    cert_server.serve(issue_expiring(pki, "down-up", T0, 5))
    http_receiver.down()
    svc, clock = _service(
        tmp_path,
        store_url,
        cert_server,
        pki,
        {"hook": http_receiver.url},
        alerts={"retry": "10s", "retry_max": "1m", "dead_letter_after": "1d"},
    )
    try:
        await svc.cycle()
        for _ in range(5):
            clock.advance(dt.timedelta(minutes=1))
            await svc.cycle()
        (row,) = _outbox(svc)
        assert row.state == "pending"
        assert row.attempts == 6
        assert row.last_error and "127.0.0.1" in row.last_error
        assert row.next_attempt_at == T0 + dt.timedelta(minutes=5) + dt.timedelta(
            minutes=1
        )  # capped at retry_max
        http_receiver.up()
        for _ in range(4):
            clock.advance(dt.timedelta(minutes=1))
            await svc.cycle()
    finally:
        svc.close()
    assert len(http_receiver.received) == 1
    (row,) = _outbox(svc)
    assert row.state == "sent"
    assert http_receiver.keys() == [row.idempotency_key]
    assert (
        http_receiver.received[0]
        .payload["title"]
        .startswith("[CRITICAL] Certificate expires in 5 days")
    )


async def test_undeliverable_notification_is_dead_lettered(
    tmp_path: Path,
    store_url: str,
    cert_server: CertServer,
    pki: TestPKI,
    http_receiver: HttpReceiver,
) -> None:
    """A notification still undelivered dead_letter_after its queueing goes to state dead
    with the last error kept, and is not sent when the receiver returns."""
    cert_server.serve(issue_expiring(pki, "dead", T0, 2))
    http_receiver.down()
    svc, clock = _service(
        tmp_path,
        store_url,
        cert_server,
        pki,
        {"hook": http_receiver.url},
        alerts={"retry": "30s", "retry_max": "2m", "dead_letter_after": "5m"},
    )
    try:
        await svc.cycle()
        for _ in range(6):
            clock.advance(dt.timedelta(minutes=1))
            await svc.cycle()
        http_receiver.up()
        clock.advance(dt.timedelta(minutes=5))
        await svc.cycle()
    finally:
        svc.close()
    (row,) = _outbox(svc)
    assert row.state == "dead"
    assert row.dead_at is not None and row.dead_at - row.created_at >= dt.timedelta(minutes=5)
    assert row.last_error
    assert http_receiver.received == []
