"""Observations + check time + policy in, results out (pure; no network).

For each endpoint: the chain's facts (:mod:`tlswatch.x509.certinfo`), the verification
verdict (:mod:`tlswatch.x509.verify`), then every finding of PRODUCT.md §3 that one probe
can show, each with a severity and a message naming the certificate. The endpoint's status
is its worst finding; the target's is its worst endpoint (or target-level finding).

Nothing here raises for anything a server sent: unparsable certificates, garbage AIA or
OCSP bytes and odd keys all become findings.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from tlswatch.analysis.findings import FAILURE_SEVERITY
from tlswatch.analysis.policy import Policy, Threshold, policy_for
from tlswatch.errors import Failure
from tlswatch.model import (
    EndpointResult,
    Fetched,
    Finding,
    Observation,
    Status,
    TargetResult,
    Verification,
)
from tlswatch.targets import Target
from tlswatch.x509 import aia, ocsp
from tlswatch.x509.certinfo import describe, load, sha256_hex
from tlswatch.x509.verify import ChainVerdict, PathCert, label, name_text, verify_chain

SECONDS_PER_DAY = 86400.0
LEGACY_TLS_VERSIONS = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.0", "TLSv1.1"})
#: certificates this short-lived are renewed by automation; past 2/3 of their life means
#: the automation has stopped (RENEWAL_OVERDUE is a warning), longer ones are informational
AUTOMATED_LIFETIME_DAYS = 100.0
RENEWAL_SHARE = 2.0 / 3.0


def failure_finding(failure: Failure) -> Finding:
    return Finding(failure.code.value.upper(), FAILURE_SEVERITY[failure.code], failure.describe())


def _days(delta_seconds: float) -> float:
    return delta_seconds / SECONDS_PER_DAY


def _lifetime_days(pc: PathCert) -> float:
    return _days((pc.not_after - pc.not_before).total_seconds())


def _fmt_days(d: float) -> str:
    return f"{d:.1f} day" + ("" if abs(d - 1.0) < 0.05 else "s")


class _Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []

    def add(self, code: str, severity: Status, message: str) -> None:
        self.items.append(Finding(code, severity, message))

    def sorted(self) -> tuple[Finding, ...]:
        return tuple(sorted(self.items, key=lambda f: -f.severity.rank))


def _expiry_findings(
    out: _Findings, pc: PathCert, now: datetime, policy: Policy, leaf_lifetime: float, leaf: bool
) -> None:
    not_after = pc.not_after
    left = _days((not_after - now).total_seconds())
    if leaf:
        if left < 0:
            out.add(
                "CERT_EXPIRED",
                Status.CRITICAL,
                f"{pc.label} expired on {not_after:%Y-%m-%d %H:%M}Z ({_fmt_days(-left)} ago)",
            )
            return
        if now < pc.not_before:
            out.add(
                "CERT_NOT_YET_VALID",
                Status.CRITICAL,
                f"{pc.label} is not valid before {pc.not_before:%Y-%m-%d %H:%M}Z",
            )
            return
        lifetime = _lifetime_days(pc)
        warn, crit = policy.thresholds(lifetime)
        _soon(out, "CERT_EXPIRES_SOON", pc, left, lifetime, warn, crit)
        elapsed = lifetime - left
        if lifetime > 0 and elapsed > RENEWAL_SHARE * lifetime:
            automated = lifetime <= AUTOMATED_LIFETIME_DAYS
            out.add(
                "RENEWAL_OVERDUE",
                Status.WARNING if automated else Status.OK,
                f"{pc.label} is {elapsed / lifetime:.0%} through its {_fmt_days(lifetime)} "
                f"lifetime and has not been replaced"
                + (" (renewal automation normally renews at 2/3)" if automated else ""),
            )
        return
    where = (
        ""
        if pc.source == "sent"
        else f" (from the {'trust store' if pc.source == 'store' else 'AIA URL'})"
    )
    if left < 0:
        out.add(
            "CHAIN_CERT_EXPIRED",
            Status.CRITICAL,
            f"{pc.label}{where} expired on {not_after:%Y-%m-%d %H:%M}Z",
        )
        return
    # Percent thresholds are shares of the *leaf's* lifetime here: a 33% window of a
    # ten-year root would be three years of noise.
    warn, crit = policy.thresholds(leaf_lifetime)
    _soon(out, "CHAIN_CERT_EXPIRES_SOON", pc, left, leaf_lifetime, warn, crit, where)


def _soon(
    out: _Findings,
    code: str,
    pc: PathCert,
    left: float,
    lifetime: float,
    warn: Threshold,
    crit: Threshold,
    where: str = "",
) -> None:
    if left <= crit.days(lifetime):
        out.add(
            code,
            Status.CRITICAL,
            f"{pc.label}{where} expires in {_fmt_days(left)} (crit at {crit})",
        )
    elif left <= warn.days(lifetime):
        out.add(
            code, Status.WARNING, f"{pc.label}{where} expires in {_fmt_days(left)} (warn at {warn})"
        )


def _chain_order(
    out: _Findings, certs: Sequence[tuple[int, bytes, x509.Certificate | None]]
) -> None:
    """RFC 8446 §4.4.2 / RFC 5246 §7.4.2: each certificate should certify the one before
    it. TLS 1.3 clients tolerate disorder; many TLS 1.2 and older mail and database client
    libraries do not."""
    parsed = [(i, der, c) for i, der, c in certs if c is not None]
    if len(parsed) < 2:
        return
    seen: dict[bytes, int] = {}
    for i, der, _c in parsed:
        if der in seen:
            out.add(
                "CHAIN_ORDER", Status.WARNING, f"certificate #{i} is a duplicate of #{seen[der]}"
            )
            return
        seen[der] = i
    for (i, _d, prev), (j, _d2, cur) in itertools.pairwise(parsed):
        if prev.issuer == cur.subject:
            continue
        issuer_pos = next((k for k, _, c in parsed if c.subject == prev.issuer and k != i), None)
        if issuer_pos is not None:
            out.add(
                "CHAIN_ORDER",
                Status.WARNING,
                f"certificates are not in issuing order: the issuer of #{i} is #{issuer_pos}, "
                f"but #{j} '{name_text(cur.subject)}' follows it",
            )
        else:
            related = any(c.issuer == cur.subject for _, _, c in parsed if c is not cur)
            if not related:
                out.add(
                    "CHAIN_ORDER",
                    Status.WARNING,
                    f"certificate #{j} '{name_text(cur.subject)}' is not part of the chain of #0",
                )
            else:
                continue
        return


def _fetched_issuers(out: _Findings, fetched: Sequence[Fetched]) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for f in fetched:
        if f.kind != "ca_issuers":
            continue
        if f.data is None:
            out.add(
                "AIA_FETCH_FAILED",
                Status.WARNING,
                f"cannot fetch the issuer from {f.url}: {f.error or 'no data'}",
            )
            continue
        try:
            certs.extend(aia.parse_issuer_response(f.data))
        except ValueError as exc:
            out.add("AIA_FETCH_FAILED", Status.WARNING, f"{f.url} served {exc}")
    return certs


def _trust_findings(
    out: _Findings,
    sent: ChainVerdict,
    completed: ChainVerdict | None,
    policy: Policy,
    aia_url: str | None,
) -> None:
    judged = policy.anchors.judged
    sev = Status.CRITICAL if judged else Status.OK
    note = "" if judged else " (trust=none: not judged)"
    d = sent.defects
    if "unable_to_get_issuer" in d:
        if completed is not None:
            missing = [pc for pc in completed.path if pc.source == "fetched"]
            names = (
                ", ".join(f"'{name_text(pc.cert.subject)}'" for pc in missing) or "an intermediate"
            )
            out.add(
                "CHAIN_INCOMPLETE",
                sev,
                f"server omits the intermediate {names}: browsers may cope (they fetch it from "
                f"{aia_url or 'the AIA URL'}), mail and database clients will not{note}",
            )
        else:
            out.add("CHAIN_UNTRUSTED", sev, d["unable_to_get_issuer"] + note)
    if "self_signed" in d:
        out.add("SELF_SIGNED", sev, d["self_signed"] + note)
    elif sent.leaf_self_signed and sent.anchored:
        out.add(
            "SELF_SIGNED",
            Status.OK,
            f"{sent.path[0].label} is self-signed; trusted because it is one of the anchors",
        )
    if "self_signed_in_chain" in d:
        out.add("CHAIN_UNTRUSTED", sev, d["self_signed_in_chain"] + note)
    if "invalid" in d:
        out.add("CHAIN_UNTRUSTED", sev, f"the chain does not validate: {d['invalid']}{note}")
    if sent.anchored:
        # A non-root that the store supplied and the server did not send: this client
        # copes, clients with another store will not.
        supplied = [pc for pc in sent.path[1:] if pc.source == "store" and not pc.self_signed]
        if supplied:
            out.add(
                "CHAIN_INCOMPLETE",
                Status.WARNING,
                f"server omits the intermediate '{name_text(supplied[0].cert.subject)}'; it "
                "validates only because the local trust store holds it",
            )


def _ocsp_findings(
    out: _Findings, obs: Observation, leaf_pc: PathCert, path: Sequence[PathCert], now: datetime
) -> None:
    answers = [f for f in obs.fetched if f.kind == "ocsp" and f.subject_sha256 == leaf_pc.sha256]
    if not answers:
        out.add(
            "OCSP_ERROR",
            Status.OK,
            f"revocation of {leaf_pc.label} was not checked: no OCSP answer was collected",
        )
        return
    f = answers[-1]
    if f.data is None:
        nothing_to_ask = f.url == ""
        out.add(
            "OCSP_ERROR",
            Status.OK if nothing_to_ask else Status.WARNING,
            f"revocation of {leaf_pc.label} unknown: {f.error or 'no response'}"
            + ("" if nothing_to_ask else f" ({f.url})"),
        )
        return
    if len(path) < 2:
        out.add(
            "OCSP_ERROR",
            Status.WARNING,
            f"revocation of {leaf_pc.label} unknown: its issuer is not known",
        )
        return
    verdict = ocsp.judge_response(f.data, leaf_pc.cert, path[1].cert, now)
    if verdict.status == "revoked":
        out.add("REVOKED", Status.CRITICAL, f"{leaf_pc.label} is {verdict.message} (OCSP {f.url})")
    elif verdict.status in ("unknown", "error"):
        out.add(
            "OCSP_ERROR", Status.WARNING, f"OCSP {f.url} for {leaf_pc.label}: {verdict.message}"
        )


def evaluate_endpoint(
    target: Target, obs: Observation, now: datetime, policy: Policy | None = None
) -> EndpointResult:
    """Judge one endpoint's observation at ``now`` under ``policy`` (default: the
    target's own options)."""
    chain = tuple(describe(der, i, now) for i, der in enumerate(obs.chain))
    if obs.error is not None:
        f = failure_finding(obs.error)
        return EndpointResult(obs.address, obs.port, f.severity, obs, chain, None, (f,))
    policy = policy or policy_for(target)
    out = _Findings()
    for err in policy.anchors.errors:
        out.add("TRUST_STORE_ERROR", Status.UNKNOWN, err)
    for info in chain:
        if info.parse_error:
            out.add(
                "CERT_UNPARSABLE",
                Status.CRITICAL,
                f"certificate #{info.position} (sha256 {info.sha256[:16]}, "
                f"{len(obs.chain[info.position])} bytes) is not a valid DER X.509 certificate",
            )
    if obs.tls is not None and obs.tls.version in LEGACY_TLS_VERSIONS:
        out.add(
            "LEGACY_TLS_VERSION",
            Status.WARNING,
            f"the server negotiated {obs.tls.version}; TLS 1.2 is the minimum (RFC 8996)",
        )
    try:
        verification = _judge_chain(out, obs, now, policy)
    except Exception as exc:  # last line of defence: a finding, not a crash
        out.add(
            "CHAIN_UNTRUSTED",
            Status.CRITICAL,
            f"the chain could not be analysed: {type(exc).__name__}: {exc}",
        )
        verification = Verification("invalid", False, False, f"analysis failed: {exc}")
    findings = out.sorted()
    status = Status.worst([f.severity for f in findings]) if findings else Status.OK
    return EndpointResult(obs.address, obs.port, status, obs, chain, verification, findings)


def _judge_chain(out: _Findings, obs: Observation, now: datetime, policy: Policy) -> Verification:
    if not obs.chain:
        out.add("CHAIN_UNTRUSTED", Status.CRITICAL, "the server sent no certificate")
        return Verification("invalid", False, False, "server sent no certificate")
    sent = verify_chain(obs.chain, policy.anchors, policy.name, now)
    if not sent.path:
        # the leaf itself is unparsable: CERT_UNPARSABLE already says so
        return Verification(sent.code, False, False, sent.detail)
    fetched = _fetched_issuers(out, obs.fetched)
    completed: ChainVerdict | None = None
    if "unable_to_get_issuer" in sent.defects and fetched:
        again = verify_chain(obs.chain, policy.anchors, policy.name, now, fetched)
        if again.anchored and "unable_to_get_issuer" not in again.defects:
            completed = again
    aia_url = next((f.url for f in obs.fetched if f.kind == "ca_issuers" and f.data), None)
    judged = completed or sent
    path = judged.path
    leaf_pc = path[0]
    leaf_lifetime = _lifetime_days(leaf_pc)

    for i, pc in enumerate(path):
        _expiry_findings(out, pc, now, policy, leaf_lifetime, leaf=i == 0)
    on_path = {pc.sha256 for pc in path}
    parsed = [(i, der, load(der)) for i, der in enumerate(obs.chain)]
    for i, der, cert in parsed[1:]:
        if cert is None:
            continue
        sha = sha256_hex(der)
        if sha not in on_path and now > cert.not_valid_after_utc:
            pc = PathCert(cert, sha, i, "sent")  # only for its label
            out.add(
                "CHAIN_CERT_EXPIRED",
                Status.WARNING,
                f"{pc.label} expired on {cert.not_valid_after_utc:%Y-%m-%d}; the path does not need it, "
                "but clients that build paths differently may fail",
            )
    _chain_order(out, parsed)
    _trust_findings(out, sent, completed, policy, aia_url)
    if "hostname_mismatch" in sent.defects:
        out.add("HOSTNAME_MISMATCH", Status.CRITICAL, sent.defects["hostname_mismatch"])
    # pc.weak_key and the others were computed by verify_chain for these same PathCerts
    for i, pc in enumerate(path):
        weak = pc.weak_key
        if weak:
            out.add("WEAK_KEY", Status.CRITICAL, f"{pc.label}: {weak}")
        if not (i == len(path) - 1 and pc.self_signed):
            sig = pc.weak_signature
            if sig:
                out.add("WEAK_SIGNATURE", Status.CRITICAL, f"{pc.label}: {sig}")
    if policy.revocation:
        _ocsp_findings(out, obs, leaf_pc, path, now)
    return Verification(sent.code, sent.trusted, sent.hostname_match, sent.detail)


def _endpoints_disagree(endpoints: Sequence[EndpointResult]) -> Finding | None:
    if len(endpoints) < 2:  # one address cannot disagree with itself (most targets; issue 6)
        return None
    leaves = {e.address: e.chain[0].sha256 for e in endpoints if e.chain}
    if len(set(leaves.values())) < 2:
        return None
    detail = ", ".join(f"{addr} → {fp[:16]}" for addr, fp in sorted(leaves.items()))
    return Finding(
        "ENDPOINTS_DISAGREE",
        Status.WARNING,
        f"the addresses of this name serve different certificates: {detail}",
    )


def evaluate_target(
    target: Target,
    observations: Sequence[Observation],
    now: datetime,
    dns_failure: Failure | None = None,
    policy: Policy | None = None,
) -> TargetResult:
    """Judge every endpoint of ``target`` and roll them up (worst endpoint wins)."""
    if observations and policy is None and any(o.error is None for o in observations):
        policy = policy_for(target)
    endpoints = tuple(evaluate_endpoint(target, o, now, policy) for o in observations)
    findings: list[Finding] = []
    if dns_failure is not None:
        findings.append(failure_finding(dns_failure))
    disagree = _endpoints_disagree(endpoints)
    if disagree is not None:
        findings.append(disagree)
    if endpoints:
        status = Status.worst(
            [e.status for e in endpoints]
            + [f.severity for f in findings if f.severity is not Status.OK]
        )
    else:
        status = Status.UNKNOWN
    leaves = [e.chain[0] for e in endpoints if e.chain]
    days = min((c.days_left for c in leaves if c.days_left is not None), default=None)
    expiries = [c.not_after for e in endpoints for c in e.chain if c.not_after is not None]
    return TargetResult(
        target=target.url,
        protocol=_detected_protocol(target, observations),
        tls_mode=_detected_tls_mode(target, observations),
        status=status,
        checked_at=now,
        endpoints=endpoints,
        findings=tuple(findings),
        days_left=days,
        earliest_expiry=min(expiries, default=None),
        error=dns_failure,
    )


__all__ = ["evaluate_endpoint", "evaluate_target", "failure_finding", "label"]


def _detected(observations: Sequence[Observation]) -> str | None:
    """auto:// targets: the scheme the probe detected (first endpoint that found one)."""
    from tlswatch.protocols import REGISTRY

    for o in observations:
        scheme = o.upgrade.get("detected")
        if scheme in REGISTRY:
            return scheme
    return None


def _detected_protocol(target: Target, observations: Sequence[Observation]) -> str:
    if target.spec.name == "auto":
        return _detected(observations) or "auto"
    return target.spec.name


def _detected_tls_mode(target: Target, observations: Sequence[Observation]) -> str:
    if target.spec.name == "auto":
        from tlswatch.protocols import REGISTRY

        scheme = _detected(observations)
        return REGISTRY[scheme].tls_mode if scheme else "implicit"
    return target.tls_mode
