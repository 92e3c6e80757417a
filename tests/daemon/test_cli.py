"""The daemon's read/write CLI commands against a store the daemon filled: `history`,
`alerts`, `silence add|list|remove`, and a silence muting the next notification."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from typer.testing import CliRunner

from tests.daemon.conftest import CertServer, HttpReceiver, issue_expiring, write_config
from tests.support.pki import TestPKI
from tlswatch.cli import _register, app
from tlswatch.daemon.clock import ManualClock
from tlswatch.daemon.service import Service


async def test_history_alerts_and_silences(
    tmp_path: Path,
    store_url: str,
    cert_server: CertServer,
    pki: TestPKI,
    http_receiver: HttpReceiver,
) -> None:
    """`silence add` on a fingerprint mutes the alert of that certificate (recorded as
    'silenced', nothing received); `alerts` and `history` show the rows; `silence remove`
    deletes it; a missing store is a clear error."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    leaf = issue_expiring(pki, "cli", now, 12)
    cert_server.serve(leaf)
    url = f"tls://127.0.0.1:{cert_server.port}"
    cfg = write_config(
        tmp_path,
        store_url,
        [url],
        defaults={"ca": str(pki.root_file), "jitter": 0},
        notify={"hook": http_receiver.url},
    )
    _register()
    run = CliRunner()
    missing = run.invoke(app, ["status", "-c", str(cfg)])
    if store_url.startswith("sqlite"):
        assert missing.exit_code == 1
        assert "does not exist: has `tlswatch serve` run with this config?" in missing.stderr
    svc = Service(cfg, clock=ManualClock(now))
    svc.start()
    res = run.invoke(
        app,
        [
            "silence",
            "add",
            leaf.leaf_sha256,
            "--for",
            "7d",
            "--reason",
            "renewal booked",
            "-c",
            str(cfg),
        ],
    )
    assert res.exit_code == 0, res.output
    try:
        await svc.cycle()
    finally:
        svc.close()
    assert http_receiver.received == []
    res = run.invoke(app, ["alerts", "-c", str(cfg), "--format", "json"])
    (note,) = json.loads(res.stdout)["notifications"]
    assert note["state"] == "silenced"
    assert note["last_error"].endswith(": renewal booked")
    assert note["title"].startswith("[WARNING] Certificate expires in 12 days")
    res = run.invoke(app, ["history", url, "-c", str(cfg), "--format", "json"])
    probes = json.loads(res.stdout)["probes"]
    # newest first: the daily offline re-evaluation ran right after the first probe
    assert [(p["source"], p["fingerprint"]) for p in probes] == [
        ("reevaluate", leaf.leaf_sha256),
        ("probe", leaf.leaf_sha256),
    ]
    res = run.invoke(app, ["silence", "list", "-c", str(cfg), "--format", "json"])
    (sil,) = json.loads(res.stdout)["silences"]
    assert (sil["fingerprint"], sil["active"], sil["reason"]) == (
        leaf.leaf_sha256,
        True,
        "renewal booked",
    )
    assert run.invoke(app, ["silence", "remove", str(sil["id"]), "-c", str(cfg)]).exit_code == 0
    assert run.invoke(app, ["silence", "remove", str(sil["id"]), "-c", str(cfg)]).exit_code == 1
    bad = run.invoke(
        app, ["silence", "add", "tls://unknown.example:1", "--for", "1d", "-c", str(cfg)]
    )
    assert bad.exit_code == 2 and "is neither a target" in bad.stderr


def test_locked_store_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    """A store another process holds locked past the busy timeout: `silence add` (a write)
    ends with one line naming the lock and exit 1 — no traceback, nothing half-written."""
    import sqlite3

    from tlswatch.daemon.store.db import Database

    db_file = tmp_path / "tlswatch.db"
    cfg = write_config(tmp_path, f"sqlite:///{db_file}", ["tls://127.0.0.1:1"])
    store = Database(f"sqlite:///{db_file}")
    store.migrate()  # the schema, as `serve` creates it
    store.close()
    holder = sqlite3.connect(db_file, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held by "another process"
    try:
        _register()
        res = CliRunner().invoke(
            app, ["silence", "add", "tls://127.0.0.1:1", "--for", "1d", "-c", str(cfg)]
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit)  # typer.Exit, not an escaped StoreError
    assert "is locked by another process" in res.stderr
    assert "Traceback" not in res.output
    listed = CliRunner().invoke(app, ["silence", "list", "-c", str(cfg), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["silences"] == []
