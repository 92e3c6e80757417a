"""The daemon's tables (SQLAlchemy 2 declarative). Alembic migrations in
``tlswatch/daemon/migrations/versions`` create exactly these (a test compares them).

Keyed on stable things only: a target's config URL, an endpoint's address and port, a
certificate's SHA-256 fingerprint, finding codes. Everything judged (status, findings,
days left) can be recomputed from the stored chains, which keep the DER exactly as sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on every backend (SQLite has no time zones: store naive
    UTC there and put the zone back on the way out)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class TargetRow(Base):
    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(2048), unique=True)
    name: Mapped[str] = mapped_column(String(512))
    url: Mapped[str] = mapped_column(String(4096))
    protocol: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(256))
    group_name: Mapped[str | None] = mapped_column(String(256))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    days_left: Mapped[float | None] = mapped_column(Float)
    leaf_sha256: Mapped[str | None] = mapped_column(String(64))
    not_after: Mapped[datetime | None]
    last_probe_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failure_declared: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    next_due_at: Mapped[datetime | None]
    evaluated_at: Mapped[datetime | None]


class EndpointRow(Base):
    __tablename__ = "endpoints"
    __table_args__ = (UniqueConstraint("target_id", "address", "port"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    leaf_sha256: Mapped[str | None] = mapped_column(String(64))
    #: the last chain collected, SHA-256 per position in the order sent
    chain: Mapped[list[str]] = mapped_column(JSON, default=list)
    tls: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    last_probe_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    #: the endpoint answered in the latest probe of its target (False: gone from DNS)
    current: Mapped[bool] = mapped_column(Boolean, default=True)


class CertificateRow(Base):
    __tablename__ = "certificates"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(128))
    not_before: Mapped[datetime | None]
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class EndpointCertificateRow(Base):
    """Which endpoint served which certificate, from when to when."""

    __tablename__ = "endpoint_certificates"
    __table_args__ = (UniqueConstraint("endpoint_id", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(ForeignKey("certificates.sha256"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class ProbeRow(Base):
    """A summary of one probe (or offline re-evaluation) of one target."""

    __tablename__ = "probes"
    __table_args__ = (Index("ix_probes_target_checked", "target_id", "checked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    source: Mapped[str] = mapped_column(String(16), default="probe")
    status: Mapped[str] = mapped_column(String(16))
    days_left: Mapped[float | None] = mapped_column(Float)
    leaf_sha256: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class FindingRow(Base):
    """A finding that currently holds for a target (endpoint '' = the target as a whole)."""

    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("target_id", "endpoint", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(String(80), default="")
    code: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class AlertStateRow(Base):
    """One alert's lifecycle: opened, each notified step, resolved."""

    __tablename__ = "alert_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(600), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(String(2048))
    severity: Mapped[str] = mapped_column(String(16))
    #: for expiry alerts: the last threshold (days) notified; 0 = expired
    step: Mapped[int | None] = mapped_column(Integer)
    opened_at: Mapped[datetime]
    last_notified_at: Mapped[datetime | None]
    notify_count: Mapped[int] = mapped_column(Integer, default=0)
    resolved_at: Mapped[datetime | None]
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class OutboxRow(Base):
    """One notification to one channel. State machine in :mod:`tlswatch.daemon.alerts.outbox`."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    alert_key: Mapped[str] = mapped_column(String(600))
    event: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]
    dead_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class SilenceRow(Base):
    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[str | None] = mapped_column(String(2048))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    until: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16), default="cli")


class MetaRow(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
