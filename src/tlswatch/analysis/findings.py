"""The finding codes (PRODUCT.md §3): stable UPPER_SNAKE names, the severity each usually
carries, and what it means. docs/verdicts.md is written from this table and a test keeps
the two in step.

Severity ``ok`` marks an informational finding: reported, never raising the status.
"""

from __future__ import annotations

from collections.abc import Mapping

from tlswatch.errors import FailureClass
from tlswatch.model import Status

#: code → (severity, meaning). "warning/critical" codes take their severity from thresholds.
CATALOGUE: Mapping[str, tuple[str, str]] = {
    "CERT_EXPIRED": ("critical", "the leaf certificate's notAfter has passed"),
    "CERT_EXPIRES_SOON": (
        "warning/critical",
        "the leaf expires within the warn (warning) or crit (critical) threshold",
    ),
    "CERT_NOT_YET_VALID": ("critical", "the leaf's notBefore is in the future"),
    "CHAIN_CERT_EXPIRED": (
        "critical",
        "an intermediate or root on the validation path has expired (warning when the "
        "server sends an expired certificate that the path does not need)",
    ),
    "CHAIN_CERT_EXPIRES_SOON": (
        "warning/critical",
        "an intermediate or root on the path expires within the thresholds",
    ),
    "CHAIN_UNTRUSTED": (
        "critical",
        "no valid path to a trust anchor: unknown CA, untrusted self-signed root in the "
        "chain, broken signature or constraint, or no certificate at all",
    ),
    "CHAIN_INCOMPLETE": (
        "critical",
        "the server omits an intermediate that AIA supplies (critical) or that only the "
        "local trust store supplies (warning): browsers cope, mail and database clients don't",
    ),
    "CHAIN_ORDER": (
        "warning",
        "the server sends certificates out of issuing order, twice, or unrelated to the chain",
    ),
    "SELF_SIGNED": (
        "critical",
        "the leaf is self-signed and not trusted (ok when it is pinned through ca=)",
    ),
    "HOSTNAME_MISMATCH": ("critical", "the leaf is not valid for the name checked"),
    "WEAK_KEY": ("critical", "RSA/DSA key under 2048 bits or EC key under 256 bits on the path"),
    "WEAK_SIGNATURE": ("critical", "a certificate on the path is signed with MD5 or SHA-1"),
    "LEGACY_TLS_VERSION": ("warning", "the server negotiated TLS 1.1 or older"),
    "RENEWAL_OVERDUE": (
        "warning/ok",
        "more than 2/3 of the leaf's lifetime has passed: warning for automated "
        "(≤ 100-day) certificates, informational for longer-lived ones",
    ),
    "REVOKED": ("critical", "the OCSP responder says the leaf is revoked"),
    "OCSP_ERROR": (
        "warning",
        "revocation was asked for but could not be established: responder down, "
        "malformed, unsigned or stale answer, or 'unknown' (ok when there is nothing to ask)",
    ),
    "AIA_FETCH_FAILED": (
        "warning",
        "the missing issuer could not be downloaded from the AIA caIssuers URL",
    ),
    "CERT_UNPARSABLE": ("critical", "a certificate the server sent is not valid DER X.509"),
    "TRUST_STORE_ERROR": ("unknown", "a trust store or ca= file could not be read"),
    "ENDPOINTS_DISAGREE": (
        "warning",
        "the addresses of one name serve different leaf certificates",
    ),
    "CERT_CHANGED": (
        "ok/warning",
        "the fingerprint differs from the last probe (judged by the daemon, which has history)",
    ),
    "UPGRADE_NOT_OFFERED": (
        "critical",
        "the server answered but does not offer the TLS upgrade (STARTTLS missing): traffic "
        "would go in clear",
    ),
}

#: failure classes other than upgrade_not_offered: the probe could not run → unknown
FAILURE_SEVERITY: Mapping[FailureClass, Status] = {
    fc: (Status.CRITICAL if fc is FailureClass.UPGRADE_NOT_OFFERED else Status.UNKNOWN)
    for fc in FailureClass
}

ALL_CODES = tuple(CATALOGUE) + tuple(
    fc.value.upper() for fc in FailureClass if fc is not FailureClass.UPGRADE_NOT_OFFERED
)

__all__ = ["ALL_CODES", "CATALOGUE", "FAILURE_SEVERITY"]
