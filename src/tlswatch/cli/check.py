"""`tlswatch check` and `tlswatch scan`."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer

from tlswatch.cli import app
from tlswatch.cli.scanrun import (  # the Typer-free scan (and helpers check shares)
    _overrides,
    _settings,
    _target,
    emit,
    run_scan,
)
from tlswatch.errors import TargetError
from tlswatch.model import Status
from tlswatch.probe import DEFAULT_CONCURRENCY, check_targets


class CheckFormat(StrEnum):
    table = "table"
    json = "json"
    nagios = "nagios"
    prometheus = "prometheus"
    csv = "csv"


class ScanFormat(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


class EventLoop(StrEnum):  # tlswatch.cli.loops.LOOP_CHOICES
    auto = "auto"
    asyncio = "asyncio"
    uvloop = "uvloop"


Sni = Annotated[str | None, typer.Option(help="SNI to send (overrides the URL's sni=)")]
Timeout = Annotated[float | None, typer.Option(help="seconds per phase (overrides timeout=)")]
Warn = Annotated[str | None, typer.Option(help="warning threshold: days or N%")]
Crit = Annotated[str | None, typer.Option(help="critical threshold: days or N%")]
Ca = Annotated[str | None, typer.Option(help="PEM file of extra trust anchors")]
DnsServer = Annotated[
    list[str] | None,
    typer.Option(
        "--dns-server", help="ask this DNS server (ip[:port]) instead of the system resolver"
    ),
]


@app.command()
def check(
    targets: Annotated[
        list[str], typer.Argument(help="target URLs, e.g. smtp://mail.example.com:587")
    ],
    fmt: Annotated[
        CheckFormat, typer.Option("--format", "-f", help="output format")
    ] = CheckFormat.table,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show chains and every finding")
    ] = False,
    sni: Sni = None,
    timeout: Timeout = None,
    warn: Warn = None,
    crit: Crit = None,
    ca: Ca = None,
    dns_server: DnsServer = None,
    trust: Annotated[
        str | None, typer.Option(help="trust store: system, mozilla or none (overrides trust=)")
    ] = None,
    revocation: Annotated[
        bool, typer.Option("--revocation", help="check the leaf's OCSP status (revocation=ocsp)")
    ] = False,
    no_fetch: Annotated[
        bool, typer.Option("--no-fetch", help="never download missing issuers (AIA) or OCSP")
    ] = False,
) -> None:
    """Probe targets now; exit with the worst status (0 ok, 1 warning, 2 critical, 3 unknown)."""
    overrides = _overrides(sni, timeout, warn, crit, ca)
    if trust is not None:
        overrides["trust"] = trust
    if revocation:
        overrides["revocation"] = "ocsp"
    try:
        parsed = [_target(t, overrides) for t in targets]
    except TargetError as exc:
        typer.echo(f"tlswatch: {exc}", err=True)
        raise typer.Exit(3) from None
    checked_at = datetime.now(UTC)
    settings = _settings(dns_server)
    if no_fetch:
        from tlswatch.net.evidence import EvidenceOptions

        settings.evidence = EvidenceOptions(fetch_issuers=False)
    from tlswatch.cli.loops import loop_factory
    from tlswatch.cli.loops import run as run_loop

    results = run_loop(check_targets(parsed, settings), loop_factory("auto"))
    emit(results, fmt.value, checked_at, verbose)
    raise typer.Exit(Status.worst([r.status for r in results]).exit_code)


@app.command("scan")
def scan_cmd(
    file: Annotated[
        str, typer.Option("--file", "-f", help="file of target URLs, one a line ('-': stdin)")
    ],
    fmt: Annotated[ScanFormat, typer.Option("--format", help="output format")] = ScanFormat.table,
    concurrency: Annotated[
        int, typer.Option(min=1, max=10000, help="probes in flight at once")
    ] = DEFAULT_CONCURRENCY,
    progress: Annotated[
        bool | None, typer.Option(help="progress bar (default: on a terminal)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    sni: Sni = None,
    timeout: Timeout = None,
    warn: Warn = None,
    crit: Crit = None,
    ca: Ca = None,
    dns_server: DnsServer = None,
    workers: Annotated[
        int, typer.Option(min=0, max=256, help="processes probing in parallel (0: one per CPU)")
    ] = 0,
    loop: Annotated[
        EventLoop,
        typer.Option(help="event loop (auto: uvloop when installed, else asyncio's)"),
    ] = EventLoop.auto,
) -> None:
    """Probe many targets with bounded concurrency; stream results (--format jsonl)."""
    code = run_scan(
        file, fmt.value, concurrency, progress, verbose,
        sni, timeout, warn, crit, ca, dns_server, workers, loop.value,
    )  # fmt: skip
    raise typer.Exit(code)
