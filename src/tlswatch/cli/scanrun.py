"""`tlswatch scan` without Typer: the body of the command, and a fast front for it.

Start-up counts when a scan is short or a monitoring system runs one per minute: Typer
builds a pydantic adapter per option of the invoked command (60–90 ms and ~5 MB before the
first connection, docs/performance.md). So :func:`tlswatch.cli.main` first offers the
arguments of ``tlswatch scan`` to :func:`parse_scan_args`, which accepts only plain,
well-formed uses of the documented options (the values converted as click converts them)
and runs :func:`run_scan` directly. Anything else — ``--help``, an unknown or misspelt
option, a value out of range, a missing value — returns None and goes through Typer, so
help and error messages stay exactly Typer's. Both paths run the same :func:`run_scan`.

Rich (progress bar, tables) is imported only when something will be drawn.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tlswatch.errors import TargetError
from tlswatch.model import Status, TargetResult
from tlswatch.net.resolve import Resolver
from tlswatch.probe import DEFAULT_CONCURRENCY, ProbeSettings, scan
from tlswatch.render.jsonfmt import dumps_document, dumps_line
from tlswatch.targets import Target, parse_target

if TYPE_CHECKING:
    from rich.console import Console

SCAN_FORMATS = ("table", "json", "jsonl")


def echo_err(message: str) -> None:
    """What ``typer.echo(message, err=True)`` does with a plain message."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


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


def emit(
    results: list[TargetResult], fmt: str, checked_at: datetime, verbose: bool = False
) -> None:
    if fmt == "json":
        sys.stdout.write(dumps_document(results, checked_at) + "\n")
    elif fmt in ("nagios", "prometheus", "csv"):
        from tlswatch.render.csv import render_csv
        from tlswatch.render.nagios import render_nagios
        from tlswatch.render.prometheus import render_prometheus

        render = {"nagios": render_nagios, "prometheus": render_prometheus, "csv": render_csv}
        sys.stdout.write(render[fmt](results))
    else:
        from tlswatch.render.console import stdout_console  # Rich only when drawing
        from tlswatch.render.table import render_table

        render_table(results, stdout_console(), verbose)


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
        sys.stdin if source == "-" else Path(source).open(encoding="utf-8", errors="replace")  # noqa: SIM115
    )
    with stream:
        for n, line in enumerate(stream, 1):
            text = _target_text(line)
            if text:
                yield n, text


def _has_fewer_targets(file: str, n: int) -> bool:
    """Whether ``file`` holds fewer than ``n`` target lines (reads at most ``n`` of them)."""
    return sum(1 for _ in zip(range(n), _lines(file), strict=False)) < n


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


def stderr_console(progress: bool | None, fmt: str) -> Console | None:
    """Rich's stderr console when a progress bar may be drawn, else None (rich is then
    not imported at all). With ``progress`` unset, Rich draws only on a terminal; it also
    honours TTY_COMPATIBLE and FORCE_COLOR, so those defer to Rich itself."""
    if progress is False or (
        progress is None
        and not _isatty(sys.stderr)
        and "TTY_COMPATIBLE" not in os.environ
        and "FORCE_COLOR" not in os.environ
    ):
        return None
    from rich.console import Console

    return Console(stderr=True)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def run_scan(
    file: str,
    fmt: str = "table",
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool | None = None,
    verbose: bool = False,
    sni: str | None = None,
    timeout: float | None = None,
    warn: str | None = None,
    crit: str | None = None,
    ca: str | None = None,
    dns_server: list[str] | None = None,
    workers: int = 0,
    loop: str = "auto",
) -> int:
    """``tlswatch scan`` with parsed options; the exit code."""
    from tlswatch.cli.loops import LoopUnavailable, loop_factory
    from tlswatch.cli.loops import run as run_loop

    try:
        factory = loop_factory(loop)
    except LoopUnavailable as exc:
        echo_err(f"tlswatch: {exc}")
        return 3
    overrides = _overrides(sni, timeout, warn, crit, ca)
    if file != "-":
        try:
            Path(file).open("rb").close()
        except OSError as exc:
            echo_err(f"tlswatch: {file}: cannot read: {exc.strerror or exc}")
            return 3
    from tlswatch.scanpool import default_workers

    workers = workers or default_workers()
    if workers > 1 and file != "-" and _has_fewer_targets(file, 2):
        workers = 1  # one target: a worker process would only add its fork and start-up
    if workers > 1:
        from tlswatch.cli.pooled import run_pooled

        pooled_worst, pooled_bad = run_pooled(
            file, overrides, fmt, concurrency, workers,
            progress, verbose, datetime.now(UTC), _settings(dns_server), factory,
        )  # fmt: skip
        if pooled_bad:
            pooled_worst = Status.worst([pooled_worst, Status.UNKNOWN])
        return pooled_worst.exit_code
    bad = 0  # a count, not a list: memory stays flat however many lines are bad
    where = "<stdin>" if file == "-" else file

    def parse(n: int, line: str) -> Target | None:
        nonlocal bad
        try:
            return _target(line, overrides)
        except TargetError as exc:
            bad += 1
            echo_err(f"tlswatch: {where}:{n}: {exc}")
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
    worst = run_loop(
        _run_scan(source, fmt, concurrency, progress, verbose, checked_at, _settings(dns_server)),
        factory,
    )
    if bad:
        worst = Status.worst([worst, Status.UNKNOWN])
    return worst.exit_code


async def _run_scan(
    targets: Iterator[Target] | AsyncIterator[Target],
    fmt: str,
    concurrency: int,
    progress: bool | None,
    verbose: bool,
    checked_at: datetime,
    settings: ProbeSettings,
) -> Status:
    collected: list[TargetResult] = []  # only for table/json: jsonl keeps nothing
    worst = Status.OK
    console = stderr_console(progress, fmt)
    show = console is not None and (console.is_terminal if progress is None else progress)
    if not show:
        async for result in scan(targets, concurrency, settings):
            worst = Status.worst([worst, result.status])
            if fmt == "jsonl":
                sys.stdout.write(dumps_line(result) + "\n")
                sys.stdout.flush()
            else:
                collected.append(result)
    else:
        from rich.progress import Progress, SpinnerColumn, TextColumn

        with Progress(
            SpinnerColumn(), TextColumn("{task.completed} done  {task.description}"),
            console=console, transient=True,
            # The bar lives on stderr. Rich would route stdout through it while it is
            # shown: only acceptable when stdout is that terminal too, never for
            # `> results.jsonl`.
            redirect_stdout=sys.stdout.isatty(),
        ) as bar:  # fmt: skip
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


# --- the fast front ------------------------------------------------------------------------


class _Pacified:
    """A stream whose flush ignores a closed pipe (what click's PacifyFlushWrapper does
    for Typer after EPIPE, so interpreter shutdown prints no second error)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def run_standalone(kwargs: dict[str, Any]) -> NoReturn:
    """Run :func:`run_scan` and exit the way Typer's standalone mode does: the exit code;
    130 on Ctrl-C; 1 with "Aborted!" on end of input; 1, quietly, when stdout's reader
    went away (EPIPE)."""
    _tune_gc()
    try:
        code = run_scan(**kwargs)
    except KeyboardInterrupt:
        sys.exit(130)
    except EOFError:
        echo_err("")
        echo_err("Aborted!")
        sys.exit(1)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        sys.stdout = _Pacified(sys.stdout)  # type: ignore[assignment]
        sys.stderr = _Pacified(sys.stderr)  # type: ignore[assignment]
        sys.exit(1)
    _exit_now(code)


def _exit_now(code: int) -> NoReturn:
    """Leave without the interpreter's teardown: the scan is complete and its output
    flushed, and tearing down cryptography, asyncio and every parsed certificate took
    ≈ 30 ms per scan (issue 6). Nothing of ours needs atexit handlers here; a flush that
    fails goes the ordinary way, so its error is reported as before."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        sys.exit(code)
    os._exit(code)


#: young-generation threshold for a scan process (CPython's default: 700)
GC_YOUNG_THRESHOLD = 5000


def _tune_gc() -> None:
    """Cheaper cyclic GC for the scan process (issue 6; measured: GC time per 3,000
    endpoints 0.15-0.20 s -> 0.09 s, 3-4 % of the scan's CPU). Only here, in the process
    that ``tlswatch scan`` starts, never in a library caller's process.

    * ``gc.freeze()``: the import-time objects (≈ 27,000: modules, classes, cryptography's
      tables) move to the permanent generation, so full collections stop re-walking them,
      and forked ``--workers`` children no longer copy the pages the collector would
      otherwise write to (the documented use of freeze before fork).
    * a larger young generation: with 100 handshakes in flight, every 700 allocations
      walked the same live coroutines and buffers again; most per-endpoint objects die
      by reference counting before a collection ever sees them."""
    import gc

    gc.freeze()
    _young, mid, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, mid, old)


_VALUE_OPTIONS = {
    "--file": "file",
    "-f": "file",
    "--format": "fmt",
    "--concurrency": "concurrency",
    "--sni": "sni",
    "--timeout": "timeout",
    "--warn": "warn",
    "--crit": "crit",
    "--ca": "ca",
    "--dns-server": "dns_server",
    "--workers": "workers",
    "--loop": "loop",
}
_FLAGS: dict[str, tuple[str, bool]] = {
    "--progress": ("progress", True),
    "--no-progress": ("progress", False),
    "--verbose": ("verbose", True),
    "-v": ("verbose", True),
}
_INT_RANGES = {"concurrency": (1, 10000), "workers": (0, 256)}


def parse_scan_args(argv: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of :func:`run_scan` for ``tlswatch scan ARGV``, or None when
    the arguments are anything but a plain valid use (then Typer parses them and reports
    whatever is wrong in its own words)."""
    out: dict[str, Any] = {}
    dns: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _FLAGS:
            name, flag = _FLAGS[arg]
            out[name] = flag
            i += 1
            continue
        opt, eq, inline = arg.partition("=")
        if not arg.startswith("--"):
            opt, eq = arg, ""
        if opt not in _VALUE_OPTIONS:
            return None
        if eq:
            value = inline
            i += 1
        else:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
            if value.startswith("-") and value != "-":
                return None  # let click decide what an option-looking value means
            i += 2
        name = _VALUE_OPTIONS[opt]
        try:
            converted = _convert(name, value)
        except ValueError:
            return None
        if name == "dns_server":
            dns.append(value)
        else:
            out[name] = converted
    if "file" not in out:
        return None
    if dns:
        out["dns_server"] = dns
    return out


def _convert(name: str, value: str) -> Any:
    if name in _INT_RANGES:
        number = int(value)  # click's IntRange converts with int()
        low, high = _INT_RANGES[name]
        if not low <= number <= high:
            raise ValueError(name)
        return number
    if name == "timeout":
        return float(value)  # click's FLOAT converts with float()
    if name == "fmt" and value not in SCAN_FORMATS:
        raise ValueError(value)
    if name == "loop" and value not in ("auto", "asyncio", "uvloop"):  # loops.LOOP_CHOICES
        raise ValueError(value)
    return value


__all__ = ["echo_err", "emit", "parse_scan_args", "run_scan", "run_standalone"]
