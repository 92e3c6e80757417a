"""The default terminal output: one row per target, worst first (Rich)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tlswatch.model import Status, TargetResult
from tlswatch.render.text import clean

STATUS_STYLE = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.CRITICAL: "bold red",
    Status.UNKNOWN: "magenta",
}


def sort_worst_first(results: Sequence[TargetResult]) -> list[TargetResult]:
    return sorted(
        results,
        key=lambda r: (-r.status.rank, r.days_left if r.days_left is not None else 1e9, r.target),
    )


def worst_finding(r: TargetResult) -> str:
    findings = list(r.findings) + [f for e in r.endpoints for f in e.findings]
    # informational findings (severity ok) never headline a row
    findings = [f for f in findings if f.severity is not Status.OK]
    if not findings:
        return ""
    f = max(findings, key=lambda f: f.severity.rank)
    return f"{f.code}: {f.message}"


def render_table(results: Sequence[TargetResult], console: Console, verbose: bool = False) -> None:
    table = Table(show_lines=False, header_style="bold")
    for col in ("status", "target", "days left", "expires (UTC)", "issuer", "protocol", "finding"):
        table.add_column(col, overflow="fold")
    for r in sort_worst_first(results):
        leaf = next((e.chain[0] for e in r.endpoints if e.chain), None)
        tls = next((e.tls for e in r.endpoints if e.tls), None)
        table.add_row(
            Text(r.status.value, style=STATUS_STYLE[r.status]),
            clean(r.target),
            f"{r.days_left:.1f}" if r.days_left is not None else "-",
            leaf.not_after.strftime("%Y-%m-%d %H:%M") if leaf and leaf.not_after else "-",
            clean(leaf.issuer) if leaf else "-",
            f"{r.protocol} {tls.version}" if tls else r.protocol,
            clean(worst_finding(r)),
        )
    console.print(table)
    if verbose:
        for r in sort_worst_first(results):
            render_detail(r, console)


def render_detail(r: TargetResult, console: Console) -> None:
    console.print(Text(f"\n{clean(r.target)}  [{r.status.value}]", style="bold"))
    for f in r.findings:
        console.print(
            f"  {f.severity.value:8} {f.code}: {clean(f.message)}", markup=False, highlight=False
        )
    for e in r.endpoints:
        addr = f"[{e.address}]:{e.port}" if ":" in e.address else f"{e.address}:{e.port}"
        tls = f"{e.tls.version} {e.tls.cipher} alpn={e.tls.alpn}" if e.tls else "no TLS"
        console.print(f"  {addr}  {e.status.value}  {tls}", markup=False, highlight=False)
        t = e.timings
        console.print(
            f"    timings ms: dns={t.dns} connect={t.connect} upgrade={t.upgrade} handshake={t.handshake}",
            markup=False,
            highlight=False,
        )
        for c in e.chain:
            exp = c.not_after.strftime("%Y-%m-%d") if c.not_after else "?"
            console.print(
                f"    #{c.position} {clean(c.subject)}\n"
                f"       issuer {clean(c.issuer)}  expires {exp}  sha256 {c.sha256[:16]}…",
                markup=False,
                highlight=False,
            )
        if e.verification:
            v = e.verification
            console.print(
                f"    verification: {v.code} trusted={v.trusted} hostname_match={v.hostname_match}",
                markup=False,
                highlight=False,
            )
        for f in e.findings:
            console.print(
                f"    {f.severity.value:8} {f.code}: {clean(f.message)}",
                markup=False,
                highlight=False,
            )
