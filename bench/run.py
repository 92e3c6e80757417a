"""Benchmark runner: tlswatch against its peers on the same loopback endpoints.

One invocation starts the workload (bench/workload.py), then runs every tool in turn,
interleaved round by round (A B C … A B C …) after a warm-up round, and prints the median
endpoints/s, wall time and peak RSS of each, with tlswatch's ratio to each and the goals of
issue 6. Nothing here is a test; anyone can rerun it (``bench/run`` sets everything up).

Tools (implicit TLS, N = --ports distinct certificates):
  tlswatch       ``tlswatch scan --format jsonl`` (verification and findings as in the tree)
  sslyze         certificate-info scan through sslyze's Python API, raised concurrency
  nmap           ``nmap --script +ssl-cert`` (leaf only, no verification)
  blackbox       prometheus-blackbox-exporter, tcp module with TLS verifying against the
                 bench root, driven by bench/blackbox_driver.py over keep-alive connections
  bare-1/bare-2  bench/bare_loop.py as 1 process and as 2 processes (the issue's Python
                 reference: stdlib ssl, i.e. the system's OpenSSL)
  floor-1/floor-2  bench/floor_loop.py: the cheapest handshake on tlswatch's own binding
                 (uvloop + pyOpenSSL on cryptography's OpenSSL), nothing else
STARTTLS (Dovecot IMAP, smaller): tlswatch, sslyze and blackbox (query_response + starttls).

Peak RSS is the largest sum of VmRSS over the tool's whole process tree, sampled every
20 ms from /proc (for blackbox: the long-running exporter plus its HTTP driver). Wall time
runs from spawn to the exit of the last process. Client CPU is the user + system time of the
tool's processes per endpoint (for blackbox: the exporter's, read from /proc, plus the
driver's); server CPU is haproxy's, read from /proc around each run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import State, Workload, haproxy_connections

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = ROOT / ".venv" / "bin"
PEERS = HERE / ".venv-peers" / "bin"
OUT = HERE / "out"
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- measuring -------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                out.extend(int(x) for x in fh.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


def _pss(pid: int) -> int:
    """Proportional set size: shared pages (libraries, pages a fork shares) split between
    the processes sharing them, so a tree's sum counts each page once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def tree_rss(roots: list[int]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) over the process trees under ``roots``."""
    rss = pss = 0
    stack, seen = list(roots), set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        rss += _rss(pid)
        pss += _pss(pid)
        stack.extend(_children(pid))
    return rss, pss


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads) from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class RSSSampler:
    """Largest summed RSS of the process trees under ``roots`` while running."""

    def __init__(self, roots: list[int], interval: float = 0.02) -> None:
        self.roots = roots
        self.interval = interval
        self.peak = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss = tree_rss(self.roots)
            self.peak = max(self.peak, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Run:
    tool: str
    endpoints: int
    ok: int
    failed: int
    wall: float
    rss: int
    pss: int = 0
    #: TCP connections haproxy accepted per endpoint (None: not the haproxy workload)
    conns: float | None = None
    #: client CPU seconds (user + system) of the tool's processes, waited-for children
    #: included, plus the long-running exporter's for blackbox
    cpu: float = 0.0
    #: haproxy's CPU seconds during the run (None: not the haproxy workload)
    server_cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.ok / self.wall if self.wall else 0.0


def run_processes(
    cmds: list[list[str]],
    parse: Callable[[list[str]], tuple[int, int]],
    endpoints: int,
    tool: str,
    extra_roots: list[int] | None = None,
    timeout: float = 900,
) -> Run:
    """Spawn ``cmds`` together; wall time until the last exits; parse each one's stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        outs = [open(Path(tmp) / f"out{i}", "w+b") for i in range(len(cmds))]  # noqa: SIM115
        cpu_before = _children_cpu() + sum(proc_cpu(p) for p in extra_roots or [])
        start = time.perf_counter()
        procs = [
            subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
            for cmd, out in zip(cmds, outs, strict=True)
        ]
        with RSSSampler([p.pid for p in procs] + (extra_roots or [])) as sampler:
            for p in procs:
                p.wait(timeout)
        wall = time.perf_counter() - start
        cpu = _children_cpu() + sum(proc_cpu(p) for p in extra_roots or []) - cpu_before
        ok = failed = 0
        texts = []
        for out in outs:
            out.seek(0)
            texts.append(out.read().decode("utf-8", "replace"))
            out.close()
    for text in texts:
        o, f = parse(text.splitlines())
        ok, failed = ok + o, failed + f
    return Run(tool, endpoints, ok, failed, wall, sampler.peak, sampler.peak_pss, cpu=cpu)


def parse_counts(lines: list[str]) -> tuple[int, int]:
    """The ``{"ok": N, "failed": M}`` line of the bench drivers."""
    for line in reversed(lines):
        if line.startswith("{"):
            d = json.loads(line)
            return int(d["ok"]), int(d["failed"])
    return 0, 0


def parse_tlswatch(lines: list[str]) -> tuple[int, int]:
    """JSON Lines: an endpoint counts as done when its chain was collected (no error)."""
    ok = failed = 0
    for line in lines:
        if not line.startswith("{"):
            continue
        for ep in json.loads(line).get("endpoints", []):
            if ep.get("error") is None and ep.get("chain"):
                ok += 1
            else:
                failed += 1
    return ok, failed


def parse_nmap(lines: list[str]) -> tuple[int, int]:
    text = "\n".join(lines)
    ok = len(re.findall(r'<script id="ssl-cert" output="Subject: ', text))
    failed = len(re.findall(r'<port protocol="tcp"', text)) - ok
    return ok, max(failed, 0)


# --- tools -----------------------------------------------------------------------------------


@dataclass
class Bench:
    state: State
    work: Path
    ports_file: Path
    targets_file: Path
    targets_10x: Path
    exporter: str = ""
    exporter_pid: int = 0
    starttls_targets: Path | None = None
    starttls_ports_file: Path | None = None
    tlswatch_args: list[str] = field(default_factory=list)
    concurrency: int = 100

    @property
    def n(self) -> int:
        return len(self.state.ports)


def tlswatch_cmd(bench: Bench, targets: Path) -> list[str]:
    return [
        str(VENV / "tlswatch"),
        "scan",
        "--file",
        str(targets),
        "--format",
        "jsonl",
        "--concurrency",
        str(bench.concurrency),
        *bench.tlswatch_args,
    ]


def tool_tlswatch(bench: Bench) -> Run:
    return run_processes(
        [tlswatch_cmd(bench, bench.targets_file)], parse_tlswatch, bench.n, "tlswatch"
    )


def _tool_loop(script: str, name: str, procs: int) -> Callable[[Bench], Run]:
    """A handshake loop of bench/ (bare_loop.py, floor_loop.py) run as ``procs`` processes,
    each on its share of the ports."""

    def run(bench: Bench) -> Run:
        cmds = [
            [
                str(VENV / "python"),
                str(HERE / script),
                "--ports-file",
                str(bench.ports_file),
                "--shard",
                f"{i}/{procs}",
                "--concurrency",
                str(bench.concurrency),
            ]
            for i in range(procs)
        ]
        return run_processes(cmds, parse_counts, bench.n, f"{name}-{procs}")

    return run


def tool_bare(procs: int) -> Callable[[Bench], Run]:
    return _tool_loop("bare_loop.py", "bare", procs)


def tool_floor(procs: int) -> Callable[[Bench], Run]:
    return _tool_loop("floor_loop.py", "floor", procs)


def tool_sslyze(bench: Bench) -> Run:
    cmd = [
        str(PEERS / "python"),
        str(HERE / "sslyze_driver.py"),
        "--ports-file",
        str(bench.ports_file),
        "--ca",
        bench.state.root,
        "--concurrency",
        str(bench.concurrency),
    ]
    return run_processes([cmd], parse_counts, bench.n, "sslyze")


def tool_nmap(bench: Bench) -> Run:
    ports = bench.state.ports
    # "+ssl-cert" forces the script onto every open port: without service detection nmap
    # does not know these high ports speak TLS. SYN scan as root, else connect scan.
    scan = "-sS" if os.geteuid() == 0 else "-sT"
    cmd = [
        "nmap", "-Pn", "-n", scan, "-T4", "-p", f"{ports[0]}-{ports[-1]}",
        "--script", "+ssl-cert", "-oX", "-", "127.0.0.1",
    ]  # fmt: skip
    return run_processes([cmd], parse_nmap, bench.n, "nmap")


def blackbox_driver(bench: Bench, module: str, ports_file: Path, n: int, tool: str) -> Run:
    cmd = [
        str(VENV / "python"),
        str(HERE / "blackbox_driver.py"),
        "--exporter",
        bench.exporter,
        "--module",
        module,
        "--ports-file",
        str(ports_file),
        "--connections",
        str(bench.concurrency),
    ]
    # RSS and CPU: the driver's and the exporter's together (the exporter does the probing;
    # the driver stands in for Prometheus scraping it)
    return run_processes([cmd], parse_counts, n, tool, extra_roots=[bench.exporter_pid])


def tool_blackbox(bench: Bench) -> Run:
    return blackbox_driver(bench, "tls_connect", bench.ports_file, bench.n, "blackbox")


def tool_tlswatch_starttls(bench: Bench) -> Run:
    assert bench.starttls_targets is not None
    n = sum(1 for _ in bench.starttls_targets.open())
    return run_processes(
        [tlswatch_cmd(bench, bench.starttls_targets)], parse_tlswatch, n, "tlswatch-starttls"
    )


def tool_sslyze_starttls(bench: Bench) -> Run:
    assert bench.starttls_ports_file is not None
    n = sum(1 for _ in bench.starttls_ports_file.open())
    cmd = [
        str(PEERS / "python"),
        str(HERE / "sslyze_driver.py"),
        "--ports-file",
        str(bench.starttls_ports_file),
        "--ca",
        bench.state.root,
        "--starttls",
        "imap",
        "--concurrency",
        str(bench.concurrency),
    ]
    return run_processes([cmd], parse_counts, n, "sslyze-starttls")


def tool_blackbox_starttls(bench: Bench) -> Run:
    assert bench.starttls_ports_file is not None
    n = sum(1 for _ in bench.starttls_ports_file.open())
    return blackbox_driver(
        bench, "imap_starttls", bench.starttls_ports_file, n, "blackbox-starttls"
    )


# --- the exporter ----------------------------------------------------------------------------

BLACKBOX_CONFIG = """modules:
  tls_connect:
    prober: tcp
    timeout: 10s
    tcp:
      tls: true
      tls_config:
        ca_file: {root}
  imap_starttls:
    prober: tcp
    timeout: 10s
    tcp:
      query_response:
        - expect: "^\\\\* OK"
        - send: "a1 STARTTLS"
        - expect: "^a1 OK"
        - starttls: true
      tls_config:
        ca_file: {root}
"""


def start_exporter(work: Path, root: str) -> tuple[subprocess.Popen[bytes], str]:
    cfg = work / "blackbox.yml"
    cfg.write_text(BLACKBOX_CONFIG.format(root=root))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            "prometheus-blackbox-exporter",
            f"--config.file={cfg}",
            f"--web.listen-address={addr}",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "blackbox.log").open("wb"),
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, addr
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)  # readiness poll with a deadline
    proc.kill()
    raise SystemExit(f"blackbox exporter did not start: see {work / 'blackbox.log'}")


# --- start-up --------------------------------------------------------------------------------


def startup_time(bench: Bench, repeats: int = 7) -> dict[str, float]:
    """Seconds from spawning ``tlswatch scan`` (one target) to its first TCP connection
    arriving, against the same for a bare ``python -c 'socket.create_connection'``."""

    def first_connect(cmd_for_port: Callable[[int], list[str]]) -> float:
        with socket.socket() as lsock:
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(8)
            lsock.settimeout(30)
            port = lsock.getsockname()[1]
            start = time.perf_counter()
            proc = subprocess.Popen(
                cmd_for_port(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            conn, _ = lsock.accept()
            elapsed = time.perf_counter() - start
            conn.close()
            proc.kill()
            proc.wait()
            return elapsed

    def tlswatch(port: int) -> list[str]:
        target = bench.work / "startup-target.txt"
        target.write_text(f"tls://127.0.0.1:{port}?timeout=1\n")
        return [str(VENV / "tlswatch"), "scan", "--file", str(target), "--format", "jsonl"]

    def bare(port: int) -> list[str]:
        code = f"import socket; socket.create_connection(('127.0.0.1', {port}))"
        return [str(VENV / "python"), "-c", code]

    t = [first_connect(tlswatch) for _ in range(repeats)]
    b = [first_connect(bare) for _ in range(repeats)]
    return {
        "tlswatch_s": statistics.median(t),
        "python_s": statistics.median(b),
        "import_s": statistics.median(t) - statistics.median(b),
    }


# --- main ------------------------------------------------------------------------------------

GOALS = {  # tool -> minimum ratio of tlswatch's endpoints/s to the tool's
    "blackbox": 1.2,
    "sslyze": 10.0,
    "nmap": 3.0,
    "bare-2": 0.8,
}


def _fmt_mb(n: float) -> str:
    return f"{n / 1e6:.0f}"


def summarise(runs: dict[str, list[Run]]) -> dict[str, dict[str, float]]:
    out = {}
    for tool, rs in runs.items():
        out[tool] = {
            "endpoints": rs[0].endpoints,
            "ok": statistics.median(r.ok for r in rs),
            "failed": statistics.median(r.failed for r in rs),
            "rate": statistics.median(r.rate for r in rs),
            "wall": statistics.median(r.wall for r in rs),
            "rss": statistics.median(r.rss for r in rs),
            "pss": statistics.median(r.pss for r in rs),
            "conns": max((r.conns for r in rs if r.conns is not None), default=-1.0),
            # CPU per endpoint, milliseconds (server: -1 when not measured)
            "cpu_ms": statistics.median(1000 * r.cpu / r.endpoints for r in rs),
            "server_cpu_ms": statistics.median(
                1000 * r.server_cpu / r.endpoints if r.server_cpu is not None else -1.0 for r in rs
            ),
            "runs": len(rs),
        }
    return out


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3, help="measured rounds (after one warm-up)")
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument(
        "--tools",
        default="tlswatch,blackbox,nmap,sslyze,bare-1,bare-2,floor-1,floor-2",
        help="comma-separated subset",
    )
    ap.add_argument("--starttls-ports", type=int, default=20)
    ap.add_argument("--starttls-repeat", type=int, default=10)
    ap.add_argument("--no-scale", action="store_true", help="skip the 10x-targets run")
    ap.add_argument("--no-startup", action="store_true", help="skip the start-up timing")
    ap.add_argument("--tlswatch-arg", action="append", default=[], help="extra scan argument")
    args = ap.parse_args()

    OUT.mkdir(exist_ok=True)
    work = OUT / "run"
    work.mkdir(exist_ok=True)
    with Workload(args.ports, args.starttls_ports) as state:
        for note in state.notes:
            print(f"note: {note}")
        ports_file = work / "ports.txt"
        ports_file.write_text("".join(f"{p}\n" for p in state.ports))
        urls = [f"tls://127.0.0.1:{p}?ca={state.root}\n" for p in state.ports]
        targets = work / "targets.txt"
        targets.write_text("".join(urls))
        targets_10x = work / "targets-10x.txt"
        targets_10x.write_text("".join(urls) * 10)
        bench = Bench(
            state, work, ports_file, targets, targets_10x,
            tlswatch_args=args.tlswatch_arg, concurrency=args.concurrency,
        )  # fmt: skip
        exporter, bench.exporter = start_exporter(work, state.root)
        bench.exporter_pid = exporter.pid
        try:
            tools: dict[str, Callable[[Bench], Run]] = {
                "tlswatch": tool_tlswatch,
                "blackbox": tool_blackbox,
                "nmap": tool_nmap,
                "sslyze": tool_sslyze,
                "bare-1": tool_bare(1),
                "bare-2": tool_bare(2),
                "floor-1": tool_floor(1),
                "floor-2": tool_floor(2),
            }
            chosen = [t for t in args.tools.split(",") if t]
            if state.starttls_ports and args.starttls_repeat:
                sp = work / "starttls-ports.txt"
                sp.write_text(
                    "".join(f"{p}\n" for p in state.starttls_ports) * args.starttls_repeat
                )
                st = work / "starttls-targets.txt"
                st.write_text(
                    "".join(
                        f"imap://127.0.0.1:{p}?ca={state.root}&name=starttls.bench.test\n"
                        for p in state.starttls_ports
                    )
                    * args.starttls_repeat
                )
                bench.starttls_ports_file, bench.starttls_targets = sp, st
                extra = {
                    "tlswatch-starttls": tool_tlswatch_starttls,
                    "blackbox-starttls": tool_blackbox_starttls,
                    "sslyze-starttls": tool_sslyze_starttls,
                }
                for name, fn in extra.items():
                    if name.split("-")[0] in chosen:
                        tools[name] = fn
                        chosen.append(name)
            runs: dict[str, list[Run]] = {t: [] for t in chosen}
            for rnd in range(args.runs + 1):
                label = "warm-up" if rnd == 0 else f"run {rnd}/{args.runs}"
                for tool in chosen:
                    before = haproxy_connections(state.haproxy_stats)
                    server_before = proc_cpu(state.haproxy_pid)
                    r = tools[tool](bench)
                    if not tool.endswith("-starttls"):
                        after = haproxy_connections(state.haproxy_stats)
                        r.conns = (after - before) / r.endpoints
                        r.server_cpu = proc_cpu(state.haproxy_pid) - server_before
                    print(
                        f"[{label}] {tool:18s} ok={r.ok:5d} failed={r.failed:4d} "
                        f"{r.rate:7.0f}/s wall={r.wall:6.2f}s rss={_fmt_mb(r.rss)}MB "
                        f"pss={_fmt_mb(r.pss)}MB cpu={1000 * r.cpu / r.endpoints:.2f}ms/endp "
                        f"conns/endpoint={'-' if r.conns is None else f'{r.conns:.2f}'}",
                        flush=True,
                    )
                    if rnd:
                        runs[tool].append(r)
            scale: dict[str, object] = {}
            if not args.no_scale and "tlswatch" in chosen:
                r10 = run_processes(
                    [tlswatch_cmd(bench, targets_10x)], parse_tlswatch, 10 * bench.n, "tlswatch-10x"
                )
                r1 = statistics.median(r.rss for r in runs["tlswatch"])
                scale = {"n": r10.endpoints, "ok": r10.ok, "failed": r10.failed,
                         "rate": r10.rate, "wall": r10.wall, "rss": r10.rss, "pss": r10.pss, "rss_1x": r1}  # fmt: skip
            startup = {} if args.no_startup else startup_time(bench)
        finally:
            exporter.terminate()
            exporter.wait(10)

    summary = summarise(runs)
    report(summary, scale, startup, args)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = OUT / f"results-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "args": vars(args),
                "summary": summary,
                "scale": scale,
                "startup": startup,
                "runs": {t: [asdict(r) for r in rs] for t, rs in runs.items()},
            },
            indent=2,
        )
    )
    print(f"\nraw results: {out}")


def report(
    summary: dict[str, dict[str, float]],
    scale: dict[str, object],
    startup: dict[str, float],
    args: argparse.Namespace,
) -> None:
    print(f"\nmachine: {machine()}")
    print(
        f"medians of {args.runs} interleaved runs after a warm-up; concurrency {args.concurrency}"
    )
    print(f"\n{'tool':20s} {'endpoints':>9s} {'ok':>6s} {'failed':>6s} {'endp/s':>8s} "
          f"{'wall s':>7s} {'peak RSS MB':>11s} {'PSS MB':>6s} {'conns/endp':>10s} "
          f"{'CPU ms/endp':>11s} {'haproxy ms':>10s} {'tlswatch/tool':>13s}")  # fmt: skip
    tw = summary.get("tlswatch")
    tws = summary.get("tlswatch-starttls")
    for tool, s in summary.items():
        ref = tws if tool.endswith("-starttls") else tw
        ratio = f"{ref['rate'] / s['rate']:.2f}x" if ref and s["rate"] else "-"
        conns = f"{s['conns']:.2f}" if s["conns"] >= 0 else "-"
        server = f"{s['server_cpu_ms']:.2f}" if s["server_cpu_ms"] >= 0 else "-"
        print(
            f"{tool:20s} {s['endpoints']:9.0f} {s['ok']:6.0f} {s['failed']:6.0f} "
            f"{s['rate']:8.0f} {s['wall']:7.2f} {_fmt_mb(s['rss']):>11s} {_fmt_mb(s['pss']):>6s} {conns:>10s} "
            f"{s['cpu_ms']:11.2f} {server:>10s} {ratio:>13s}"
        )
    if tw:
        print("\ngoals (issue 6):")
        for tool, goal in GOALS.items():
            if tool in summary and summary[tool]["rate"]:
                ratio = tw["rate"] / summary[tool]["rate"]
                mark = "PASS" if ratio >= goal else "FAIL"
                print(f"  tlswatch / {tool:8s} {ratio:6.2f}x  (goal >= {goal}x)  {mark}")
        print(f"  peak RSS at N={tw['endpoints']:.0f}: {_fmt_mb(tw['rss'])} MB summed over the "
              f"process tree, PSS {_fmt_mb(tw['pss'])} MB (goal <= 100)  RSS "
              f"{'PASS' if tw['rss'] <= 100e6 else 'FAIL'}, PSS "
              f"{'PASS' if tw['pss'] <= 100e6 else 'FAIL'}")  # fmt: skip
    if scale:
        rss = float(scale["rss"])  # type: ignore[arg-type]
        pss = float(scale["pss"])  # type: ignore[arg-type]
        print(f"  peak RSS at N={scale['n']}: {_fmt_mb(rss)} MB, PSS {_fmt_mb(pss)} MB "
              f"({scale['rate']:.0f} endpoints/s, {scale['failed']} failed)  "
              f"{'PASS' if rss <= 100e6 else 'FAIL'}")  # fmt: skip
    if startup:
        print(f"  start-up, spawn to first connection: {startup['tlswatch_s'] * 1000:.0f} ms "
              f"(bare python: {startup['python_s'] * 1000:.0f} ms, so import to first "
              f"connection {startup['import_s'] * 1000:.0f} ms; goal <= 200 ms)  "
              f"{'PASS' if startup['tlswatch_s'] <= 0.2 else 'FAIL'}")  # fmt: skip

    floor = summary.get("floor-2")
    if tw and floor and floor["rate"]:
        _report_floor(summary, tw, floor)


def _report_floor(
    summary: dict[str, dict[str, float]], tw: dict[str, float], floor: dict[str, float]
) -> None:
    """What each ratio goal asks of the box, next to the cheapest handshake loop on
    tlswatch's own TLS binding (floor-2). The loop keeps the box about as busy as any client
    can, so at its CPU use, ``need`` endpoints/s leave ``budget`` ms of client CPU per
    endpoint, once haproxy's share is paid; what is left beyond the floor's own client CPU
    is all there is for parsing, path validation, findings and JSON. (floor-2's CPU holds two
    interpreter start-ups, tlswatch's one and a fork: docs/performance.md, "Phase 5", does
    that accounting.)"""
    cores = (floor["cpu_ms"] + max(floor["server_cpu_ms"], 0.0)) * floor["rate"] / 1000
    print(f"\nthe floor (floor-2: handshake + chain bytes on tlswatch's binding, nothing "
          f"else): {floor['rate']:.0f} endp/s, client CPU {floor['cpu_ms']:.2f} ms/endp, "
          f"{cores:.2f} of {os.cpu_count()} CPUs busy with client + haproxy")  # fmt: skip
    for tool, goal in GOALS.items():
        if tool not in summary or not summary[tool]["rate"]:
            continue
        need = goal * summary[tool]["rate"]
        line = f"  {goal}x {tool:8s} needs {need:6.0f} endp/s = {need / floor['rate']:.0%} of the floor"
        if floor["server_cpu_ms"] >= 0 and tw["server_cpu_ms"] >= 0:
            budget = cores * 1000 / need - tw["server_cpu_ms"]
            line += (f": {budget:.2f} ms client CPU per endpoint at that load, "
                     f"{budget - floor['cpu_ms']:+.2f} ms beyond the bare handshake")  # fmt: skip
        print(line)
    print(f"  tlswatch: client CPU {tw['cpu_ms']:.2f} ms/endp, {tw['cpu_ms'] - floor['cpu_ms']:+.2f} ms "
          f"beyond the bare handshake (parse, validation, findings, JSON, start-up)")  # fmt: skip


if __name__ == "__main__":
    main()
