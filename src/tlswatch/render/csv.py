"""CSV: one row per endpoint (a target without endpoints — DNS failed — gets one row), for
spreadsheets and scripts. RFC 4180 quoting; fields that a spreadsheet would run as a
formula (starting with = + - @, tab or CR) are prefixed with an apostrophe, since
certificate subjects are attacker-controlled (OWASP "CSV injection")."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from tlswatch.model import Finding, Status, TargetResult
from tlswatch.render.jsonfmt import iso
from tlswatch.render.text import clean

COLUMNS = (
    "target",
    "protocol",
    "address",
    "port",
    "status",
    "days_left",
    "not_after",
    "subject",
    "issuer",
    "sha256",
    "verification",
    "trusted",
    "hostname_match",
    "tls_version",
    "findings",
    "worst_finding",
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _safe(value: object) -> str:
    text = "" if value is None else str(value)
    if isinstance(value, str):
        text = clean(text)
        if text.startswith(_FORMULA):
            text = "'" + text
    return text


def _worst(findings: Sequence[Finding]) -> str:
    bad = [f for f in findings if f.severity is not Status.OK]
    if not bad:
        return ""
    f = max(bad, key=lambda f: f.severity.rank)
    return f"{f.code}: {f.message}"


def render_csv(results: Sequence[TargetResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for r in results:
        if not r.endpoints:
            findings = list(r.findings)
            w.writerow(
                [
                    _safe(v)
                    for v in (
                        r.target,
                        r.protocol,
                        "",
                        "",
                        r.status.value,
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                    )
                ]
                + [_safe(" ".join(f.code for f in findings)), _safe(_worst(findings))]
            )
            continue
        for e in r.endpoints:
            leaf = e.chain[0] if e.chain else None
            v = e.verification
            findings = [*r.findings, *e.findings]
            row = [
                r.target,
                r.protocol,
                e.address,
                e.port,
                e.status.value,
                leaf.days_left if leaf else None,
                iso(leaf.not_after) if leaf else None,
                leaf.subject if leaf else None,
                leaf.issuer if leaf else None,
                leaf.sha256 if leaf else None,
                v.code if v else None,
                str(v.trusted).lower() if v else None,
                str(v.hostname_match).lower() if v else None,
                e.tls.version if e.tls else None,
                " ".join(f.code for f in findings),
                _worst(findings),
            ]
            w.writerow([_safe(x) for x in row])
    return buf.getvalue()


__all__ = ["COLUMNS", "render_csv"]
