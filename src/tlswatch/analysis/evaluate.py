"""Observations + check time + policy in, results out (pure; no network).

Placeholder verdict until the verdicts work lands: a failed probe is ``unknown`` with its
failure class as a finding; a collected chain is ``ok``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tlswatch.errors import Failure
from tlswatch.model import EndpointResult, Finding, Observation, Status, TargetResult
from tlswatch.targets import Target
from tlswatch.x509.certinfo import describe


def failure_finding(failure: Failure) -> Finding:
    return Finding(failure.code.value.upper(), Status.UNKNOWN, failure.describe())


def evaluate_endpoint(target: Target, obs: Observation, now: datetime) -> EndpointResult:
    chain = tuple(describe(der, i, now) for i, der in enumerate(obs.chain))
    if obs.error is not None:
        return EndpointResult(
            obs.address, obs.port, Status.UNKNOWN, obs, chain, None, (failure_finding(obs.error),)
        )
    return EndpointResult(obs.address, obs.port, Status.OK, obs, chain)


def evaluate_target(
    target: Target,
    observations: Sequence[Observation],
    now: datetime,
    dns_failure: Failure | None = None,
) -> TargetResult:
    endpoints = tuple(evaluate_endpoint(target, o, now) for o in observations)
    findings: tuple[Finding, ...] = ()
    if dns_failure is not None:
        findings = (failure_finding(dns_failure),)
    status = Status.worst([e.status for e in endpoints]) if endpoints else Status.UNKNOWN
    leaves = [e.chain[0] for e in endpoints if e.chain]
    days = min((c.days_left for c in leaves if c.days_left is not None), default=None)
    expiries = [c.not_after for e in endpoints for c in e.chain if c.not_after is not None]
    return TargetResult(
        target=target.url,
        protocol=target.spec.name,
        tls_mode=target.tls_mode,
        status=status,
        checked_at=now,
        endpoints=endpoints,
        findings=findings,
        days_left=days,
        earliest_expiry=min(expiries, default=None),
        error=dns_failure,
    )
