"""`tlswatch scan` over several processes (``--workers``, default: one per CPU).

The parent reads the target file and writes the output; every process, the parent
included, probes (tlswatch.scanpool). Targets travel as their text and are parsed where
they are probed; with ``--format jsonl`` the JSON line is rendered there too, so the parent
only copies finished lines to stdout, in order of completion.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime

import typer
from rich.console import Console

from tlswatch.errors import TargetError
from tlswatch.model import Status, TargetResult
from tlswatch.probe import ProbeSettings, check_target
from tlswatch.render.jsonfmt import dumps_line
from tlswatch.scanpool import WorkerPool

#: (kind, status, payload): kind "ok" (payload: a JSON line or a TargetResult), "bad"
#: (a target line that does not parse) or "error" (a probe raised: a bug)
Record = tuple[str, str, object]


def run_pooled(
    file: str,
    overrides: dict[str, str],
    fmt: str,
    concurrency: int,
    workers: int,
    progress: bool | None,
    verbose: bool,
    checked_at: datetime,
    settings: ProbeSettings,
) -> tuple[Status, list[str]]:
    """Scan ``file`` with ``workers`` processes; the worst status and the bad lines."""
    from tlswatch.cli.check import _lines, _target, emit  # check imports this module

    async def handle(item: tuple[int, str]) -> Record:
        n, line = item
        try:
            target = _target(line, overrides)
        except TargetError as exc:
            return ("bad", Status.UNKNOWN.value, f"{file}:{n}: {exc}")
        result = await check_target(target, settings)
        return ("ok", result.status.value, dumps_line(result) if fmt == "jsonl" else result)

    def fallback(item: tuple[int, str], exc: BaseException) -> Record:
        n, line = item
        return ("error", Status.UNKNOWN.value, f"{file}:{n}: internal error probing {line}: {exc}")

    pool: WorkerPool[tuple[int, str], Record] = WorkerPool(
        handle, fallback, workers=workers, concurrency=concurrency
    )  # forks here, before any event loop exists

    async def drive() -> tuple[Status, list[str]]:
        console = Console(stderr=True)
        show = console.is_terminal if progress is None else progress
        collected: list[TargetResult] = []
        bad: list[str] = []
        worst = Status.OK
        from rich.progress import Progress, SpinnerColumn, TextColumn

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.completed} done"),
            console=console,
            disable=not show,
            transient=True,
            redirect_stdout=sys.stdout.isatty(),  # never send `> file` output to the bar
        ) as bar:
            task = bar.add_task("", total=None)
            async for batch in pool.results(_lines(file)):
                for kind, status, payload in batch:
                    worst = Status.worst([worst, Status(status)])
                    if kind == "ok":
                        if isinstance(payload, str):
                            sys.stdout.write(payload + "\n")
                        else:
                            assert isinstance(payload, TargetResult)
                            collected.append(payload)
                    else:
                        bad.append(str(payload))
                        typer.echo(f"tlswatch: {payload}", err=True)
                sys.stdout.flush()
                bar.update(task, advance=len(batch))
        if fmt != "jsonl":
            emit(collected, fmt, checked_at, verbose)
        return worst, bad

    try:
        return asyncio.run(drive())
    finally:
        pool.close()
