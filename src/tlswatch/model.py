"""The one result model (STYLE.md): frozen dataclasses that JSON, the store, metrics and
templates all render from.

Two layers:
    Observation     what the network said about one endpoint (chain DER, TLS facts, failure,
                    timings) — produced by the driver, stored, re-evaluated later offline
    EndpointResult  an Observation judged at a check time under a policy (chain facts,
    TargetResult    verification, findings, status) — produced by tlswatch.analysis (pure)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from tlswatch.errors import Failure


class Status(enum.StrEnum):
    """Endpoint and target status (PRODUCT.md §3); the value order is the Nagios exit code."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def exit_code(self) -> int:
        return _EXIT[self]

    @property
    def rank(self) -> int:
        """Badness for "worst of": ok < unknown < warning < critical."""
        return _RANK[self]

    @staticmethod
    def worst(statuses: list[Status] | tuple[Status, ...]) -> Status:
        return max(statuses, key=lambda s: s.rank, default=Status.UNKNOWN)


_EXIT = {Status.OK: 0, Status.WARNING: 1, Status.CRITICAL: 2, Status.UNKNOWN: 3}
_RANK = {Status.OK: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.CRITICAL: 3}


@dataclass(frozen=True, slots=True)
class TLSInfo:
    version: str
    cipher: str
    alpn: str | None = None


@dataclass(frozen=True, slots=True)
class Timings:
    """Milliseconds per phase; None for a phase that did not run."""

    dns: float | None = None
    connect: float | None = None
    upgrade: float | None = None
    handshake: float | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """Bytes fetched on the side of a probe for judging its chain: an issuer certificate
    from an AIA caIssuers URL (``kind="ca_issuers"``) or an OCSP response (``kind="ocsp"``,
    ``subject_sha256`` names the certificate asked about). Exactly one of ``data`` and
    ``error`` is set. Kept with the Observation so a re-evaluation needs no network."""

    kind: str
    url: str
    data: bytes | None = None
    error: str | None = None
    subject_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """What one probe of one endpoint saw. Pure data: can be stored and re-judged."""

    address: str
    port: int
    chain: tuple[bytes, ...] = ()
    tls: TLSInfo | None = None
    error: Failure | None = None
    timings: Timings = field(default_factory=Timings)
    #: what the plaintext dialogue learned (banner, capabilities), protocol-specific keys
    upgrade: Mapping[str, str] = field(default_factory=dict)
    #: AIA issuers and OCSP responses fetched for this chain (tlswatch.net.evidence)
    fetched: tuple[Fetched, ...] = ()


@dataclass(frozen=True, slots=True)
class KeyInfo:
    type: str
    bits: int


@dataclass(frozen=True, slots=True)
class CertInfo:
    """Facts of one certificate of a chain, as sent (position 0 = first sent)."""

    position: int
    subject: str
    issuer: str
    serial: str
    sha256: str
    not_before: datetime | None
    not_after: datetime | None
    days_left: float | None
    key: KeyInfo | None
    signature_algorithm: str
    san: tuple[str, ...] = ()
    #: set when the DER could not be parsed; the other fields are then placeholders
    parse_error: str | None = None


@dataclass(frozen=True, slots=True)
class Verification:
    code: str
    trusted: bool
    hostname_match: bool
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Status
    message: str


@dataclass(frozen=True, slots=True)
class EndpointResult:
    address: str
    port: int
    status: Status
    observation: Observation
    chain: tuple[CertInfo, ...] = ()
    verification: Verification | None = None
    findings: tuple[Finding, ...] = ()

    @property
    def error(self) -> Failure | None:
        return self.observation.error

    @property
    def tls(self) -> TLSInfo | None:
        return self.observation.tls

    @property
    def timings(self) -> Timings:
        return self.observation.timings


@dataclass(frozen=True, slots=True)
class TargetResult:
    target: str
    protocol: str
    tls_mode: str
    status: Status
    checked_at: datetime
    endpoints: tuple[EndpointResult, ...] = ()
    findings: tuple[Finding, ...] = ()
    days_left: float | None = None
    #: earliest not_after across every certificate of every endpoint's chain
    earliest_expiry: datetime | None = None
    #: the name resolution failure, when there were no endpoints to probe
    error: Failure | None = None
