"""Store operations: record a probe, re-evaluate stored chains offline, findings,
retention, silences, the read models of the CLI. Every function takes an open
:class:`~sqlalchemy.orm.Session` inside a transaction (``Database.transaction()``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tlswatch.analysis.evaluate import evaluate_target
from tlswatch.daemon import changes
from tlswatch.daemon.alerts.rules import Endpoint, host_port
from tlswatch.daemon.config import MonitoredTarget
from tlswatch.daemon.store.models import (
    CertificateRow,
    EndpointCertificateRow,
    EndpointRow,
    FindingRow,
    MetaRow,
    ProbeRow,
    SilenceRow,
    TargetRow,
)
from tlswatch.model import (
    CertInfo,
    EndpointResult,
    Finding,
    Observation,
    Status,
    TargetResult,
    TLSInfo,
)
from tlswatch.x509.certinfo import describe


#: finding severity as stored: a finding that is not a problem (a renewal) is "info"
def severity_name(f: Finding) -> str:
    return "info" if f.severity is Status.OK else str(f.severity)


# -- targets ------------------------------------------------------------------------------


def sync_targets(s: Session, targets: Sequence[MonitoredTarget]) -> dict[str, TargetRow]:
    """Make the targets table match the config: add new targets, update names and labels,
    deactivate removed ones (their history is kept)."""
    rows = {r.key: r for r in s.scalars(select(TargetRow))}
    wanted = {mt.key for mt in targets}
    for mt in targets:
        row = rows.get(mt.key)
        if row is None:
            row = TargetRow(
                key=mt.key, consecutive_failures=0, failure_declared=False, status="unknown"
            )
            s.add(row)
            rows[mt.key] = row
        row.name = mt.name
        row.url = mt.target.url
        row.protocol = mt.target.spec.name
        row.owner = mt.owner
        row.group_name = mt.group
        row.labels = dict(mt.labels)
        row.active = True
    for key, row in rows.items():
        if key not in wanted:
            row.active = False
    s.flush()
    return rows


def target_row(s: Session, key: str) -> TargetRow:
    row = s.scalar(select(TargetRow).where(TargetRow.key == key))
    if row is None:
        raise LookupError(f"target {key!r} is not in the store")
    return row


# -- recording a probe --------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeOutcome:
    failed: bool
    consecutive_failures: int
    failure_declared: bool
    status: Status


def _tls_json(tls: TLSInfo | None) -> dict[str, Any] | None:
    return None if tls is None else {"version": tls.version, "cipher": tls.cipher, "alpn": tls.alpn}


def _upsert_certificate(s: Session, der: bytes, info: CertInfo, now: datetime) -> None:
    row = s.get(CertificateRow, info.sha256)
    if row is None:
        s.add(
            CertificateRow(
                sha256=info.sha256,
                der=der,
                subject=info.subject,
                issuer=info.issuer,
                serial=info.serial,
                not_before=info.not_before,
                not_after=info.not_after,
                first_seen=now,
                last_seen=now,
            )
        )
        s.flush()
    elif row.last_seen < now:
        row.last_seen = now


def _endpoint(s: Session, target_id: int, address: str, port: int) -> EndpointRow:
    row = s.scalar(
        select(EndpointRow).where(
            EndpointRow.target_id == target_id,
            EndpointRow.address == address,
            EndpointRow.port == port,
        )
    )
    if row is None:
        row = EndpointRow(target_id=target_id, address=address, port=port, chain=[], current=True)
        s.add(row)
        s.flush()
    return row


def endpoint_label(address: str, port: int) -> str:
    return host_port(address, port)


def cert_info(s: Session, sha256: str, position: int, now: datetime) -> CertInfo | None:
    row = s.get(CertificateRow, sha256)
    return None if row is None else describe(row.der, position, now)


def record_probe(
    s: Session, mt: MonitoredTarget, result: TargetResult, now: datetime, duration_ms: float | None
) -> ProbeOutcome:
    """Store one probe of ``mt``: certificates (deduplicated), endpoints, a probe summary,
    the target's state and its current findings (with CERT_CHANGED detected here)."""
    t = target_row(s, mt.key)
    failed = (
        result.error is not None
        or not result.endpoints
        or any(e.error is not None for e in result.endpoints)
    )
    change_findings: list[tuple[str, Finding]] = []
    seen: set[int] = set()
    for e in result.endpoints:
        ep = _endpoint(s, t.id, e.address, e.port)
        seen.add(ep.id)
        ep.current = True
        ep.last_probe_at = now
        ep.status = str(e.status)
        ep.error_code = e.error.code.value if e.error else None
        ep.error_message = e.error.describe() if e.error else None
        chain = e.observation.chain
        if not chain:
            continue
        infos = (
            e.chain
            if len(e.chain) == len(chain)
            else tuple(describe(der, i, now) for i, der in enumerate(chain))
        )
        for der, info in zip(chain, infos, strict=True):
            _upsert_certificate(s, der, info, now)
            link = s.scalar(
                select(EndpointCertificateRow).where(
                    EndpointCertificateRow.endpoint_id == ep.id,
                    EndpointCertificateRow.sha256 == info.sha256,
                )
            )
            if link is None:
                s.add(
                    EndpointCertificateRow(
                        endpoint_id=ep.id,
                        sha256=info.sha256,
                        position=info.position,
                        first_seen=now,
                        last_seen=now,
                    )
                )
            else:
                link.position = info.position
                link.last_seen = max(link.last_seen, now)
        new_leaf = infos[0]
        if ep.leaf_sha256 and ep.leaf_sha256 != new_leaf.sha256:
            old = cert_info(s, ep.leaf_sha256, 0, now)
            if old is not None:
                f = changes.cert_changed(endpoint_label(e.address, e.port), old, new_leaf)
                if f is not None:
                    change_findings.append((endpoint_label(e.address, e.port), f))
        ep.leaf_sha256 = new_leaf.sha256
        ep.chain = [i.sha256 for i in infos]
        ep.tls = _tls_json(e.tls)
        ep.last_success_at = now
    if result.endpoints:
        # resolved, and these addresses were not among the answers: no longer served here
        for ep in s.scalars(select(EndpointRow).where(EndpointRow.target_id == t.id)):
            if ep.id not in seen:
                ep.current = False
    s.flush()

    t.consecutive_failures = (t.consecutive_failures + 1) if failed else 0
    t.failure_declared = t.consecutive_failures >= mt.failures_before_alert
    t.last_probe_at = now
    if not failed:
        t.last_success_at = now
    err = result.error or next((e.error for e in result.endpoints if e.error), None)
    t.last_error_code = err.code.value if err else None
    t.last_error_message = err.describe() if err else None

    if not failed:
        effective = result  # the live verdict: no need to re-judge the stored chains
    elif not t.failure_declared:
        # not declared yet: keep judging the last good chains
        effective = reevaluate_result(s, mt, now)
    else:
        effective = _merge(result, reevaluate_result(s, mt, now))
    _apply(s, t, mt, effective, now, change_findings)
    s.add(_probe_row(t.id, result, now, duration_ms, "probe", change_findings))
    return ProbeOutcome(failed, t.consecutive_failures, t.failure_declared, Status(t.status))


def _merge(live: TargetResult, offline: TargetResult) -> TargetResult:
    """A declared failure: the failure's findings plus what the stored chains still say."""
    status = Status.worst([live.status, offline.status])
    findings = tuple(live.findings) + tuple(offline.findings)
    endpoints = tuple(live.endpoints) + tuple(
        e
        for e in offline.endpoints
        if (e.address, e.port) not in {(x.address, x.port) for x in live.endpoints if not x.error}
    )
    return TargetResult(
        target=live.target,
        protocol=live.protocol,
        tls_mode=live.tls_mode,
        status=status,
        checked_at=live.checked_at,
        endpoints=endpoints,
        findings=findings,
        days_left=offline.days_left,
        earliest_expiry=offline.earliest_expiry,
        error=live.error,
    )


def _probe_row(
    target_id: int,
    result: TargetResult,
    now: datetime,
    duration_ms: float | None,
    source: str,
    change_findings: Iterable[tuple[str, Finding]] = (),
) -> ProbeRow:
    err = result.error or next((e.error for e in result.endpoints if e.error), None)
    leaf = _leaf(result.endpoints)
    summary = {
        "endpoints": [
            {
                "address": e.address,
                "port": e.port,
                "status": str(e.status),
                "error": None
                if e.error is None
                else {"code": e.error.code.value, "message": e.error.describe()},
                "tls": _tls_json(e.tls),
                "chain": [c.sha256 for c in e.chain],
                "timings_ms": {
                    "dns": e.timings.dns,
                    "connect": e.timings.connect,
                    "upgrade": e.timings.upgrade,
                    "handshake": e.timings.handshake,
                },
            }
            for e in result.endpoints
        ],
        "findings": [
            {"code": f.code, "severity": severity_name(f), "message": f.message, "endpoint": ep}
            for ep, f in [
                *(("", f) for f in result.findings),
                *_endpoint_findings(result),
                *change_findings,
            ]
        ],
    }
    return ProbeRow(
        target_id=target_id,
        checked_at=now,
        source=source,
        status=str(result.status),
        days_left=result.days_left,
        leaf_sha256=leaf.sha256 if leaf else None,
        error_code=err.code.value if err else None,
        error_message=err.describe() if err else None,
        duration_ms=duration_ms,
        summary=summary,
    )


def _endpoint_findings(result: TargetResult) -> list[tuple[str, Finding]]:
    return [(endpoint_label(e.address, e.port), f) for e in result.endpoints for f in e.findings]


def _leaf(endpoints: Iterable[EndpointResult]) -> CertInfo | None:
    """The leaf that expires first among the endpoints (the one that matters)."""
    leaves = [e.chain[0] for e in endpoints if e.chain and e.chain[0].not_after is not None]
    return min(leaves, key=lambda c: c.not_after or datetime.max, default=None)


def _apply(
    s: Session,
    t: TargetRow,
    mt: MonitoredTarget,
    result: TargetResult,
    now: datetime,
    extra: Sequence[tuple[str, Finding]] = (),
) -> None:
    """Set the target's judged state and replace its current findings."""
    wanted: dict[tuple[str, str], Finding] = {}
    for f in result.findings:
        wanted.setdefault(("", f.code), f)
    for ep, f in _endpoint_findings(result):
        wanted.setdefault((ep, f.code), f)
    for ep, f in extra:
        wanted.setdefault((ep, f.code), f)
    # what only the daemon can see: several endpoints at once (RENEWAL_OVERDUE and the rest
    # of a chain's verdict come from tlswatch.analysis, as for the CLI)
    leaves = {
        endpoint_label(e.address, e.port): e.chain[0]
        for e in result.endpoints
        if e.chain and e.error is None
    }
    if all(code != "ENDPOINTS_DISAGREE" for _, code in wanted):
        disagree = changes.endpoints_disagree(leaves)
        if disagree is not None:
            wanted[("", disagree.code)] = disagree
    status = Status.worst(
        [result.status, *(f.severity for f in wanted.values() if f.severity is not Status.OK)]
    )
    if not result.endpoints and result.error is None:
        status = Status.UNKNOWN
    t.status = str(status)
    leaf = _leaf(result.endpoints)
    t.leaf_sha256 = leaf.sha256 if leaf else t.leaf_sha256
    t.not_after = leaf.not_after if leaf else t.not_after
    t.days_left = (
        result.days_left
        if result.days_left is not None
        else (round((t.not_after - now).total_seconds() / 86400, 2) if t.not_after else None)
    )
    t.evaluated_at = now
    existing = {
        (r.endpoint, r.code): r
        for r in s.scalars(select(FindingRow).where(FindingRow.target_id == t.id))
    }
    for k, row in existing.items():
        if k not in wanted:
            s.delete(row)
    for (ep, code), f in wanted.items():
        found = existing.get((ep, code))
        if found is None:
            s.add(
                FindingRow(
                    target_id=t.id,
                    endpoint=ep,
                    code=code,
                    severity=severity_name(f),
                    message=f.message,
                    first_seen=now,
                    last_seen=now,
                )
            )
        else:
            found.severity = severity_name(f)
            found.message = f.message
            found.last_seen = now
    s.flush()


# -- offline re-evaluation ----------------------------------------------------------------


def stored_observations(s: Session, target_id: int) -> list[Observation]:
    """The last chain each current endpoint served, as Observations (no network)."""
    out = []
    for ep in s.scalars(
        select(EndpointRow)
        .where(EndpointRow.target_id == target_id, EndpointRow.current.is_(True))
        .order_by(EndpointRow.id)
    ):
        if not ep.chain:
            continue
        ders = []
        for sha in ep.chain:
            row = s.get(CertificateRow, sha)
            if row is not None:
                ders.append(row.der)
        tls = ep.tls or None
        out.append(
            Observation(
                address=ep.address,
                port=ep.port,
                chain=tuple(ders),
                tls=TLSInfo(tls["version"], tls["cipher"], tls.get("alpn")) if tls else None,
            )
        )
    return out


def reevaluate_result(s: Session, mt: MonitoredTarget, now: datetime) -> TargetResult:
    t = target_row(s, mt.key)
    return evaluate_target(mt.target, stored_observations(s, t.id), now, None)


def reevaluate(s: Session, mt: MonitoredTarget, now: datetime) -> Status:
    """Judge ``mt``'s stored chains at ``now`` without the network (the daily pass), so
    days left, findings and status advance while a server is unreachable."""
    t = target_row(s, mt.key)
    offline = reevaluate_result(s, mt, now)
    if not offline.endpoints:
        return Status(t.status)
    if t.failure_declared:
        offline = TargetResult(
            target=offline.target,
            protocol=offline.protocol,
            tls_mode=offline.tls_mode,
            status=Status.worst([offline.status, Status.UNKNOWN]),
            checked_at=now,
            endpoints=offline.endpoints,
            findings=(
                *offline.findings,
                Finding(
                    (t.last_error_code or "unknown").upper(),
                    Status.UNKNOWN,
                    t.last_error_message or "probe failing",
                ),
            ),
            days_left=offline.days_left,
            earliest_expiry=offline.earliest_expiry,
        )
    _apply(s, t, mt, offline, now)
    s.add(_probe_row(t.id, offline, now, None, "reevaluate"))
    return Status(t.status)


# -- meta, retention ----------------------------------------------------------------------


def get_meta(s: Session, key: str) -> str | None:
    row = s.get(MetaRow, key)
    return row.value if row else None


def set_meta(s: Session, key: str, value: str) -> None:
    row = s.get(MetaRow, key)
    if row is None:
        s.add(MetaRow(key=key, value=value))
    else:
        row.value = value


def purge_probes(s: Session, older_than: datetime) -> int:
    res = s.execute(delete(ProbeRow).where(ProbeRow.checked_at < older_than))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


# -- silences -----------------------------------------------------------------------------


def add_silence(
    s: Session,
    *,
    target: str | None,
    fingerprint: str | None,
    until: datetime,
    reason: str,
    now: datetime,
    source: str = "cli",
) -> SilenceRow:
    row = SilenceRow(
        target=target,
        fingerprint=fingerprint,
        until=until,
        reason=reason,
        created_at=now,
        source=source,
    )
    s.add(row)
    s.flush()
    return row


def sync_config_silences(s: Session, entries: Iterable[Any], now: datetime) -> None:
    """Silences from the config file replace the previous config silences (CLI ones stay)."""
    s.execute(delete(SilenceRow).where(SilenceRow.source == "config"))
    for e in entries:
        add_silence(
            s,
            target=e.match.target,
            fingerprint=e.match.fingerprint.lower() if e.match.fingerprint else None,
            until=e.until,
            reason=e.reason,
            now=now,
            source="config",
        )


def active_silences(s: Session, now: datetime) -> list[SilenceRow]:
    return list(s.scalars(select(SilenceRow).where(SilenceRow.until > now).order_by(SilenceRow.id)))


def list_silences(s: Session) -> list[SilenceRow]:
    return list(s.scalars(select(SilenceRow).order_by(SilenceRow.id)))


def remove_silence(s: Session, silence_id: int) -> bool:
    res = s.execute(delete(SilenceRow).where(SilenceRow.id == silence_id))
    return bool(res.rowcount)  # type: ignore[attr-defined]


# -- read models --------------------------------------------------------------------------


def current_endpoints(
    s: Session, host_of: dict[str, str]
) -> dict[tuple[str, str, int], tuple[Endpoint, str | None]]:
    """Every current endpoint of every active target → (endpoint, leaf SHA-256)."""
    rows = s.execute(
        select(
            TargetRow.key,
            EndpointRow.address,
            EndpointRow.port,
            EndpointRow.leaf_sha256,
        )
        .join(EndpointRow, EndpointRow.target_id == TargetRow.id)
        .where(TargetRow.active.is_(True), EndpointRow.current.is_(True))
        .order_by(TargetRow.key, EndpointRow.address, EndpointRow.port)
    )
    out = {}
    for key, address, port, leaf in rows:
        out[(key, address, port)] = (Endpoint(key, host_of.get(key, address), address, port), leaf)
    return out


def certificates_by_sha(s: Session, shas: Iterable[str]) -> dict[str, CertificateRow]:
    wanted = list(set(shas))
    if not wanted:
        return {}
    return {
        r.sha256: r
        for r in s.scalars(select(CertificateRow).where(CertificateRow.sha256.in_(wanted)))
    }


def findings_by_target(s: Session) -> dict[str, list[FindingRow]]:
    out: dict[str, list[FindingRow]] = defaultdict(list)
    rows = s.execute(
        select(TargetRow.key, FindingRow)
        .join(FindingRow, FindingRow.target_id == TargetRow.id)
        .where(TargetRow.active.is_(True))
    )
    for key, f in rows:
        out[key].append(f)
    return out


def active_targets(s: Session) -> list[TargetRow]:
    return list(
        s.scalars(select(TargetRow).where(TargetRow.active.is_(True)).order_by(TargetRow.key))
    )


def history(s: Session, target: str, limit: int) -> tuple[TargetRow, list[ProbeRow]] | None:
    t = s.scalar(
        select(TargetRow).where(
            (TargetRow.key == target) | (TargetRow.name == target) | (TargetRow.url == target)
        )
    )
    if t is None:
        return None
    probes = list(
        s.scalars(
            select(ProbeRow)
            .where(ProbeRow.target_id == t.id)
            .order_by(ProbeRow.checked_at.desc(), ProbeRow.id.desc())
            .limit(limit)
        )
    )
    return t, probes


def inventory(
    s: Session,
) -> list[tuple[CertificateRow, list[tuple[str, str, int, datetime, datetime, bool]]]]:
    """Every certificate seen as a leaf, with the endpoints that served it:
    (target key, address, port, first seen, last seen, serving now)."""
    rows = s.execute(
        select(
            CertificateRow,
            TargetRow.key,
            EndpointRow.address,
            EndpointRow.port,
            EndpointCertificateRow,
            EndpointRow.leaf_sha256,
            EndpointRow.current,
        )
        .join(EndpointCertificateRow, EndpointCertificateRow.sha256 == CertificateRow.sha256)
        .join(EndpointRow, EndpointRow.id == EndpointCertificateRow.endpoint_id)
        .join(TargetRow, TargetRow.id == EndpointRow.target_id)
        .where(EndpointCertificateRow.position == 0)
    )
    grouped: dict[
        str, tuple[CertificateRow, list[tuple[str, str, int, datetime, datetime, bool]]]
    ] = {}
    for cert, key, address, port, link, leaf, current in rows:
        entry = grouped.setdefault(cert.sha256, (cert, []))
        entry[1].append(
            (
                key,
                address,
                port,
                link.first_seen,
                link.last_seen,
                bool(current and leaf == cert.sha256),
            )
        )
    return sorted(
        grouped.values(), key=lambda x: (x[0].not_after is None, x[0].not_after or datetime.max)
    )
