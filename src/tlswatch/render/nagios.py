"""Nagios/Icinga plugin output (Nagios Plugin Development Guidelines, "Plugin Output"):

    TLSWATCH CRITICAL - smtp://mx:25 CERT_EXPIRED: certificate #0 ... | 'days_left'=-3.2;30;7;; ...
    long output: one line per target and endpoint, then every finding

Exit code = the worst status (0 ok, 1 warning, 2 critical, 3 unknown). Perfdata gives
``days_left`` of the leaf and of each chain certificate, with the warn/crit thresholds in
days; labels are quoted and unique (a target prefix when several targets are checked).
"""

from __future__ import annotations

from collections.abc import Sequence

from tlswatch.analysis.policy import effective_thresholds, target_thresholds
from tlswatch.model import Finding, Status, TargetResult
from tlswatch.render.table import sort_worst_first
from tlswatch.render.text import clean


def _label(text: str) -> str:
    # perfdata labels: single-quoted, a quote doubled, no '=' (guidelines §"Performance data")
    return "'" + clean(text).replace("'", "''").replace("=", "_") + "'"


def _windows(r: TargetResult, lifetime: float | None) -> tuple[float, float]:
    """warn/crit as days left, as the evaluation applied them (percentages of the leaf's
    lifetime; a year assumed when the leaf could not be read)."""
    warn, crit = target_thresholds(r.target)
    life = lifetime if lifetime is not None else 365.0
    w, c = effective_thresholds(warn, crit, life)
    return w.days(life), c.days(life)


def _worst_finding(r: TargetResult) -> Finding | None:
    findings = [*r.findings, *(f for e in r.endpoints for f in e.findings)]
    findings = [f for f in findings if f.severity is not Status.OK]
    return max(findings, key=lambda f: f.severity.rank, default=None)


def _summary(r: TargetResult) -> str:
    f = _worst_finding(r)
    if f is None:
        days = f"{r.days_left:.1f} days left" if r.days_left is not None else "no certificate"
        return f"{clean(r.target)} {days}"
    return f"{clean(r.target)} {f.code}: {clean(f.message)}"


def perfdata(results: Sequence[TargetResult]) -> list[str]:
    out: list[str] = []
    prefix = len(results) > 1
    for r in results:
        seen: set[str] = set()
        for e in r.endpoints:
            head = e.chain[0] if e.chain else None
            lifetime = (
                (head.not_after - head.not_before).total_seconds() / 86400.0
                if head is not None and head.not_after and head.not_before
                else None
            )
            warn, crit = _windows(r, lifetime)
            for c in e.chain:
                if c.days_left is None or c.sha256 in seen:
                    continue
                seen.add(c.sha256)
                leaf = c.position == 0
                name = "days_left" if leaf else f"days_left_chain_{c.position}"
                if len({e.address for e in r.endpoints if e.chain}) > 1 and leaf:
                    name = f"days_left {e.address}"
                if prefix:
                    name = f"{r.target} {name}"
                out.append(f"{_label(name)}={c.days_left:.1f};{warn:g};{crit:g};;")
    return out


def render_nagios(results: Sequence[TargetResult]) -> str:
    """The plugin output (status line, perfdata, long output), newline-terminated."""
    ordered = sort_worst_first(results)
    worst = Status.worst([r.status for r in results]) if results else Status.UNKNOWN
    if len(ordered) == 1:
        summary = _summary(ordered[0])
    else:
        counts = {s: sum(1 for r in results if r.status is s) for s in Status}
        summary = f"{len(results)} targets: " + ", ".join(
            f"{counts[s]} {s.value}"
            for s in (Status.CRITICAL, Status.WARNING, Status.UNKNOWN, Status.OK)
        )
        if ordered and ordered[0].status is not Status.OK:
            summary += "; worst: " + _summary(ordered[0])
    lines = [f"TLSWATCH {worst.value.upper()} - {summary}".replace("|", "/")]
    perf = perfdata(results)
    if perf:
        lines[0] += " | " + " ".join(perf)
    for r in ordered:
        lines.append(
            f"[{r.status.value.upper()}] {clean(r.target)} ({r.protocol})".replace("|", "/")
        )
        for f in r.findings:
            lines.append(f"  {f.severity.value}: {f.code}: {clean(f.message)}".replace("|", "/"))
        for e in r.endpoints:
            tls = f" {e.tls.version}" if e.tls else ""
            v = f" verification={e.verification.code}" if e.verification else ""
            lines.append(f"  {e.address}:{e.port} {e.status.value}{tls}{v}".replace("|", "/"))
            for f in e.findings:
                lines.append(
                    f"    {f.severity.value}: {f.code}: {clean(f.message)}".replace("|", "/")
                )
    return "\n".join(lines) + "\n"


__all__ = ["perfdata", "render_nagios"]
