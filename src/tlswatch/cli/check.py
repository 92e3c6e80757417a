"""`tlswatch check` and `tlswatch scan`."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Iterator
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
    nagios = "nagios"
    prometheus = "prometheus"
    csv = "csv"


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
    results = asyncio.run(check_targets(parsed, settings))
    emit(results, fmt.value, checked_at, verbose)
    raise typer.Exit(Status.worst([r.status for r in results]).exit_code)


def emit(results: list[TargetResult], fmt: str, checked_at: datetime, verbose: bool = False) -> None:
    if fmt == "json":
        sys.stdout.write(dumps_document(results, checked_at) + "\n")
    elif fmt in ("nagios", "prometheus", "csv"):
        from tlswatch.render.csv import render_csv
        from tlswatch.render.nagios import render_nagios
        from tlswatch.render.prometheus import render_prometheus

        render = {"nagios": render_nagios, "prometheus": render_prometheus, "csv": render_csv}
        sys.stdout.write(render[fmt](results))
    else:
        render_table(results, Console(highlight=False), verbose)


#: a comment: a whole line starting with ``#``, or `` #...`` after a URL
_COMMENT = re.compile(r"(^|\s)#.*$")


def _target_text(line: str) -> str:
    """The target on one line of a scan file, without comment and blanks ("" if none)."""
    return _COMMENT.sub("", line).strip()


def _lines(source: str) -> Iterator[tuple[int, str]]:
    """(line number, target text) for every line of ``source`` ('-': stdin) that holds a
    target, read lazily. Undecodable bytes become U+FFFD, so such a line is reported as a
    bad target with its number rather than ending the scan."""
    stream = (
        sys.stdin
        if source == "-"
        else Path(source).open(encoding="utf-8", errors="replace")  # noqa: SIM115
    )
    with stream:
        for n, line in enumerate(stream, 1):
            text = _target_text(line)
            if text:
                yield n, text


async def _stdin_lines() -> AsyncIterator[tuple[int, str]]:
    """Like ``_lines("-")``, but each line is read in a thread: a slow producer on the
    other end of a pipe never stalls the probes in flight (their deadlines keep time)."""
    loop = asyncio.get_running_loop()
    n = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        n += 1
        text = _target_text(line)
        if text:
            yield n, text


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
    workers: Annotated[
        int, typer.Option(min=0, max=256, help="processes probing in parallel (0: one per CPU)")
    ] = 0,
) -> None:
    """Probe many targets with bounded concurrency; stream results (--format jsonl)."""
    overrides = _overrides(sni, timeout, warn, crit, ca)
    if file != "-":
        try:
            Path(file).open("rb").close()
        except OSError as exc:
            typer.echo(f"tlswatch: {file}: cannot read: {exc.strerror or exc}", err=True)
            raise typer.Exit(3) from None
    from tlswatch.scanpool import default_workers

    if (workers or default_workers()) > 1:
        from tlswatch.cli.pooled import run_pooled

        pooled_worst, pooled_bad = run_pooled(
            file, overrides, fmt.value, concurrency, workers or default_workers(),
            progress, verbose, datetime.now(UTC), _settings(dns_server),
        )  # fmt: skip
        if pooled_bad:
            pooled_worst = Status.worst([pooled_worst, Status.UNKNOWN])
        raise typer.Exit(pooled_worst.exit_code)
    bad = 0  # a count, not a list: memory stays flat however many lines are bad
    where = "<stdin>" if file == "-" else file

    def parse(n: int, line: str) -> Target | None:
        nonlocal bad
        try:
            return _target(line, overrides)
        except TargetError as exc:
            bad += 1
            typer.echo(f"tlswatch: {where}:{n}: {exc}", err=True)
            return None

    def from_file() -> Iterator[Target]:
        for n, line in _lines(file):
            if (target := parse(n, line)) is not None:
                yield target

    async def from_stdin() -> AsyncIterator[Target]:
        async for n, line in _stdin_lines():
            if (target := parse(n, line)) is not None:
                yield target

    source = from_stdin() if file == "-" else from_file()
    checked_at = datetime.now(UTC)
    worst = asyncio.run(
        _run_scan(source, fmt.value, concurrency, progress, verbose, checked_at, _settings(dns_server))
    )
    if bad:
        worst = Status.worst([worst, Status.UNKNOWN])
    raise typer.Exit(worst.exit_code)


async def _run_scan(
    targets: Iterator[Target] | AsyncIterator[Target],
    fmt: str,
    concurrency: int,
    progress: bool | None,
    verbose: bool,
    checked_at: datetime,
    settings: ProbeSettings,
) -> Status:
    console = Console(stderr=True)
    show = console.is_terminal if progress is None else progress
    collected: list[TargetResult] = []  # only for table/json: jsonl keeps nothing
    worst = Status.OK
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.completed} done  {task.description}"),
        console=console, disable=not show, transient=True,
        # The bar lives on stderr. Rich would route stdout through it while it is shown:
        # only acceptable when stdout is that terminal too, never for `> results.jsonl`.
        redirect_stdout=sys.stdout.isatty(),
    ) as bar:
        task = bar.add_task("", total=None)
        async for result in scan(targets, concurrency, settings):
            worst = Status.worst([worst, result.status])
            if fmt == "jsonl":
                sys.stdout.write(dumps_line(result) + "\n")
                sys.stdout.flush()
            else:
                collected.append(result)
            bar.update(task, advance=1, description=result.target)
    if fmt != "jsonl":
        emit(collected, fmt, checked_at, verbose)
    return worst
