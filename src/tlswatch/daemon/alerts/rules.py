"""Alert rules (pure): a snapshot of what the store knows + the time → decisions.

Alerts are keyed on stable things so they survive restarts and re-evaluation:

``cert:<sha256>``            expiry of one leaf certificate, wherever it is served
                              (certificate-centric: one alert lists every endpoint)
``failure:<target>``         probes of a target failing (after N consecutive failures)
``finding:<CODE>:<ref>``     any other warning/critical finding; ref = leaf SHA-256 when
                              the finding is about a certificate, else the target

Expiry: one notification per threshold crossing. The level is the smallest configured
threshold (days) at or above the days left, or 0 once expired; a notification goes out when
the level drops below the last notified one (a jump over several thresholds at once is one
notification, for the lowest). Severity escalates: critical at or below the target's
``crit`` threshold, warning at or below ``warn``, else info. A leaf that is no longer served
by the endpoints that served it — they now serve another certificate — resolves the alert
with one recovery notice naming the old and the new certificates. Unresolved criticals are
repeated every ``repeat``.

Every decision carries an idempotency key derived from the alert key and the event, so
re-running the rules on the same state can never queue a notification twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tlswatch.analysis.policy import Threshold, effective_thresholds

#: findings that the expiry alert (certificate-centric) or the failure alert already covers
COVERED_BY_EXPIRY = frozenset({"CERT_EXPIRES_SOON", "CERT_EXPIRED", "RENEWAL_OVERDUE"})
#: findings that are events (true for one probe), not conditions: no recovery notice
EVENT_FINDINGS = frozenset({"CERT_CHANGED"})
SEVERITY_RANK = {"ok": 0, "info": 1, "warning": 2, "critical": 3}


@dataclass(frozen=True)
class TargetMeta:
    key: str
    name: str
    host: str
    owner: str | None = None
    group: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    warn: str | None = "30d"  # None: the default for the certificate's lifetime
    crit: str | None = "7d"


@dataclass(frozen=True)
class Endpoint:
    target_key: str
    host: str
    address: str
    port: int

    @property
    def label(self) -> str:
        return host_port(self.host, self.port)


def host_port(host: str, port: int | str) -> str:
    """``host:port``, with an IPv6 address in brackets (RFC 3986 §3.2.2)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class CertFacts:
    sha256: str
    subject: str
    issuer: str
    not_before: datetime | None
    not_after: datetime | None


@dataclass(frozen=True)
class FailureFacts:
    declared: bool
    code: str | None
    message: str | None
    consecutive: int


@dataclass(frozen=True)
class FindingFact:
    target_key: str
    endpoint: str  # "" = the target
    code: str
    severity: str
    message: str
    fingerprint: str | None


@dataclass(frozen=True)
class AlertState:
    key: str
    kind: str
    ref: str
    severity: str
    step: int | None
    opened_at: datetime
    last_notified_at: datetime | None
    notify_count: int
    resolved_at: datetime | None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True)
class Snapshot:
    now: datetime
    targets: Mapping[str, TargetMeta]
    #: (target key, address, port) -> (endpoint, its current leaf SHA-256 or None)
    endpoints: Mapping[tuple[str, str, int], tuple[Endpoint, str | None]]
    certs: Mapping[str, CertFacts]
    failures: Mapping[str, FailureFacts]
    findings: Sequence[FindingFact]
    states: Mapping[str, AlertState]


@dataclass(frozen=True)
class Notification:
    kind: (
        str  # expiry | repeat | renewed | failure | failure_recovered | finding | finding_resolved
    )
    severity: str  # info | warning | critical | ok (a recovery)
    facts: Mapping[str, Any]
    targets: tuple[str, ...]  # keys of the targets involved (routing, silences)
    fingerprint: str | None = None


@dataclass(frozen=True)
class Decision:
    key: str
    kind: str
    ref: str
    action: str  # open | update | resolve
    severity: str
    event: str  # part of the idempotency key: unique per notification of this alert
    step: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    notification: Notification | None = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.key}:{self.event}"


# -- thresholds ---------------------------------------------------------------------------


def threshold_days(meta: TargetMeta | None, cert: CertFacts) -> tuple[float, float]:
    """The (warn, crit) thresholds of ``meta`` for ``cert``, in days left: parsed and
    defaulted by :mod:`tlswatch.analysis.policy`, exactly as the probe's verdict does, so a
    ``33%`` alert and the ``CERT_EXPIRES_SOON`` finding agree."""
    life: float | None = None
    if cert.not_before is not None and cert.not_after is not None:
        life = (cert.not_after - cert.not_before).total_seconds() / 86400
    warn, crit = effective_thresholds(
        Threshold.parse(meta.warn) if meta and meta.warn else None,
        Threshold.parse(meta.crit) if meta and meta.crit else None,
        math.inf if life is None else life,  # unknown lifetime: the day-based defaults
    )
    # unknown lifetime: a percentage threshold never fires early
    return warn.days(life or 0.0), crit.days(life or 0.0)


def days_left(cert: CertFacts, now: datetime) -> float | None:
    if cert.not_after is None:
        return None
    return (cert.not_after - now).total_seconds() / 86400


def level_for(days: float, thresholds: Sequence[int]) -> int | None:
    if days <= 0:
        return 0
    crossed = [t for t in thresholds if days <= t]
    return min(crossed) if crossed else None


def severity_for(level: int, cert: CertFacts, metas: Sequence[TargetMeta]) -> str:
    if level == 0:
        return "critical"
    limits = [threshold_days(m, cert) for m in metas] or [threshold_days(None, cert)]
    warn = max(w for w, _ in limits)
    crit = max(c for _, c in limits)
    if level <= crit:
        return "critical"
    if level <= warn:
        return "warning"
    return "info"


def _repeat_due(state: AlertState, now: datetime, repeat: timedelta | None) -> bool:
    return (
        repeat is not None
        and state.open
        and state.severity == "critical"
        and state.last_notified_at is not None
        and now - state.last_notified_at >= repeat
    )


def _next_step(days: float, level: int) -> str:
    if level == 0:
        return (
            "The certificate has expired: clients are failing now. Install a renewed "
            "certificate and reload every service listed above."
        )
    if days <= 7:
        return "Renew the certificate now and reload every service listed above."
    return "Plan the renewal: renew the certificate and reload every service listed above."


# -- rules --------------------------------------------------------------------------------


def evaluate(
    snap: Snapshot, thresholds: Sequence[int], repeat: timedelta | None, recovery: bool
) -> list[Decision]:
    out: list[Decision] = []
    out += _expiry(snap, thresholds, repeat, recovery)
    out += _failures(snap, repeat, recovery)
    out += _findings(snap, repeat, recovery)
    return out


def _cert_facts(cert: CertFacts, now: datetime, endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    d = days_left(cert, now)
    return {
        "fingerprint": cert.sha256,
        "subject": cert.subject,
        "issuer": cert.issuer,
        "not_after": cert.not_after.isoformat() if cert.not_after else None,
        "days_left": None if d is None else round(d, 1),
        "endpoints": sorted({e.label for e in endpoints}),
        "targets": sorted({e.target_key for e in endpoints}),
    }


def _expiry(
    snap: Snapshot, thresholds: Sequence[int], repeat: timedelta | None, recovery: bool
) -> list[Decision]:
    out: list[Decision] = []
    serving: dict[str, list[Endpoint]] = {}
    for ep, leaf in snap.endpoints.values():
        if leaf is not None:
            serving.setdefault(leaf, []).append(ep)
    for fp, eps in sorted(serving.items()):
        cert = snap.certs.get(fp)
        if cert is None or cert.not_after is None:
            continue
        key = f"cert:{fp}"
        state = snap.states.get(key)
        d = days_left(cert, snap.now)
        assert d is not None
        level = level_for(d, thresholds)
        metas = [snap.targets[k] for k in sorted({e.target_key for e in eps}) if k in snap.targets]
        facts = _cert_facts(cert, snap.now, eps)
        data = {"endpoints": [[e.target_key, e.address, e.port] for e in eps]}
        if level is None:
            if state is not None and state.open:  # thresholds were raised: nothing left to say
                out.append(
                    Decision(key, "expiry", fp, "resolve", state.severity, "quiet", data=data)
                )
            continue
        severity = severity_for(level, cert, metas)
        code = "CERT_EXPIRED" if level == 0 else "CERT_EXPIRES_SOON"
        facts |= {"step": level, "finding": code, "next_step": _next_step(d, level)}
        targets = tuple(m.key for m in metas)
        if state is None or not state.open or state.step is None or level < state.step:
            out.append(
                Decision(
                    key,
                    "expiry",
                    fp,
                    "open" if state is None or not state.open else "update",
                    severity,
                    f"expiry:{level}",
                    step=level,
                    data=data,
                    notification=Notification("expiry", severity, facts, targets, fp),
                )
            )
        elif _repeat_due(state, snap.now, repeat):
            out.append(
                Decision(
                    key,
                    "expiry",
                    fp,
                    "update",
                    state.severity,
                    f"repeat:{state.notify_count}",
                    step=state.step,
                    data=data,
                    notification=Notification("repeat", state.severity, facts, targets, fp),
                )
            )
        elif [list(x) for x in state.data.get("endpoints", [])] != data["endpoints"]:
            out.append(
                Decision(
                    key,
                    "expiry",
                    fp,
                    "update",
                    state.severity,
                    "endpoints",
                    step=state.step,
                    data=data,
                )
            )
    # recoveries: an open alert whose certificate nobody serves any more
    for key, state in sorted(snap.states.items()):
        if state.kind != "expiry" or not state.open or state.ref in serving:
            continue
        old = snap.certs.get(state.ref)
        was = [tuple(x) for x in state.data.get("endpoints", [])]
        now_serving = {
            (k, a, p): snap.endpoints[(k, a, p)] for (k, a, p) in was if (k, a, p) in snap.endpoints
        }
        replaced = {leaf for _, leaf in now_serving.values() if leaf and leaf != state.ref}
        if not replaced or old is None:
            # the endpoints are gone (target removed, names moved away): close quietly
            out.append(
                Decision(key, "expiry", state.ref, "resolve", "ok", "gone", data=dict(state.data))
            )
            continue
        eps = [ep for ep, _ in now_serving.values()]
        news = [snap.certs[f] for f in sorted(replaced) if f in snap.certs]
        facts = _cert_facts(old, snap.now, eps) | {
            "old_fingerprint": old.sha256,
            "old_not_after": old.not_after.isoformat() if old.not_after else None,
            "new": [
                {
                    "fingerprint": n.sha256,
                    "not_after": n.not_after.isoformat() if n.not_after else None,
                    "subject": n.subject,
                    "issuer": n.issuer,
                }
                for n in news
            ],
            "finding": "CERT_CHANGED",
            "next_step": "Nothing to do: the certificate was replaced.",
        }
        note = Notification(
            "renewed", "ok", facts, tuple(sorted({e.target_key for e in eps})), old.sha256
        )
        out.append(
            Decision(
                key,
                "expiry",
                state.ref,
                "resolve",
                "ok",
                "recovered",
                data=dict(state.data),
                notification=note if recovery else None,
            )
        )
    return out


def _failures(snap: Snapshot, repeat: timedelta | None, recovery: bool) -> list[Decision]:
    out: list[Decision] = []
    for tkey, f in sorted(snap.failures.items()):
        meta = snap.targets.get(tkey)
        if meta is None:
            continue
        key = f"failure:{tkey}"
        state = snap.states.get(key)
        facts = {
            "target": tkey,
            "name": meta.name,
            "code": f.code,
            "message": f.message,
            "consecutive": f.consecutive,
            "endpoints": sorted(
                {ep.label for ep, _ in snap.endpoints.values() if ep.target_key == tkey}
            ),
            "finding": (f.code or "unknown").upper(),
        }
        if f.declared:
            if state is None or not state.open:
                n = 0 if state is None else int(state.data.get("incident", 0)) + 1
                facts["next_step"] = _failure_step(f.code)
                out.append(
                    Decision(
                        key,
                        "failure",
                        tkey,
                        "open",
                        "critical",
                        f"open:{n}",
                        data={"incident": n},
                        notification=Notification("failure", "critical", facts, (tkey,)),
                    )
                )
            elif _repeat_due(state, snap.now, repeat):
                facts["next_step"] = _failure_step(f.code)
                out.append(
                    Decision(
                        key,
                        "failure",
                        tkey,
                        "update",
                        "critical",
                        f"open:{state.data.get('incident', 0)}:repeat:{state.notify_count}",
                        data=dict(state.data),
                        notification=Notification("repeat", "critical", facts, (tkey,)),
                    )
                )
        elif state is not None and state.open:
            facts["next_step"] = "Nothing to do: the probe works again."
            facts["finding"] = "PROBE_RECOVERED"
            out.append(
                Decision(
                    key,
                    "failure",
                    tkey,
                    "resolve",
                    "ok",
                    f"recovered:{state.data.get('incident', 0)}",
                    data=dict(state.data),
                    notification=Notification("failure_recovered", "ok", facts, (tkey,))
                    if recovery
                    else None,
                )
            )
    # targets removed from the config: close their failure alerts quietly
    for key, state in snap.states.items():
        if state.kind == "failure" and state.open and state.ref not in snap.targets:
            out.append(
                Decision(key, "failure", state.ref, "resolve", "ok", "gone", data=dict(state.data))
            )
    return out


def _failure_step(code: str | None) -> str:
    hints = {
        "dns": "Check that the name still resolves (DNS records, resolver).",
        "connect_refused": "Check that the service is running and listening on this port.",
        "connect_timeout": "Check the firewall and routing between tlswatch and the service.",
        "upgrade_not_offered": "The server no longer offers STARTTLS: check its TLS configuration.",
        "upgrade_refused": "The server refused STARTTLS: check its TLS configuration and logs.",
        "tls_alert": "The server aborted the handshake: check its certificate and TLS settings.",
        "tls_error": "The handshake failed: check the server's TLS versions, ciphers and certificate.",
        "handshake_timeout": "The server stalls in the TLS handshake: check its load and TLS settings.",
    }
    return hints.get(code or "", "Check the service and its logs.")


def _findings(snap: Snapshot, repeat: timedelta | None, recovery: bool) -> list[Decision]:
    out: list[Decision] = []
    groups: dict[str, list[FindingFact]] = {}
    for f in snap.findings:
        if f.severity not in ("warning", "critical") or f.code in COVERED_BY_EXPIRY:
            continue
        if f.target_key in snap.failures and f.code.lower() == (
            snap.failures[f.target_key].code or ""
        ):
            continue  # a probe failure class: the failure alert covers it
        ref = f.fingerprint or f.target_key
        groups.setdefault(f"finding:{f.code}:{ref}", []).append(f)
    for key, items in sorted(groups.items()):
        state = snap.states.get(key)
        severity = max((i.severity for i in items), key=lambda s: SEVERITY_RANK[s])
        code = items[0].code
        eps = _finding_endpoints(snap, items)
        facts: dict[str, Any] = {
            "finding": code,
            "severity": severity,
            "messages": sorted({i.message for i in items}),
            "fingerprint": items[0].fingerprint,
            "endpoints": eps,
            "targets": sorted({i.target_key for i in items}),
            "next_step": _finding_step(code),
        }
        cert = snap.certs.get(items[0].fingerprint or "")
        if cert is not None:
            facts |= _cert_facts(cert, snap.now, []) | {
                "endpoints": eps,
                "targets": facts["targets"],
            }
        targets = tuple(facts["targets"])
        ref = key.split(":", 2)[2]
        if state is None or not state.open:
            n = 0 if state is None else int(state.data.get("incident", 0)) + 1
            out.append(
                Decision(
                    key,
                    "finding",
                    ref,
                    "open",
                    severity,
                    f"open:{n}",
                    data={"incident": n},
                    notification=Notification(
                        "finding", severity, facts, targets, items[0].fingerprint
                    ),
                )
            )
        elif SEVERITY_RANK[severity] > SEVERITY_RANK[state.severity]:
            n = int(state.data.get("incident", 0))
            out.append(
                Decision(
                    key,
                    "finding",
                    ref,
                    "update",
                    severity,
                    f"open:{n}:{severity}",
                    data=dict(state.data),
                    notification=Notification(
                        "finding", severity, facts, targets, items[0].fingerprint
                    ),
                )
            )
        elif _repeat_due(state, snap.now, repeat):
            n = int(state.data.get("incident", 0))
            out.append(
                Decision(
                    key,
                    "finding",
                    ref,
                    "update",
                    state.severity,
                    f"open:{n}:repeat:{state.notify_count}",
                    data=dict(state.data),
                    notification=Notification(
                        "repeat", state.severity, facts, targets, items[0].fingerprint
                    ),
                )
            )
    for key, state in sorted(snap.states.items()):
        if state.kind != "finding" or not state.open or key in groups:
            continue
        code = key.split(":", 2)[1]
        n = int(state.data.get("incident", 0))
        note = None
        if (
            recovery
            and code not in EVENT_FINDINGS
            and (state.ref in snap.certs or state.ref in snap.targets)
        ):
            done: dict[str, Any] = {
                "finding": code,
                "ref": state.ref,
                "next_step": "Nothing to do: the finding is resolved.",
                "endpoints": list(state.data.get("endpoints", [])),
                "targets": [state.ref] if state.ref in snap.targets else [],
            }
            note = Notification(
                "finding_resolved",
                "ok",
                done,
                tuple(done["targets"]),
                None if state.ref in snap.targets else state.ref,
            )
        out.append(
            Decision(
                key,
                "finding",
                state.ref,
                "resolve",
                "ok",
                f"resolved:{n}",
                data=dict(state.data),
                notification=note,
            )
        )
    return out


def _finding_endpoints(snap: Snapshot, items: Sequence[FindingFact]) -> list[str]:
    out: set[str] = set()
    for i in items:
        host = snap.targets[i.target_key].host if i.target_key in snap.targets else ""
        if i.endpoint:
            out.add(host_port(host, i.endpoint.rsplit(":", 1)[1]))
        else:
            out |= {ep.label for ep, _ in snap.endpoints.values() if ep.target_key == i.target_key}
    return sorted(out)


def _finding_step(code: str) -> str:
    hints = {
        "CERT_CHANGED": "Confirm the new certificate was deployed on purpose (issuer, key, expiry).",
        "ENDPOINTS_DISAGREE": "Deploy the same certificate on every address of this name.",
        "HOSTNAME_MISMATCH": "Issue a certificate whose SAN covers this name, or fix the name clients use.",
        "CHAIN_INCOMPLETE": "Configure the server to send the intermediate certificate(s).",
        "CHAIN_UNTRUSTED": "Use a certificate from a trusted CA, or add the CA with ca= if it is internal.",
        "SELF_SIGNED": "Replace the self-signed certificate with one from a trusted CA.",
        "WEAK_KEY": "Reissue the certificate with a stronger key (RSA 2048+ or ECDSA P-256+).",
        "WEAK_SIGNATURE": "Reissue the certificate with a SHA-256 (or better) signature.",
        "LEGACY_TLS_VERSION": "Disable TLS 1.0/1.1 on the server.",
        "CHAIN_CERT_EXPIRES_SOON": "Get the current intermediate from your CA and deploy it.",
        "CHAIN_CERT_EXPIRED": "Replace the expired intermediate in the served chain.",
        "REVOKED": "Replace the revoked certificate now.",
    }
    return hints.get(code, "Review the finding and the server's TLS configuration.")
