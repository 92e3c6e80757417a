"""The JSON document of PRODUCT.md §4 (``tlswatch.check/1``) and JSON Lines for scans."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any

from tlswatch.errors import Failure
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
    if dt.year >= 1000:
        # strftime's text, built without it (0.6 µs rather than 1.7: each JSON line has a
        # new check time, which misses the cache; issue 6). Below year 1000 strftime's %Y
        # is not zero-padded on every platform, so those take strftime itself. (An f-string
        # with format specs costs 1.1 µs here: the %-operator is the fast one.)
        return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031
            dt.year,
            dt.month,
            dt.day,
            dt.hour,
            dt.minute,
            dt.second,
        )
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
    """One JSON Lines record for ``scan --format jsonl``: the result plus its check time.

    The text of ``json.dumps({"schema": SCHEMA, "checked_at": iso(result.checked_at),
    **result_dict(result)}, ensure_ascii=False, separators=(",", ":"))``, written out
    directly: building the dicts and having json escape the same keys again on every line
    was about 8% of the CPU of judging an endpoint; this takes about 60% of that (issue 6).
    tests/test_json_line.py holds the two equal; a field added to result_dict (or the
    dicts below it) must be added here too."""
    r = result
    return "".join(
        (
            '{"schema":',
            _str(SCHEMA),
            ',"checked_at":',
            _value(iso(r.checked_at)),
            ',"target":',
            _str(r.target),
            ',"protocol":',
            _str(r.protocol),
            ',"tls_mode":',
            _str(r.tls_mode),
            ',"status":',
            _str(r.status.value),
            ',"days_left":',
            _value(r.days_left),
            ',"earliest_expiry":',
            _value(iso(r.earliest_expiry)),
            ',"error":',
            _failure_json(r.error),
            ',"endpoints":[',
            ",".join(map(_endpoint_json, r.endpoints)),
            '],"findings":[',
            ",".join(map(_finding_json, r.findings)),
            "]}",
        )
    )


#: renders what the helpers below do not spell out, exactly as json.dumps with the
#: options of dumps_line (its encoder keeps no state between calls)
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _value(v: object) -> str:
    """``v`` as json.dumps(ensure_ascii=False) writes it (the common types without a call
    into the encoder: strings, None, booleans, ints, finite floats)."""
    if type(v) is str:
        return encode_basestring(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if type(v) is int:
        return int.__repr__(v)
    if type(v) is float and math.isfinite(v):
        return float.__repr__(v)
    return _LINE_ENCODER.encode(v)  # subclasses (enums), NaN, containers, errors


def _str(v: object) -> str:
    # the same as _value, first trying what a str field normally holds
    return encode_basestring(v) if type(v) is str else _value(v)


def _failure_json(f: Failure | None) -> str:
    if not f:
        return "null"
    return '{"code":' + _str(f.code.value) + ',"message":' + _str(f.describe()) + "}"


def _finding_json(f: Finding) -> str:
    return (
        '{"code":'
        + _str(f.code)
        + ',"severity":'
        + _str(f.severity.value)
        + ',"message":'
        + _str(f.message)
        + "}"
    )


def _cert_json(c: CertInfo) -> str:
    k = c.key
    return "".join(
        (
            '{"position":',
            _value(c.position),
            ',"subject":',
            _str(c.subject),
            ',"issuer":',
            _str(c.issuer),
            ',"serial":',
            _str(c.serial),
            ',"sha256":',
            _str(c.sha256),
            ',"not_before":',
            _value(iso(c.not_before)),
            ',"not_after":',
            _value(iso(c.not_after)),
            ',"days_left":',
            _value(c.days_left),
            ',"key":',
            '{"type":' + _str(k.type) + ',"bits":' + _value(k.bits) + "}" if k else "null",
            ',"signature_algorithm":',
            _str(c.signature_algorithm),
            ',"san":[',
            ",".join(map(_str, c.san)),
            "]",
            ',"parse_error":' + _value(c.parse_error) if c.parse_error else "",
            "}",
        )
    )


def _endpoint_json(e: EndpointResult) -> str:
    t = e.timings
    tls = e.tls
    v = e.verification
    upgrade = dict(e.observation.upgrade)
    return "".join(
        (
            '{"address":',
            _str(e.address),
            ',"port":',
            _value(e.port),
            ',"status":',
            _str(e.status.value),
            ',"error":',
            _failure_json(e.error),
            ',"tls":',
            (
                '{"version":'
                + _str(tls.version)
                + ',"cipher":'
                + _str(tls.cipher)
                + ',"alpn":'
                + _value(tls.alpn)
                + "}"
                if tls
                else "null"
            ),
            ',"chain":[',
            ",".join(map(_cert_json, e.chain)),
            '],"verification":',
            (
                '{"code":'
                + _str(v.code)
                + ',"trusted":'
                + _value(v.trusted)
                + ',"hostname_match":'
                + _value(v.hostname_match)
                + (',"detail":' + _value(v.detail) if v.detail else "")
                + "}"
                if v
                else "null"
            ),
            ',"findings":[',
            ",".join(map(_finding_json, e.findings)),
            '],"timings_ms":{"dns":',
            _value(t.dns),
            ',"connect":',
            _value(t.connect),
            ',"upgrade":',
            _value(t.upgrade),
            ',"handshake":',
            _value(t.handshake),
            '},"upgrade":',
            _LINE_ENCODER.encode(upgrade) if upgrade else "{}",
            "}",
        )
    )
