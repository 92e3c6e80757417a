"""Change detection across probes (pure): what the daemon knows that one probe cannot.

- ``CERT_CHANGED``: an endpoint's leaf differs from the one it served last time. Same subject
  and issuer with a later expiry is a normal renewal (info); anything else — another issuer,
  another subject, an earlier expiry — is a warning.
- ``ENDPOINTS_DISAGREE``: the addresses of one target serve different leaf certificates.

``RENEWAL_OVERDUE`` is judged per chain by :mod:`tlswatch.analysis.evaluate`, like every
other finding one probe can see.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from tlswatch.model import CertInfo, Finding, Status


def short(fp: str) -> str:
    return fp[:16]


def _day(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d") if d else "?"


def cert_changed(endpoint: str, old: CertInfo, new: CertInfo) -> Finding | None:
    if old.sha256 == new.sha256:
        return None
    later = (
        old.not_after is not None and new.not_after is not None and new.not_after > old.not_after
    )
    renewal = old.subject == new.subject and old.issuer == new.issuer and later
    what = (
        f"{endpoint}: certificate changed from {short(old.sha256)} (expires {_day(old.not_after)})"
        f" to {short(new.sha256)} (expires {_day(new.not_after)})"
    )
    if renewal:
        return Finding("CERT_CHANGED", Status.OK, f"{what}: renewed")
    reasons = []
    if old.issuer != new.issuer:
        reasons.append(f"issuer changed from {old.issuer!r} to {new.issuer!r}")
    if old.subject != new.subject:
        reasons.append(f"subject changed from {old.subject!r} to {new.subject!r}")
    if not later:
        reasons.append("the new certificate expires earlier")
    return Finding("CERT_CHANGED", Status.WARNING, f"{what}: unexpected: {'; '.join(reasons)}")


def endpoints_disagree(leaves: Mapping[str, CertInfo]) -> Finding | None:
    """``leaves``: endpoint (``address:port``) → its current leaf."""
    distinct = {c.sha256 for c in leaves.values()}
    if len(distinct) < 2:
        return None
    parts = ", ".join(f"{ep} serves {short(c.sha256)}" for ep, c in sorted(leaves.items()))
    return Finding(
        "ENDPOINTS_DISAGREE", Status.WARNING, f"endpoints serve different certificates: {parts}"
    )
