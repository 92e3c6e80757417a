"""`tlswatch scan` and the library's ``scan()``: files and stdin, comments and bad lines,
bounded concurrency, streaming, the progress bar, flat memory, exit codes.

End-to-end cases run the real CLI in a subprocess, both in one process (``--workers 1``)
and with the default worker processes; scripted servers (tests/support/fakeserver.py)
count simultaneous connections or hold a probe until the test lets it go.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.haproxy import HaproxyServer
from tests.support import fakeserver as fs
from tests.support.processes import free_port
from tlswatch.errors import FailureClass
from tlswatch.model import Status, TargetResult
from tlswatch.probe import check_targets, scan
from tlswatch.targets import Target, parse_target

TLSWATCH = str(Path(sys.executable).parent / "tlswatch")
#: `--workers 1`: the in-process scan; None: the default (one process per CPU)
WORKERS = pytest.mark.parametrize("workers", ["1", None], ids=["one-process", "default-workers"])


@dataclass
class ScanServers:
    servers: fs.FakeServers
    closed: int  # nothing listens: connect_refused at once
    hold: int  # holds each connection 0.3 s, counting simultaneous ones
    counter: fs.Counter


@pytest.fixture(scope="module")
def scan_servers() -> Iterator[ScanServers]:
    with fs.fake_servers() as servers:
        counter = fs.Counter()
        hold = servers.serve(fs.hold_then_close(counter, 0.3))
        yield ScanServers(servers, free_port(), hold, counter)


def run_cli(
    args: list[str], workers: str | None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [TLSWATCH, *args] + (["--workers", workers] if workers else [])
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def jsonl(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def worst_exit(records: list[dict[str, object]], extra: list[Status] = ()) -> int:  # type: ignore[assignment]
    return Status.worst([Status(str(r["status"])) for r in records] + list(extra)).exit_code


# --- input: files, stdin, comments, bad lines -------------------------------------------


@WORKERS
def test_file_with_comments_and_bad_lines(
    scan_servers: ScanServers, haproxy_tls: HaproxyServer, tmp_path: Path, workers: str | None
) -> None:
    """Comment lines, trailing comments and blank lines are skipped; each bad line is
    reported as FILE:LINE on stderr and the scan goes on with the rest; the exit code is the
    worst status, a bad line counting as unknown."""
    targets = tmp_path / "targets.txt"
    targets.write_text(
        "# the mail servers\n"
        f"tls://127.0.0.1:{scan_servers.closed}?timeout=2   # decommissioned\n"
        "\n"
        "not a url at all\n"
        f"tls://127.0.0.1:{haproxy_tls.port}?timeout=5\n"
        "bogus://example.test:1\n"
    )
    proc = run_cli(["scan", "-f", str(targets), "--format", "jsonl"], workers)
    records = jsonl(proc.stdout)
    assert sorted(str(r["target"]) for r in records) == sorted(
        [
            f"tls://127.0.0.1:{scan_servers.closed}?timeout=2",
            f"tls://127.0.0.1:{haproxy_tls.port}?timeout=5",
        ]
    )
    assert f"{targets}:4:" in proc.stderr
    assert f"{targets}:6:" in proc.stderr and "bogus" in proc.stderr
    assert proc.stderr.count(f"{targets}:") == 2
    assert proc.returncode == worst_exit(records, [Status.UNKNOWN])


@WORKERS
def test_stdin(scan_servers: ScanServers, haproxy_tls: HaproxyServer, workers: str | None) -> None:
    """`-f -` reads the targets from stdin; bad lines are reported as <stdin>:LINE (or
    -:LINE) with their number."""
    text = (
        f"tls://127.0.0.1:{haproxy_tls.port}?timeout=5\n"
        "# comment\n"
        "tls://127.0.0.1:99999\n"
        f"tls://127.0.0.1:{scan_servers.closed}?timeout=2\n"
    )
    proc = run_cli(["scan", "-f", "-", "--format", "jsonl"], workers, stdin=text)
    records = jsonl(proc.stdout)
    assert len(records) == 2
    ports = {r["endpoints"][0]["port"] for r in records}  # type: ignore[index]
    assert ports == {haproxy_tls.port, scan_servers.closed}
    assert ":3:" in proc.stderr and "out of range" in proc.stderr
    assert proc.returncode == worst_exit(records, [Status.UNKNOWN])


@WORKERS
def test_exit_code_is_worst_status(
    haproxy_tls: HaproxyServer, tmp_path: Path, workers: str | None
) -> None:
    """Without failures the exit code is still the worst status of the results (Nagios
    codes): the one collected chain decides it."""
    targets = tmp_path / "ok.txt"
    targets.write_text(f"tls://127.0.0.1:{haproxy_tls.port}?timeout=5\n")
    proc = run_cli(["scan", "-f", str(targets), "--format", "jsonl"], workers)
    (record,) = jsonl(proc.stdout)
    assert record["endpoints"][0]["error"] is None  # type: ignore[index]
    assert proc.returncode == worst_exit([record])
    assert proc.returncode != 3


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    """A missing file or a directory is one line on stderr and exit 3, not a traceback."""
    for path in (tmp_path / "missing.txt", tmp_path):
        proc = run_cli(["scan", "-f", str(path)], "1")
        assert proc.returncode == 3
        assert proc.stderr.startswith(f"tlswatch: {path}: cannot read")
        assert "Traceback" not in proc.stderr


# --- concurrency, streaming, progress ---------------------------------------------------


@WORKERS
def test_concurrency_bound_is_respected(
    scan_servers: ScanServers, tmp_path: Path, workers: str | None
) -> None:
    """With --concurrency 3 the server never sees more than 3 connections at once, and
    does see 3 (the probes do run in parallel)."""
    counter = scan_servers.counter
    targets = tmp_path / "hold.txt"
    targets.write_text(f"tls://127.0.0.1:{scan_servers.hold}?timeout=5\n" * 12)
    counter.peak = counter.total = 0
    proc = run_cli(["scan", "-f", str(targets), "--format", "jsonl", "--concurrency", "3"], workers)
    assert len(jsonl(proc.stdout)) == 12, proc.stderr
    assert counter.total == 12
    assert counter.peak == 3


def _read_line(stream: int, deadline: float) -> bytes:
    """One line from a pipe, or b"" if the deadline passes first (poll, not sleep)."""
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return b""
        chunk = os.read(stream, 1)
        if not chunk:
            return line
        line += chunk
    return line


@WORKERS
def test_jsonl_streams_results_as_they_finish(
    scan_servers: ScanServers, tmp_path: Path, workers: str | None
) -> None:
    """`--format jsonl` writes each result when it finishes: the quick target's line is
    out while the slow one is still held by the server (and the process still runs)."""
    gate = fs.Gate(scan_servers.servers)
    slow = scan_servers.servers.serve(gate.handler())
    targets = tmp_path / "stream.txt"
    targets.write_text(
        f"tls://127.0.0.1:{slow}?timeout=30\ntls://127.0.0.1:{scan_servers.closed}?timeout=30\n"
    )
    argv = [TLSWATCH, "scan", "-f", str(targets), "--format", "jsonl"]
    argv += ["--workers", workers] if workers else []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        first = _read_line(proc.stdout.fileno(), time.monotonic() + 20)
        assert first, "no result line while the slow target was held"
        assert json.loads(first)["endpoints"][0]["port"] == scan_servers.closed
        # The slow probe may reach the server only after the quick line is out (another
        # worker process took it): wait for it, then it is held and the scan still runs.
        assert gate.arrived.wait(20), "the slow target never reached its server"
        assert proc.poll() is None  # still running: the slow probe is in flight
        gate.open()
        rest = proc.stdout.read()
        assert proc.wait(30) == 3
    finally:
        gate.open()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (second,) = jsonl(rest.decode())
    assert second["endpoints"][0]["error"]["code"] == FailureClass.CLOSED.value  # type: ignore[index]


@pytest.mark.parametrize("terminal", [True, False], ids=["stderr-terminal", "stderr-pipe"])
def test_progress_bar_only_on_a_terminal(
    scan_servers: ScanServers, tmp_path: Path, terminal: bool
) -> None:
    """The progress bar is drawn on stderr only when stderr is a terminal; the results go
    to stdout either way (never into the bar, even when stdout is redirected)."""
    targets = tmp_path / "one.txt"
    targets.write_text(f"tls://127.0.0.1:{scan_servers.closed}?timeout=2\n" * 3)
    argv = [TLSWATCH, "scan", "-f", str(targets), "--format", "jsonl", "--workers", "1"]
    if terminal:
        controller, child = pty.openpty()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=child)
        os.close(child)
        out, _ = proc.communicate(timeout=60)
        err = b""
        with contextlib.suppress(OSError):  # EIO once the child side is closed
            while chunk := os.read(controller, 65536):
                err += chunk
        os.close(controller)
    else:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=60)
    assert len(jsonl(out.decode())) == 3
    assert b'"schema"' not in err
    if terminal:
        assert b"3 done" in err
    else:
        assert b"done" not in err and b"\x1b" not in err


# --- the library's scan() ---------------------------------------------------------------


async def test_scan_pulls_lazily_and_keeps_nothing(scan_servers: ScanServers) -> None:
    """20,000 targets from a generator: scan() pulls a target only when a slot frees, so
    targets pulled but not yet yielded never exceed the concurrency, and results are not
    kept once yielded (only a handful of TargetResult objects are alive mid-scan)."""
    total, concurrency = 20_000, 50
    target = parse_target(f"tls://127.0.0.1:{scan_servers.closed}?timeout=2")
    pulled = 0

    def targets() -> Iterator[Target]:
        nonlocal pulled
        for _ in range(total):
            pulled += 1
            yield target

    yielded = peak = alive_mid_scan = 0
    async for result in scan(targets(), concurrency=concurrency):
        yielded += 1
        peak = max(peak, pulled - yielded + 1)
        assert result.endpoints[0].error is not None
        if yielded == total // 2:
            del result
            gc.collect()
            alive_mid_scan = sum(isinstance(o, TargetResult) for o in gc.get_objects())
    assert yielded == pulled == total
    assert peak <= concurrency
    assert alive_mid_scan <= concurrency + 5


async def test_scan_async_source_does_not_hold_back_results(scan_servers: ScanServers) -> None:
    """With an async source, a result is yielded while the next target is still being
    awaited: the source here only produces its second target after the first result."""
    first_result = asyncio.Event()
    target = parse_target(f"tls://127.0.0.1:{scan_servers.closed}?timeout=2")

    async def source() -> AsyncIterator[Target]:
        yield target
        await first_result.wait()
        yield target

    seen = 0
    async with asyncio.timeout(10):
        async for _ in scan(source(), concurrency=4):
            seen += 1
            first_result.set()
    assert seen == 2


async def test_closing_scan_early_cancels_probes_in_flight(scan_servers: ScanServers) -> None:
    """Leaving a scan early (closing the generator) cancels the probes still running, so
    nothing is left behind on the event loop."""
    gate = fs.Gate(scan_servers.servers)
    held = scan_servers.servers.serve(gate.handler())
    targets = [parse_target(f"tls://127.0.0.1:{scan_servers.closed}?timeout=30")] + [
        parse_target(f"tls://127.0.0.1:{held}?timeout=30")
    ] * 3
    results = scan(targets, concurrency=4)
    async with contextlib.aclosing(results):
        async for _ in results:
            break
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:  # cancelled tasks finish on the next loop turns
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert all(t.done() for t in others)
    gate.open()


async def test_check_targets_is_bounded_and_ordered(scan_servers: ScanServers) -> None:
    """check_targets() keeps the input order and at most ``concurrency`` probes at once."""
    counter = scan_servers.counter
    counter.peak = counter.total = 0
    hold = parse_target(f"tls://127.0.0.1:{scan_servers.hold}?timeout=5")
    closed = parse_target(f"tls://127.0.0.1:{scan_servers.closed}?timeout=5")
    results = await check_targets([hold, closed, hold, hold, hold], concurrency=2)
    assert [r.target for r in results] == [t.url for t in (hold, closed, hold, hold, hold)]
    assert counter.total == 4 and counter.peak <= 2
    assert results[1].status is Status.UNKNOWN
