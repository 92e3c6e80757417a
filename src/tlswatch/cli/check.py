"""`tlswatch check` and `tlswatch scan`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tlswatch.cli import app
from tlswatch.errors import TargetError
from tlswatch.model import Status, TargetResult
from tlswatch.net.resolve import Resolver
from tlswatch.probe import DEFAULT_CONCURRENCY, ProbeSettings, check_targets, scan
from tlswatch.render.jsonfmt import dumps_document, dumps_line
from tlswatch.render.table import render_table
from tlswatch.targets import Target, parse_target


class CheckFormat(StrEnum):
    table = "table"
    json = "json"


class ScanFormat(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


def _overrides(
    sni: str | None, timeout: float | None, warn: str | None, crit: str | None, ca: str | None
) -> dict[str, str]:
    out: dict[str, str] = {}
    if sni is not None:
        out["sni"] = sni
    if timeout is not None:
        out["timeout"] = f"{timeout:g}"
    if warn is not None:
        out["warn"] = warn
    if crit is not None:
        out["crit"] = crit
    if ca is not None:
        out["ca"] = ca
    return out


def _target(text: str, overrides: dict[str, str]) -> Target:
    t = parse_target(text)
    return t.with_options(**overrides) if overrides else t


def _settings(dns_server: list[str] | None) -> ProbeSettings:
    return ProbeSettings(resolver=Resolver(nameservers=dns_server or None))


Sni = Annotated[str | None, typer.Option(help="SNI to send (overrides the URL's sni=)")]
Timeout = Annotated[float | None, typer.Option(help="seconds per phase (overrides timeout=)")]
Warn = Annotated[str | None, typer.Option(help="warning threshold: days or N%")]
Crit = Annotated[str | None, typer.Option(help="critical threshold: days or N%")]
Ca = Annotated[str | None, typer.Option(help="PEM file of extra trust anchors")]
DnsServer = Annotated[
    list[str] | None,
    typer.Option("--dns-server", help="ask this DNS server (ip[:port]) instead of the system resolver"),
]


@app.command()
def check(
    targets: Annotated[list[str], typer.Argument(help="target URLs, e.g. smtp://mail.example.com:587")],
    fmt: Annotated[CheckFormat, typer.Option("--format", "-f", help="output format")] = CheckFormat.table,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show chains and every finding")] = False,
    sni: Sni = None,
    timeout: Timeout = None,
    warn: Warn = None,
    crit: Crit = None,
    ca: Ca = None,
    dns_server: DnsServer = None,
) -> None:
    """Probe targets now; exit with the worst status (0 ok, 1 warning, 2 critical, 3 unknown)."""
    overrides = _overrides(sni, timeout, warn, crit, ca)
    try:
        parsed = [_target(t, overrides) for t in targets]
    except TargetError as exc:
        typer.echo(f"tlswatch: {exc}", err=True)
        raise typer.Exit(3) from None
    checked_at = datetime.now(UTC)
    results = asyncio.run(check_targets(parsed, _settings(dns_server)))
    emit(results, fmt.value, checked_at, verbose)
    raise typer.Exit(Status.worst([r.status for r in results]).exit_code)


def emit(results: list[TargetResult], fmt: str, checked_at: datetime, verbose: bool = False) -> None:
    if fmt == "json":
        sys.stdout.write(dumps_document(results, checked_at) + "\n")
    else:
        render_table(results, Console(highlight=False), verbose)


def _lines(source: str) -> Iterator[str]:
    stream = sys.stdin if source == "-" else Path(source).open(encoding="utf-8")  # noqa: SIM115
    with stream:
        for line in stream:
            text = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
            if text:
                yield text


@app.command("scan")
def scan_cmd(
    file: Annotated[str, typer.Option("--file", "-f", help="file of target URLs, one a line ('-': stdin)")],
    fmt: Annotated[ScanFormat, typer.Option("--format", help="output format")] = ScanFormat.table,
    concurrency: Annotated[int, typer.Option(min=1, max=10000, help="probes in flight at once")] = DEFAULT_CONCURRENCY,
    progress: Annotated[bool | None, typer.Option(help="progress bar (default: on a terminal)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    sni: Sni = None,
    timeout: Timeout = None,
    warn: Warn = None,
    crit: Crit = None,
    ca: Ca = None,
    dns_server: DnsServer = None,
) -> None:
    """Probe many targets with bounded concurrency; stream results (--format jsonl)."""
    overrides = _overrides(sni, timeout, warn, crit, ca)
    if file != "-" and not Path(file).is_file():
        typer.echo(f"tlswatch: {file}: no such file", err=True)
        raise typer.Exit(3)
    bad: list[str] = []

    def targets() -> Iterator[Target]:
        for n, line in enumerate(_lines(file), 1):
            try:
                yield _target(line, overrides)
            except TargetError as exc:
                bad.append(f"{file}:{n}: {exc}")
                typer.echo(f"tlswatch: {file}:{n}: {exc}", err=True)

    checked_at = datetime.now(UTC)
    worst = asyncio.run(
        _run_scan(targets(), fmt.value, concurrency, progress, verbose, checked_at, _settings(dns_server))
    )
    if bad:
        worst = Status.worst([worst, Status.UNKNOWN])
    raise typer.Exit(worst.exit_code)


async def _run_scan(
    targets: Iterator[Target],
    fmt: str,
    concurrency: int,
    progress: bool | None,
    verbose: bool,
    checked_at: datetime,
    settings: ProbeSettings,
) -> Status:
    console = Console(stderr=True)
    show = console.is_terminal if progress is None else progress
    collected: list[TargetResult] = []
    worst: list[Status] = []
    from rich.progress import Progress, SpinnerColumn, TextColumn  # noqa: PLC0415

    with Progress(
        SpinnerColumn(), TextColumn("{task.completed} done  {task.description}"),
        console=console, disable=not show, transient=True,
    ) as bar:
        task = bar.add_task("", total=None)
        async for result in scan(targets, concurrency, settings):
            worst = [Status.worst([*worst, result.status])]
            if fmt == "jsonl":
                sys.stdout.write(dumps_line(result) + "\n")
                sys.stdout.flush()
            else:
                collected.append(result)
            bar.update(task, advance=1, description=result.target)
    if fmt != "jsonl":
        emit(collected, fmt, checked_at, verbose)
    return worst[0] if worst else Status.OK
