"""The JSON document of PRODUCT.md §4 (``tlswatch.check/1``) and JSON Lines for scans."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from tlswatch.model import CertInfo, EndpointResult, Finding, TargetResult

SCHEMA = "tlswatch.check/1"


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is UTC:
        # Certificate dates (cryptography's *_utc) and check times are UTC datetimes, and
        # a scan renders the same not_before/not_after on every endpoint: strftime is the
        # largest single cost of a JSON line (issue 6), so these are rendered once.
        return _iso_utc(dt)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=1024)  # bounded: memory stays flat however many targets
def _iso_utc(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def cert_dict(c: CertInfo) -> dict[str, Any]:
    d: dict[str, Any] = {
        "position": c.position,
        "subject": c.subject,
        "issuer": c.issuer,
        "serial": c.serial,
        "sha256": c.sha256,
        "not_before": iso(c.not_before),
        "not_after": iso(c.not_after),
        "days_left": c.days_left,
        "key": {"type": c.key.type, "bits": c.key.bits} if c.key else None,
        "signature_algorithm": c.signature_algorithm,
        "san": list(c.san),
    }
    if c.parse_error:
        d["parse_error"] = c.parse_error
    return d


def finding_dict(f: Finding) -> dict[str, Any]:
    return {"code": f.code, "severity": f.severity.value, "message": f.message}


def endpoint_dict(e: EndpointResult) -> dict[str, Any]:
    t = e.timings
    return {
        "address": e.address,
        "port": e.port,
        "status": e.status.value,
        "error": ({"code": e.error.code.value, "message": e.error.describe()} if e.error else None),
        "tls": (
            {"version": e.tls.version, "cipher": e.tls.cipher, "alpn": e.tls.alpn}
            if e.tls
            else None
        ),
        "chain": [cert_dict(c) for c in e.chain],
        "verification": (
            {
                "code": e.verification.code,
                "trusted": e.verification.trusted,
                "hostname_match": e.verification.hostname_match,
                **({"detail": e.verification.detail} if e.verification.detail else {}),
            }
            if e.verification
            else None
        ),
        "findings": [finding_dict(f) for f in e.findings],
        "timings_ms": {
            "dns": t.dns,
            "connect": t.connect,
            "upgrade": t.upgrade,
            "handshake": t.handshake,
        },
        "upgrade": dict(e.observation.upgrade),
    }


def result_dict(r: TargetResult) -> dict[str, Any]:
    return {
        "target": r.target,
        "protocol": r.protocol,
        "tls_mode": r.tls_mode,
        "status": r.status.value,
        "days_left": r.days_left,
        "earliest_expiry": iso(r.earliest_expiry),
        "error": {"code": r.error.code.value, "message": r.error.describe()} if r.error else None,
        "endpoints": [endpoint_dict(e) for e in r.endpoints],
        "findings": [finding_dict(f) for f in r.findings],
    }


def document(results: Iterable[TargetResult], checked_at: datetime) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "checked_at": iso(checked_at),
        "results": [result_dict(r) for r in results],
    }


def dumps_document(results: Iterable[TargetResult], checked_at: datetime) -> str:
    return json.dumps(document(results, checked_at), indent=2, ensure_ascii=False)


def dumps_line(result: TargetResult) -> str:
    """One JSON Lines record for ``scan --format jsonl``: the result plus its check time."""
    return json.dumps(
        {"schema": SCHEMA, "checked_at": iso(result.checked_at), **result_dict(result)},
        ensure_ascii=False,
        separators=(",", ":"),
    )
