"""The benchmark's endpoints: haproxy serving implicit TLS on many loopback ports.

Every port has its own ECDSA P-256 leaf (its own name ``epN.bench.test``, its own serial, an
IP SAN for 127.0.0.1 so verifiers that check the address pass) issued by one shared
intermediate under one root, so a scanner that caches per-certificate work gains nothing,
while one that caches the shared intermediate may. A smaller STARTTLS set is served by
Dovecot (IMAP, STARTTLS on each port; RFC 9051 §6.2.1), if it starts.

    python bench/workload.py serve --ports 1000      # runs until Ctrl-C, then stops
    python bench/workload.py start --ports 1000      # leaves it running; prints the state
    python bench/workload.py stop                    # stops only what `start` started

The runner (bench/run.py) uses :class:`Workload` as a context manager. Only processes this
module started are stopped (by the pid it recorded), never anything found by name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "out" / "workload"
HAPROXY = "/usr/sbin/haproxy"
DOVECOT = "/usr/sbin/dovecot"


# --- PKI -------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tlswatch bench"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    now: dt.datetime,
) -> x509.Certificate:
    issuer_name = issuer[0].subject if issuer else _name(cn)
    signer = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if not issuer else 0), True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        )
    return builder.sign(signer, hashes.SHA256())


def _leaf(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    now: dt.datetime,
) -> x509.Certificate:
    import ipaddress

    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(cn), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), False
        )
        .sign(issuer[1], hashes.SHA256())
    )


def make_pki(directory: Path, count: int) -> tuple[Path, list[Path]]:
    """root.pem plus ``count`` leaf+intermediate+key PEM files; reused when already there."""
    directory.mkdir(parents=True, exist_ok=True)
    certs = directory / "certs"
    stamp = directory / f"pki-{count}.done"
    root_file = directory / "root.pem"
    files = [certs / f"ep{i:05d}.pem" for i in range(count)]
    if stamp.exists() and root_file.exists():
        return root_file, files
    certs.mkdir(exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca("tlswatch bench root", root_key, None, now)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _ca("tlswatch bench intermediate", inter_key, (root, root_key), now)
    inter_pem = inter.public_bytes(serialization.Encoding.PEM)
    for i, path in enumerate(files):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _leaf(f"ep{i}.bench.test", key, (inter, inter_key), now)
        path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + inter_pem + _pem_key(key))
    root_file.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    # One extra leaf for the STARTTLS set.
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _leaf("starttls.bench.test", key, (inter, inter_key), now)
    (directory / "starttls.crt").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + inter_pem
    )
    (directory / "starttls.key").write_bytes(_pem_key(key))
    for old in directory.glob("pki-*.done"):
        old.unlink()
    stamp.write_text("ok\n")
    return root_file, files


# --- ports and processes ---------------------------------------------------------------------


def _free_range(count: int, start: int = 20000, stop: int = 60000) -> int:
    """The first port P such that P .. P+count-1 can all be bound on 127.0.0.1 now."""
    base = start
    while base + count < stop:
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    s.close()
                    base = p + 1
                    break
                socks.append(s)
            else:
                return base
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no run of {count} free ports on 127.0.0.1")


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # readiness poll with a deadline, not synchronisation
    raise RuntimeError(f"port {port} did not open within {timeout:g}s")


@dataclass
class State:
    directory: str
    root: str
    ports: list[int]
    haproxy_pid: int
    haproxy_stats: str = ""
    starttls_ports: list[int] = field(default_factory=list)
    starttls_protocol: str = ""
    dovecot_pid: int = 0
    notes: list[str] = field(default_factory=list)


def _haproxy_config(ports: list[int], files: list[Path], stats: Path) -> str:
    binds = "\n".join(
        f"    bind 127.0.0.1:{p} ssl crt {f}" for p, f in zip(ports, files, strict=True)
    )
    # Both cores: client and server share the box, as in any loopback benchmark. The stats
    # socket lets the runner count the connections each tool opened (CumConns).
    return f"""global
    stats socket {stats} mode 600 level user
    # Each bind line holds a listening fd; with maxconn this must fit the fd limit.
    maxconn 4000
    nbthread 2
    tune.ssl.cachesize 0
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend bench
{binds}
    tcp-request content reject
"""


def _dovecot_config(work: Path, ports: list[int], cert: Path, key: Path) -> str:
    listeners = "\n".join(
        f"  inet_listener imap{i} {{\n    address = 127.0.0.1\n    port = {p}\n  }}"
        for i, p in enumerate(ports)
    )
    return f"""base_dir = {work}/run
state_dir = {work}/state
log_path = {work}/dovecot.log
# One line per connection would cost the server CPU the scanners need.
info_log_path = /dev/null
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
mail_location = maildir:{work}/mail/%u
passdb {{
  driver = static
  args = password=bench
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={work}/mail/%u
}}
service imap-login {{
{listeners}
  inet_listener imaps {{
    port = 0
  }}
  process_min_avail = 2
  service_count = 0
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def haproxy_connections(stats_socket: str) -> int:
    """haproxy's count of accepted connections so far (``show info`` CumConns)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(stats_socket)
        s.sendall(b"show info\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith("CumConns:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError("haproxy stats: no CumConns")


class Workload:
    """Start haproxy (and Dovecot for STARTTLS) on loopback; stop exactly those processes."""

    def __init__(
        self, ports: int = 1000, starttls_ports: int = 20, directory: Path = DEFAULT_DIR
    ) -> None:
        self.count = ports
        self.starttls_count = starttls_ports
        self.dir = directory
        self.state: State | None = None
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> State:
        if not os.access(HAPROXY, os.X_OK):
            raise SystemExit(f"{HAPROXY} missing: run scripts/setup (scripts/apt-packages.txt)")
        t0 = time.perf_counter()
        root, files = make_pki(self.dir, self.count)
        print(f"workload: PKI ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        base = _free_range(self.count)
        ports = list(range(base, base + self.count))
        cfg = self.dir / "haproxy.cfg"
        cfg.write_text(_haproxy_config(ports, files, self.dir / "haproxy.sock"))
        log = (self.dir / "haproxy.log").open("wb")
        proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=log, stderr=log)
        self._procs.append(proc)
        _wait_port(ports[0], proc)
        _wait_port(ports[-1], proc)
        self.state = State(
            str(self.dir), str(root), ports, proc.pid, str(self.dir / "haproxy.sock")
        )
        if self.starttls_count:
            self._start_dovecot()
        return self.state

    def _start_dovecot(self) -> None:
        assert self.state is not None
        if not os.access(DOVECOT, os.X_OK):
            self.state.notes.append("dovecot not installed: STARTTLS workload skipped")
            return
        work = self.dir / "dovecot"
        shutil.rmtree(work, ignore_errors=True)
        for sub in ("run", "state", "mail"):
            (work / sub).mkdir(parents=True)
        base = _free_range(self.starttls_count, start=self.state.ports[-1] + 1)
        ports = list(range(base, base + self.starttls_count))
        cfg = work / "dovecot.conf"
        cfg.write_text(
            _dovecot_config(work, ports, self.dir / "starttls.crt", self.dir / "starttls.key")
        )
        proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=(work / "stderr.log").open("wb"),
        )
        self._procs.append(proc)
        try:
            for p in ports:
                _wait_port(p, proc, timeout=20)
        except RuntimeError as exc:
            self.state.notes.append(f"dovecot did not start ({exc}): STARTTLS workload skipped")
            self._stop(proc)
            return
        self.state.starttls_ports = ports
        self.state.starttls_protocol = "imap"
        self.state.dovecot_pid = proc.pid

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        for proc in reversed(self._procs):
            self._stop(proc)
        self._procs.clear()

    def __enter__(self) -> State:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_recorded(directory: Path) -> None:
    state_file = directory / "state.json"
    if not state_file.exists():
        print("workload: nothing recorded as started", file=sys.stderr)
        return
    state = json.loads(state_file.read_text())
    for key in ("dovecot_pid", "haproxy_pid"):
        pid = state.get(key) or 0
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    state_file.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("action", choices=["serve", "start", "stop"])
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--starttls-ports", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args()
    if args.action == "stop":
        _stop_recorded(args.dir)
        return
    wl = Workload(args.ports, args.starttls_ports, args.dir)
    state = wl.start()
    text = json.dumps(asdict(state))
    if args.action == "start":
        (args.dir / "state.json").write_text(text)
        print(text)
        return  # the servers keep running; `stop` ends them by recorded pid
    print(text)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        wl.stop()


if __name__ == "__main__":
    main()
