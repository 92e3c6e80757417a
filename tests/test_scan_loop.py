"""`tlswatch scan --loop auto|asyncio|uvloop` and `tlswatch check`: which event loop probes.

uvloop is the optional ``fast`` extra (scripts/setup installs it, so the suite runs both
paths). Each case runs the real CLI in a subprocess against the haproxy fixture, started
through a small shim that wraps ``tlswatch.probe.check_target`` to report, for every probe,
the process id and the class of the loop it runs on; the probe itself is untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import uvloop  # the `fast` extra: installed by scripts/setup; a missing one must fail here

from tests.servers.haproxy import HaproxyServer
from tests.support.pki import TestPKI

#: runs `tlswatch ARGS...`, printing "LOOP <pid> <module>.<class>" to stderr per probe;
#: with TLSWATCH_TEST_NO_UVLOOP set, uvloop cannot be imported
SHIM = """
import asyncio, os, sys
if os.environ.get("TLSWATCH_TEST_NO_UVLOOP"):
    sys.modules["uvloop"] = None  # import uvloop -> ImportError
import tlswatch.probe as probe
_real = probe.check_target
async def check_target(target, settings):
    loop = type(asyncio.get_running_loop())
    sys.stderr.write(f"LOOP {os.getpid()} {loop.__module__}.{loop.__qualname__}\\n")
    sys.stderr.flush()
    return await _real(target, settings)
probe.check_target = check_target
from tlswatch.cli import main
sys.argv = ["tlswatch", *sys.argv[1:]]
main()
"""

UVLOOP = f"{uvloop.Loop.__module__}.{uvloop.Loop.__qualname__}"
STDLIB = "asyncio.unix_events._UnixSelectorEventLoop"


def run_shim(
    args: list[str], no_uvloop: bool = False
) -> tuple[subprocess.CompletedProcess[str], dict[int, set[str]]]:
    env = {**os.environ, "TLSWATCH_TEST_NO_UVLOOP": "1"} if no_uvloop else None
    proc = subprocess.run(
        [sys.executable, "-c", SHIM, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    loops: dict[int, set[str]] = {}
    for line in proc.stderr.splitlines():
        if line.startswith("LOOP "):
            _, pid, cls = line.split(" ")
            loops.setdefault(int(pid), set()).add(cls)
    return proc, loops


def url(haproxy_tls: HaproxyServer, pki: TestPKI) -> str:
    return f"tls://127.0.0.1:{haproxy_tls.port}?timeout=5&ca={pki.root_file}"


def targets_file(tmp_path: Path, haproxy_tls: HaproxyServer, pki: TestPKI, count: int) -> Path:
    f = tmp_path / "targets.txt"
    f.write_text(f"{url(haproxy_tls, pki)}\n" * count)
    return f


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("uvloop", UVLOOP), ("asyncio", STDLIB), ("auto", UVLOOP)],
)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_scan_runs_every_probe_on_the_chosen_loop(
    haproxy_tls: HaproxyServer,
    pki: TestPKI,
    tmp_path: Path,
    choice: str,
    expected: str,
    workers: str,
) -> None:
    """`--loop uvloop` probes on uvloop, `--loop asyncio` on the standard library's loop,
    `auto` on uvloop when it is installed: in the scan process and, with `--workers 2`, in
    the forked worker too; every target still gets its result."""
    count = 40
    f = targets_file(tmp_path, haproxy_tls, pki, count)
    proc, loops = run_shim(
        ["scan", "--file", str(f), "--format", "jsonl", "--concurrency", "2",
         "--workers", workers, "--loop", choice]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == count
    assert all(classes == {expected} for classes in loops.values()), loops
    assert sum(1 for _ in loops) == int(workers), loops  # each process probed


def test_auto_without_uvloop_falls_back_to_asyncio(
    haproxy_tls: HaproxyServer, pki: TestPKI, tmp_path: Path
) -> None:
    """Where uvloop cannot be imported, the default (`auto`) scans on asyncio's loop."""
    f = targets_file(tmp_path, haproxy_tls, pki, 3)
    proc, loops = run_shim(
        ["scan", "--file", str(f), "--format", "jsonl", "--workers", "1"], no_uvloop=True
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3
    assert set().union(*loops.values()) == {STDLIB}


def test_uvloop_asked_for_but_missing_is_an_error(tmp_path: Path) -> None:
    """`--loop uvloop` without uvloop installed: exit 3 with a message saying how to get
    it, and nothing probed."""
    f = tmp_path / "targets.txt"
    f.write_text("tls://127.0.0.1:1\n")
    proc, loops = run_shim(["scan", "--file", str(f), "--loop", "uvloop"], no_uvloop=True)
    assert proc.returncode == 3
    assert "uvloop is not installed" in proc.stderr
    assert "tlswatch[fast]" in proc.stderr
    assert loops == {}


def test_unknown_loop_is_a_usage_error(tmp_path: Path) -> None:
    """An unknown `--loop` value is refused by the option parser (exit 2), naming it."""
    f = tmp_path / "targets.txt"
    f.write_text("tls://127.0.0.1:1\n")
    proc, loops = run_shim(["scan", "--file", str(f), "--loop", "trio"])
    assert proc.returncode == 2
    assert "--loop" in proc.stderr and "trio" in proc.stderr
    assert loops == {}


def test_check_uses_uvloop_when_installed(haproxy_tls: HaproxyServer, pki: TestPKI) -> None:
    """`tlswatch check` probes on uvloop when it is installed, and still judges the
    endpoint."""
    proc, loops = run_shim(["check", url(haproxy_tls, pki), "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    assert '"status": "ok"' in proc.stdout or '"status":"ok"' in proc.stdout
    assert set().union(*loops.values()) == {UVLOOP}


#: like SHIM, and "FORK" on stderr for every os.fork
FORK_SHIM = SHIM.replace(
    "from tlswatch.cli import main",
    "_fork = os.fork\n"
    "def fork():\n"
    "    sys.stderr.write('FORK\\n'); sys.stderr.flush()\n"
    "    return _fork()\n"
    "os.fork = fork\n"
    "from tlswatch.cli import main",
)


def test_one_target_scan_forks_no_worker(
    haproxy_tls: HaproxyServer, pki: TestPKI, tmp_path: Path
) -> None:
    """A file with a single target is scanned in the scan process itself, whatever
    `--workers` says: a worker would only add its fork and start-up (issue 6). With more
    targets the worker is forked as asked."""
    for count, forks in ((1, 0), (3, 1)):
        f = targets_file(tmp_path, haproxy_tls, pki, count)
        proc = subprocess.run(
            [sys.executable, "-c", FORK_SHIM, "scan", "--file", str(f), "--format", "jsonl",
             "--workers", "2", "--loop", "asyncio"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert len(proc.stdout.splitlines()) == count
        assert proc.stderr.count("FORK\n") == forks, (count, proc.stderr)
