"""End to end: ``tlswatch check`` as a subprocess against haproxy serving broken chains
(tests/servers/verdict_haproxy.py) gives the verdict, findings and exit code a sysadmin
acts on, in every output format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.verdict_haproxy import VerdictServers

TLSWATCH = str(Path(sys.executable).parent / "tlswatch")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TLSWATCH, "check", *args], capture_output=True, text=True, timeout=60, check=False
    )


def url(servers: VerdictServers, name: str, extra: str = "") -> str:
    # trust=none + ca=: the test root is the only anchor, whatever the machine's store holds
    return f"tls://127.0.0.1:{servers.ports[name]}?trust=none&ca={servers.root_file}{extra}"


@pytest.mark.parametrize(
    ("chain", "code", "finding", "exit_code"),
    [
        ("good", "ok", None, 0),
        ("expired", "expired", "CERT_EXPIRED", 2),
        ("wronghost", "hostname_mismatch", "HOSTNAME_MISMATCH", 2),
        ("selfsigned", "self_signed", "SELF_SIGNED", 2),
        ("leafonly", "unable_to_get_issuer", "CHAIN_UNTRUSTED", 2),
        ("leafonly_aia", "unable_to_get_issuer", "CHAIN_INCOMPLETE", 2),
    ],
)
def test_verdict_and_exit_code(
    verdict_haproxy: VerdictServers, chain: str, code: str, finding: str | None, exit_code: int
) -> None:
    """Each broken chain yields its verification code, its finding and the exit code of
    the worst status (0 ok, 2 critical)."""
    proc = run("--format", "json", url(verdict_haproxy, chain))
    assert proc.returncode == exit_code, proc.stderr
    doc = json.loads(proc.stdout)
    (result,) = doc["results"]
    (ep,) = result["endpoints"]
    assert ep["verification"]["code"] == code
    codes = {f["code"] for f in ep["findings"] if f["severity"] != "ok"}
    if finding is None:
        assert codes == set() and result["status"] == "ok"
    else:
        assert finding in codes and result["status"] == "critical"
        assert any(f["code"] == finding and f["severity"] == "critical" for f in ep["findings"])


def test_aia_fetch_can_be_disabled(verdict_haproxy: VerdictServers) -> None:
    """--no-fetch: the leaf-only chain with an AIA URL is plain untrusted, nothing fetched."""
    before = len(verdict_haproxy.aia_hits)
    proc = run("--format", "json", "--no-fetch", url(verdict_haproxy, "leafonly_aia"))
    ep = json.loads(proc.stdout)["results"][0]["endpoints"][0]
    codes = {f["code"] for f in ep["findings"]}
    assert "CHAIN_UNTRUSTED" in codes and "CHAIN_INCOMPLETE" not in codes
    assert len(verdict_haproxy.aia_hits) == before


def test_nagios_output_and_exit_code(verdict_haproxy: VerdictServers) -> None:
    """Nagios: status line names the worst finding, perfdata carries days_left of the
    leaf (negative: expired) and of the intermediate with thresholds, exit 2."""
    proc = run("--format", "nagios", "--warn", "20", url(verdict_haproxy, "expired"))
    assert proc.returncode == 2
    first, *rest = proc.stdout.splitlines()
    status, _, perf = first.partition(" | ")
    assert status.startswith("TLSWATCH CRITICAL - ") and "CERT_EXPIRED" in status
    leaf_perf = next(p for p in perf.split() if p.startswith("'days_left'="))
    value, warn, crit = leaf_perf.split("=")[1].split(";")[:3]
    assert float(value) < -19 and (warn, crit) == ("20", "7")
    assert any(p.startswith("'days_left_chain_1'=") for p in perf.split())
    assert any("CERT_EXPIRED" in line for line in rest)


def test_nagios_ok_exit_zero(verdict_haproxy: VerdictServers) -> None:
    """A good chain is TLSWATCH OK with exit 0."""
    proc = run("--format", "nagios", url(verdict_haproxy, "good"))
    assert proc.returncode == 0
    assert proc.stdout.startswith("TLSWATCH OK - ")


def test_prometheus_has_certificate_metrics_for_an_invalid_chain(
    verdict_haproxy: VerdictServers,
) -> None:
    """Prometheus exposition of a self-signed server: probe_success 0, but the expiry and
    chain info metrics are present."""
    proc = run("--format", "prometheus", url(verdict_haproxy, "selfsigned"))
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert any(line.startswith("probe_success{") and line.endswith(" 0") for line in lines)
    assert any(line.startswith("probe_ssl_earliest_cert_expiry{") for line in lines)
    assert any(
        line.startswith("probe_ssl_last_chain_info{") and 'subject="' in line for line in lines
    )
    assert any(line.startswith("probe_tls_version_info{") for line in lines)
    assert "# TYPE probe_success gauge" in lines


def test_csv_one_row_per_endpoint(verdict_haproxy: VerdictServers) -> None:
    """CSV: a header and one row per endpoint with status and verification code."""
    import csv
    import io

    proc = run("--format", "csv", url(verdict_haproxy, "wronghost"), url(verdict_haproxy, "good"))
    assert proc.returncode == 2
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [(r["status"], r["verification"]) for r in rows] == [
        ("critical", "hostname_mismatch"),
        ("ok", "ok"),
    ]


def test_table_worst_first(verdict_haproxy: VerdictServers) -> None:
    """Table (not a terminal: no colour): the critical target is listed before the ok one,
    and -v shows the chain and findings."""
    proc = run("-v", url(verdict_haproxy, "good"), url(verdict_haproxy, "expired"))
    assert proc.returncode == 2
    out = proc.stdout
    assert "\x1b[" not in out
    assert out.index("critical") < out.index(" ok ")
    assert "CERT_EXPIRED" in out and "verification: expired" in out
