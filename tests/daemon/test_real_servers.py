"""The daemon monitoring several real servers for a few cycles: haproxy (implicit TLS, IPv4
and IPv6), OpenLDAP (StartTLS and ldaps on one certificate) and vsftpd (AUTH TLS). The store
must hold their exact chains, deduplicated, with first/last seen per endpoint, and their
states; the CLI reads them back."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.daemon.conftest import write_config
from tests.servers.haproxy import HaproxyServer
from tests.servers.slapd import SlapdServers
from tests.servers.vsftpd import VsftpdServers
from tests.support.pki import TestPKI
from tlswatch.cli import _register, app
from tlswatch.daemon.clock import ManualClock
from tlswatch.daemon.service import Service
from tlswatch.daemon.store.models import (
    CertificateRow,
    EndpointCertificateRow,
    EndpointRow,
    ProbeRow,
    TargetRow,
)

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


async def test_daemon_monitors_real_servers(
    tmp_path: Path,
    store_url: str,
    pki: TestPKI,
    haproxy_tls: HaproxyServer,
    slapd_servers: SlapdServers,
    vsftpd_servers: VsftpdServers,
) -> None:
    """Three cycles over five targets on three different servers: every target is probed
    each cycle, every chain is stored once (the two slapd ports share one leaf row), each
    endpoint's first/last seen spans the cycles, and `status`/`certs` report them."""
    targets = {
        f"tls://127.0.0.1:{haproxy_tls.port}": haproxy_tls.leaf,
        f"tls://[::1]:{haproxy_tls.port6}": haproxy_tls.leaf,
        f"ldap://127.0.0.1:{slapd_servers.starttls_port}": slapd_servers.leaf,
        f"ldaps://127.0.0.1:{slapd_servers.ldaps_port}": slapd_servers.leaf,
        f"ftp://127.0.0.1:{vsftpd_servers.explicit_port}": vsftpd_servers.leaf,
    }
    cfg = write_config(
        tmp_path,
        store_url,
        list(targets),
        defaults={"ca": str(pki.root_file), "interval": "1h", "jitter": 0},
    )
    clock = ManualClock(T0)
    svc = Service(cfg, clock=clock)
    svc.start()
    try:
        for _ in range(3):
            await svc.cycle()
            clock.advance(dt.timedelta(hours=1))
        with svc.db.transaction() as s:
            rows = {t.key: t for t in s.scalars(select(TargetRow))}
            for key, leaf in targets.items():
                t = rows[key]
                assert t.last_error_message is None, (key, t.last_error_message)
                assert t.leaf_sha256 == leaf.leaf_sha256
                assert t.not_after == leaf.leaf.not_valid_after_utc
                assert t.status in ("ok", "warning", "critical")
                assert (
                    s.scalar(
                        select(func.count())
                        .select_from(ProbeRow)
                        .where(ProbeRow.target_id == t.id, ProbeRow.source == "probe")
                    )
                    == 3
                )
                (ep,) = s.scalars(select(EndpointRow).where(EndpointRow.target_id == t.id))
                assert ep.chain == leaf.chain_sha256
                link = s.scalar(
                    select(EndpointCertificateRow).where(
                        EndpointCertificateRow.endpoint_id == ep.id,
                        EndpointCertificateRow.position == 0,
                    )
                )
                assert link is not None and link.sha256 == leaf.leaf_sha256
                assert (link.first_seen, link.last_seen) == (T0, T0 + dt.timedelta(hours=2))
            stored = {c.sha256: c.der for c in s.scalars(select(CertificateRow))}
        every = {
            sha: der
            for leaf in targets.values()
            for sha, der in zip(leaf.chain_sha256, leaf.chain_der, strict=True)
        }
        assert stored == every  # exact DER, one row per distinct certificate
    finally:
        svc.close()

    _register()
    runner = CliRunner()
    res = runner.invoke(app, ["status", "-c", str(cfg), "--format", "json"])
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)["targets"]
    assert {t["target"]: t["fingerprint"] for t in status} == {
        k: v.leaf_sha256 for k, v in targets.items()
    }
    assert all(
        t["last_probe"] == (T0 + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for t in status
    )
    res = runner.invoke(app, ["certs", "-c", str(cfg), "--format", "json"])
    assert res.exit_code == 0, res.output
    certs = {c["sha256"]: c for c in json.loads(res.stdout)["certificates"]}
    slapd = certs[slapd_servers.leaf.leaf_sha256]
    assert sorted((e["target"], e["port"]) for e in slapd["endpoints"]) == sorted(
        [
            (f"ldap://127.0.0.1:{slapd_servers.starttls_port}", slapd_servers.starttls_port),
            (f"ldaps://127.0.0.1:{slapd_servers.ldaps_port}", slapd_servers.ldaps_port),
        ]
    )
    expiries = [c["not_after"] for c in json.loads(res.stdout)["certificates"]]
    assert expiries == sorted(expiries)
