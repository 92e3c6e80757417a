"""`tlswatch scan` over several processes (``--workers``, default: one per CPU).

The parent reads the target file and writes the output; every process, the parent
included, probes (tlswatch.scanpool). Targets travel as their text and are parsed where
they are probed; with ``--format jsonl`` the JSON line is rendered there too, so the parent
only copies finished lines to stdout, in order of completion.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from datetime import datetime
from typing import Any

from tlswatch.cli.loops import LoopFactory
from tlswatch.cli.loops import run as run_loop
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
    loop_factory: LoopFactory | None = None,
) -> tuple[Status, list[str]]:
    """Scan ``file`` with ``workers`` processes; the worst status and the bad lines."""
    from tlswatch.cli.scanrun import _lines, _target, echo_err, emit, stderr_console

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

    lines = _lines(file)
    first = next(lines, None)
    _prewarm(first[1] if first is not None else None, overrides)
    items = itertools.chain([first] if first is not None else [], lines)
    pool: WorkerPool[tuple[int, str], Record] = WorkerPool(
        handle, fallback, workers=workers, concurrency=concurrency, loop_factory=loop_factory
    )  # forks here, before any event loop exists

    async def drive() -> tuple[Status, list[str]]:
        # Rich only when a bar may be drawn (scanrun.stderr_console): start-up and memory
        console = stderr_console(progress, fmt)
        show = console is not None and (console.is_terminal if progress is None else progress)
        collected: list[TargetResult] = []
        bad: list[str] = []
        worst = Status.OK
        with contextlib.ExitStack() as stack:
            bar: Any = None
            if show:
                from rich.progress import Progress, SpinnerColumn, TextColumn

                bar = stack.enter_context(
                    Progress(
                        SpinnerColumn(),
                        TextColumn("{task.completed} done"),
                        console=console,
                        transient=True,
                        redirect_stdout=sys.stdout.isatty(),  # never `> file` output to the bar
                    )
                )
                task = bar.add_task("", total=None)
            async for batch in pool.results(items):
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
                        echo_err(f"tlswatch: {payload}")
                sys.stdout.flush()
                if bar is not None:
                    bar.update(task, advance=len(batch))
        if fmt != "jsonl":
            emit(collected, fmt, checked_at, verbose)
        return worst, bad

    try:
        return run_loop(drive(), loop_factory)
    finally:
        pool.close()


def _prewarm(line: str | None, overrides: dict[str, str]) -> None:
    """Before forking: load what every process needs (tlswatch.probe.prewarm), using the
    first target's trust settings, then move it all to the permanent GC generation so the
    children neither collect nor copy those pages (gc.freeze's documented use)."""
    import gc

    from tlswatch.cli.scanrun import _target
    from tlswatch.probe import prewarm

    targets = []
    if line is not None:
        with contextlib.suppress(TargetError):
            targets.append(_target(line, overrides))
    prewarm(targets)
    gc.freeze()
