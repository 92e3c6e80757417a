"""The daemon's commands: `serve`, `status`, `certs`, `history`, `silence add|list|remove`,
`alerts` and `config check`. Each reads the config given with ``-c`` (default
./tlswatch.yaml) to find the store; none but `serve` probes anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tlswatch.cli import app
from tlswatch.daemon.config import (
    DEFAULT_CONFIG,
    ConfigProblems,
    DaemonConfig,
    load_config,
    parse_duration,
)
from tlswatch.daemon.store import repo
from tlswatch.daemon.store.db import Database, StoreError
from tlswatch.render.console import stdout_console
from tlswatch.render.text import clean

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

config_app = typer.Typer(help="Configuration file tools.", no_args_is_help=True)
silence_app = typer.Typer(
    help="Mute alerts for a target or a certificate for a while.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(silence_app, name="silence")

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help="the daemon's config file")]
_RANK = {"critical": 0, "warning": 1, "unknown": 2, "ok": 3}


class Fmt(StrEnum):
    table = "table"
    json = "json"


def _die(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"tlswatch: {message}", err=True)
    return typer.Exit(code)


def _load(path: str) -> DaemonConfig:
    try:
        return load_config(path)
    except ConfigProblems as exc:
        raise _die(f"invalid configuration:\n{exc}", 2) from None


def _open(cfg: DaemonConfig) -> Database:
    try:
        db = Database(cfg.store_url, create=False)
        db.check_schema()
    except StoreError as exc:
        raise _die(str(exc)) from None
    return db


@contextmanager
def _session(cfg: DaemonConfig, doing: str = "reading") -> Iterator[Session]:
    """One transaction on the daemon's store for a command: the store is closed whatever
    happens, and a store error (locked, removed, unreachable) is a one-line message and
    exit 1, never a traceback."""
    db = _open(cfg)
    try:
        with db.transaction(doing) as session:
            yield session
    except StoreError as exc:
        raise _die(str(exc)) from None
    finally:
        db.close()


def _iso(d: datetime | None) -> str | None:
    return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if d else None


def _day(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M") if d else "-"


# -- serve ----------------------------------------------------------------------------------


@app.command()
def serve(
    config: ConfigOpt = DEFAULT_CONFIG,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the monitoring daemon: scheduler, store, alerts (SIGHUP reloads the config)."""
    from tlswatch.daemon.service import Service

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("alembic", "apprise"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = _load(config)
    try:
        service = Service(cfg)
        service.start()
    except StoreError as exc:
        raise _die(str(exc)) from None
    code = asyncio.run(service.run())
    raise typer.Exit(code)


# -- config check ---------------------------------------------------------------------------


@config_app.command("check")
def config_check(
    file: Annotated[
        str | None, typer.Argument(help="config file (default: -c or ./tlswatch.yaml)")
    ] = None,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Validate a config file; print every problem with file, line and key (exit 2 if any)."""
    path = file or config
    try:
        cfg = load_config(path)
    except ConfigProblems as exc:
        for p in exc.problems:
            typer.echo(str(p), err=True)
        typer.echo(f"{path}: {len(exc.problems)} problem(s)", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{path}: ok ({len(cfg.targets)} target(s), {len(cfg.notify)} channel(s))")


# -- status ---------------------------------------------------------------------------------


@app.command()
def status(
    config: ConfigOpt = DEFAULT_CONFIG,
    fmt: Annotated[Fmt, typer.Option("--format", "-f")] = Fmt.table,
) -> None:
    """Targets with their status, worst first."""
    cfg = _load(config)
    with _session(cfg, "reading") as s:
        rows = sorted(
            repo.active_targets(s),
            key=lambda r: (
                _RANK.get(r.status, 9),
                r.days_left if r.days_left is not None else 1e9,
                r.key,
            ),
        )
        data: list[dict[str, Any]] = [
            {
                "target": r.key,
                "name": r.name,
                "status": r.status,
                "days_left": r.days_left,
                "fingerprint": r.leaf_sha256,
                "last_probe": _iso(r.last_probe_at),
            }
            for r in rows
        ]
        errors = {r.key: r.last_error_message for r in rows}
    if fmt is Fmt.json:
        sys.stdout.write(json.dumps({"targets": data}, indent=2) + "\n")
        return
    table = Table("status", "target", "days left", "fingerprint", "last probe", "error")
    for d in data:
        table.add_row(
            d["status"],
            clean(d["target"]) + ("" if d["name"] == d["target"] else f" ({clean(d['name'])})"),
            "-" if d["days_left"] is None else f"{d['days_left']:.1f}",
            (d["fingerprint"] or "-")[:16],
            d["last_probe"] or "never",
            clean(errors.get(d["target"]) or ""),
        )
    stdout_console().print(table)


# -- certs ----------------------------------------------------------------------------------


@app.command()
def certs(
    config: ConfigOpt = DEFAULT_CONFIG,
    fmt: Annotated[Fmt, typer.Option("--format", "-f")] = Fmt.table,
    all_: Annotated[
        bool, typer.Option("--all", help="include certificates no longer served")
    ] = False,
) -> None:
    """Certificate inventory sorted by expiry, with the endpoints serving each."""
    cfg = _load(config)
    now = datetime.now(UTC)
    out: list[dict[str, Any]] = []
    with _session(cfg, "reading") as s:
        for cert, eps in repo.inventory(s):
            serving = [e for e in eps if e[5]]
            if not serving and not all_:
                continue
            out.append(
                {
                    "sha256": cert.sha256,
                    "subject": cert.subject,
                    "issuer": cert.issuer,
                    "not_after": _iso(cert.not_after),
                    "days_left": None
                    if cert.not_after is None
                    else round((cert.not_after - now).total_seconds() / 86400, 2),
                    "first_seen": _iso(cert.first_seen),
                    "last_seen": _iso(cert.last_seen),
                    "endpoints": [
                        {
                            "target": k,
                            "address": a,
                            "port": p,
                            "first_seen": _iso(f),
                            "last_seen": _iso(ls),
                            "serving": cur,
                        }
                        for k, a, p, f, ls, cur in eps
                    ],
                }
            )
    if fmt is Fmt.json:
        sys.stdout.write(json.dumps({"certificates": out}, indent=2) + "\n")
        return
    table = Table("expires (UTC)", "days", "subject", "issuer", "sha256", "served by")
    for c in out:
        table.add_row(
            (c["not_after"] or "-")[:16],
            "-" if c["days_left"] is None else f"{c['days_left']:.1f}",
            clean(c["subject"]),
            clean(c["issuer"]),
            c["sha256"][:16],
            "\n".join(
                f"{clean(e['target'])} {e['address']}:{e['port']}"
                + ("" if e["serving"] else " (before)")
                for e in c["endpoints"]
            ),
        )
    stdout_console().print(table)


# -- history --------------------------------------------------------------------------------


@app.command()
def history(
    target: Annotated[str, typer.Argument(help="target URL as in the config, or its name")],
    config: ConfigOpt = DEFAULT_CONFIG,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 50,
    fmt: Annotated[Fmt, typer.Option("--format", "-f")] = Fmt.table,
) -> None:
    """Probe summaries of one target, newest first."""
    cfg = _load(config)
    with _session(cfg, "reading") as s:
        found = repo.history(s, target, limit)
        if found is None:
            raise _die(f"no target {target!r} in the store", 1)
        t, probes = found
        rows: list[dict[str, Any]] = [
            {
                "checked_at": _iso(p.checked_at),
                "source": p.source,
                "status": p.status,
                "days_left": p.days_left,
                "fingerprint": p.leaf_sha256,
                "error": p.error_message,
                "duration_ms": p.duration_ms,
                "findings": p.summary.get("findings", []),
            }
            for p in probes
        ]
        key = t.key
    if fmt is Fmt.json:
        sys.stdout.write(json.dumps({"target": key, "probes": rows}, indent=2) + "\n")
        return
    table = Table(
        "checked (UTC)", "source", "status", "days left", "fingerprint", "findings / error"
    )
    for r in rows:
        notes = ", ".join(sorted({f["code"] for f in r["findings"]}))
        table.add_row(
            r["checked_at"],
            r["source"],
            r["status"],
            "-" if r["days_left"] is None else f"{r['days_left']:.1f}",
            (r["fingerprint"] or "-")[:16],
            clean(r["error"] or notes),
        )
    stdout_console().print(table)


# -- silences -------------------------------------------------------------------------------

_FP = re.compile(r"^[0-9a-fA-F]{64}$")


@silence_app.command("add")
def silence_add(
    what: Annotated[
        str, typer.Argument(help="target URL or name as in the config, or a SHA-256 fingerprint")
    ],
    for_: Annotated[str, typer.Option("--for", help="how long: 30m, 12h, 7d")],
    reason: Annotated[str, typer.Option(help="why (shown in alerts and listings)")] = "",
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Mute the alerts of a target or a certificate until a time."""
    cfg = _load(config)
    try:
        duration = parse_duration(for_)
    except ValueError as exc:
        raise _die(f"--for: {exc}", 2) from None
    is_fp = bool(_FP.match(what))
    if not is_fp and what not in {t.key for t in cfg.targets} | {t.name for t in cfg.targets}:
        raise _die(
            f"{what!r} is neither a target (URL or name) of {cfg.path} nor a SHA-256 fingerprint", 2
        )
    now = datetime.now(UTC)
    with _session(cfg, "adding a silence") as s:
        row = repo.add_silence(
            s,
            target=None if is_fp else what,
            fingerprint=what.lower() if is_fp else None,
            until=now + duration,
            reason=reason,
            now=now,
        )
        sid, until = row.id, row.until
    typer.echo(f"silence {sid}: {what} until {_iso(until)}")


@silence_app.command("list")
def silence_list(
    config: ConfigOpt = DEFAULT_CONFIG,
    fmt: Annotated[Fmt, typer.Option("--format", "-f")] = Fmt.table,
) -> None:
    """Silences, with whether each is still active."""
    cfg = _load(config)
    now = datetime.now(UTC)
    with _session(cfg, "reading") as s:
        rows: list[dict[str, Any]] = [
            {
                "id": r.id,
                "target": r.target,
                "fingerprint": r.fingerprint,
                "until": _iso(r.until),
                "reason": r.reason,
                "source": r.source,
                "active": r.until > now,
            }
            for r in repo.list_silences(s)
        ]
    if fmt is Fmt.json:
        sys.stdout.write(json.dumps({"silences": rows}, indent=2) + "\n")
        return
    table = Table("id", "matches", "until (UTC)", "active", "source", "reason")
    for r in rows:
        table.add_row(
            str(r["id"]),
            clean(r["target"] or r["fingerprint"] or ""),
            r["until"],
            "yes" if r["active"] else "expired",
            r["source"],
            clean(r["reason"]),
        )
    stdout_console().print(table)


@silence_app.command("remove")
def silence_remove(
    silence_id: Annotated[int, typer.Argument(help="id from `tlswatch silence list`")],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Remove a silence (silences from the config file come back on the next reload)."""
    cfg = _load(config)
    with _session(cfg, "removing a silence") as s:
        removed = repo.remove_silence(s, silence_id)
    if not removed:
        raise _die(f"no silence {silence_id}", 1)
    typer.echo(f"silence {silence_id} removed")


# -- alerts ---------------------------------------------------------------------------------


@app.command()
def alerts(
    config: ConfigOpt = DEFAULT_CONFIG,
    state: Annotated[
        list[str] | None,
        typer.Option(help="only these states: pending, sending, sent, dead, silenced, unrouted"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 50,
    fmt: Annotated[Fmt, typer.Option("--format", "-f")] = Fmt.table,
) -> None:
    """The notification outbox: what was queued, to which channel, and its delivery state."""
    from tlswatch.daemon.alerts import outbox

    cfg = _load(config)
    with _session(cfg, "reading") as s:
        rows: list[dict[str, Any]] = [
            {
                "id": r.id,
                "key": r.idempotency_key,
                "alert": r.alert_key,
                "event": r.event,
                "channel": r.channel,
                "severity": r.severity,
                "title": r.title,
                "state": r.state,
                "attempts": r.attempts,
                "created_at": _iso(r.created_at),
                "sent_at": _iso(r.sent_at),
                "next_attempt_at": _iso(r.next_attempt_at),
                "dead_at": _iso(r.dead_at),
                "last_error": r.last_error,
            }
            for r in outbox.listing(s, state, limit)
        ]
    if fmt is Fmt.json:
        sys.stdout.write(json.dumps({"notifications": rows}, indent=2) + "\n")
        return
    table = Table("id", "queued (UTC)", "state", "tries", "channel", "title", "last error")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["created_at"],
            r["state"],
            str(r["attempts"]),
            clean(r["channel"]),
            clean(r["title"]),
            clean(r["last_error"] or ""),
        )
    stdout_console().print(table)
