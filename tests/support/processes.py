"""Starting real servers for the tests: free ports, readiness, clean shutdown.

Readiness is polled with a deadline (connect until the port accepts, or until a log line
appears); nothing sleeps a fixed time. A server binary that is missing fails the test
session: set-up installs every server, so a missing one is a set-up bug, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest


def free_port(family: int = socket.AF_INET) -> int:
    """A TCP port that is free on loopback right now."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """n distinct free ports (held together while choosing, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_dual_stack_port() -> int:
    """A TCP port free on both 127.0.0.1 and ::1 right now (for one port number served on
    both families, as a dual-stack service is)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
            s4.bind(("127.0.0.1", 0))
            port = int(s4.getsockname()[1])
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                try:
                    s6.bind(("::1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


def require_binary(path: str) -> str:
    """The path of a server binary; fails (never skips) when it is not installed."""
    found = shutil.which(path) or (
        path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    )
    if not found:
        pytest.fail(
            f"{path} is not installed: scripts/setup installs every server the tests need "
            "(scripts/apt-packages.txt)",
            pytrace=False,
        )
    return found


def wait_for_port(
    port: int,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll until ``host:port`` accepts a TCP connection; fail with the server's log if it
    exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"server exited with {proc.returncode} before listening on {port}\n{_tail(log)}",
                pytrace=False,
            )
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)  # polling interval of a readiness loop, not synchronisation
    pytest.fail(f"nothing listened on {host}:{port} within {timeout}s\n{_tail(log)}", pytrace=False)


def _tail(log: Path | None, n: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    lines = log.read_text(errors="replace").splitlines()
    return "\n".join(lines[-n:])


class ServerProcess:
    """A server process started for the test session, stopped at the end."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        self._logf = self.log.open("ab")
        self.proc = subprocess.Popen(
            list(argv),
            cwd=workdir,
            env={**os.environ, **(env or {})},
            stdin=stdin,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_port(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        wait_for_port(port, host, timeout, self.proc, self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._logf.close()


def stop_pidfile(pidfile: Path) -> None:
    """Stop a daemon that forked and wrote its pid to ``pidfile``."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
