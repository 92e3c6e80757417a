"""`tlswatch serve`: the daemon's main loop — a thin shell over the library API.

Each cycle, in order: reload the config if SIGHUP asked for it; start the probes that are
due (``tlswatch.probe.check_target``, bounded by the scheduler); store every finished probe;
once a day re-evaluate every stored chain offline (``tlswatch.analysis``) and apply the
retention; run the alert rules over the store and queue their notifications in the outbox
(one transaction: state and outbox rows commit together); deliver what is due.

Every store transaction runs in a worker thread (``asyncio.to_thread``), one at a time: a
locked SQLite file (busy timeout) or a slow PostgreSQL never stalls the event loop, whose
probes measure their own timeouts. Apprise sends run in threads too (alerts/delivery.py).

Store trouble is never silent: a locked store is logged and every finished probe and every
unmarked delivery is kept in memory and written when the store answers again; a SQLite file
removed or replaced under the daemon stops it with a clear error (exit status 1) instead of
writing into a deleted file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tlswatch.daemon import silences as silencing
from tlswatch.daemon.alerts import outbox, rules
from tlswatch.daemon.alerts.delivery import AppriseSender, Outgoing, Sender
from tlswatch.daemon.alerts.templates import render
from tlswatch.daemon.clock import Clock, SystemClock
from tlswatch.daemon.config import ConfigProblems, DaemonConfig, MonitoredTarget, load_config
from tlswatch.daemon.scheduler import Scheduler
from tlswatch.daemon.store import repo
from tlswatch.daemon.store.db import Database, StoreError
from tlswatch.daemon.store.models import AlertStateRow, EndpointRow
from tlswatch.errors import Failure, FailureClass
from tlswatch.model import Status, TargetResult
from tlswatch.net.resolve import Resolver
from tlswatch.probe import ProbeSettings, check_target
from tlswatch.targets import Target

log = logging.getLogger("tlswatch.daemon")

ProbeFn = Callable[[Target, ProbeSettings, datetime], Awaitable[TargetResult]]
DAILY = timedelta(days=1)
#: the longest the loop sleeps without looking around (silence expiry, repeats, daily pass)
MAX_SLEEP = 60.0


class StoreGone(StoreError):
    """The store file disappeared or was replaced: stop rather than lose writes."""


async def default_probe(target: Target, settings: ProbeSettings, now: datetime) -> TargetResult:
    return await check_target(target, settings, now)


@dataclass
class _Finished:
    target: MonitoredTarget
    result: TargetResult
    at: datetime
    duration_ms: float


class Service:
    def __init__(
        self,
        config: DaemonConfig | str | Path,
        *,
        clock: Clock | None = None,
        sender: Sender | None = None,
        probe: ProbeFn | None = None,
        settings: ProbeSettings | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        self.config = config if isinstance(config, DaemonConfig) else load_config(config)
        self.clock = clock or SystemClock()
        self.sender = sender or AppriseSender()
        self.probe = probe or default_probe
        # a short DNS cache: a daemon must notice a name that moved
        self.settings = settings or ProbeSettings(resolver=Resolver(cache_ttl=30.0))
        self.db = Database(self.config.store_url, busy_timeout=busy_timeout)
        sched = self.config.model.scheduler
        self.scheduler = Scheduler(sched.concurrency, sched.per_host)
        self._finished: list[_Finished] = []
        self._unmarked: list[tuple[int, str, str | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._reload_requested = False
        self._stopping = False
        self._store_error_logged = False
        self.started = False

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, *, lock: bool = True) -> None:
        """Migrate the store, take the single-instance lock, adopt the config, and move
        notifications a crashed predecessor left half-sent back to pending."""
        self.db.migrate()
        if lock:
            self.db.acquire_lock()
        now = self.clock.now()
        with self.db.transaction("starting") as s:
            recovered = outbox.recover_claims(s)
        if recovered:
            log.warning(
                "%d notification(s) were being sent when tlswatch last stopped; "
                "sending them again with the same idempotency key",
                recovered,
            )
        self._schedule(self.config, now, self._store_config(self.config, now))
        self.started = True

    def _store_config(self, cfg: DaemonConfig, now: datetime) -> dict[str, datetime | None]:
        """Write the targets and config silences; returns each target's persisted due time."""
        with self.db.transaction("applying the configuration") as s:
            rows = repo.sync_targets(s, cfg.targets)
            repo.sync_config_silences(s, cfg.model.silences, now)
            return {k: r.next_due_at for k, r in rows.items()}

    def _schedule(
        self, cfg: DaemonConfig, now: datetime, persisted: dict[str, datetime | None]
    ) -> None:
        self.scheduler.configure(cfg.model.scheduler.concurrency, cfg.model.scheduler.per_host)
        self.scheduler.set_targets(cfg.targets, now, persisted)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.db.close()

    def request_reload(self) -> None:
        self._reload_requested = True
        if self._wake is not None:
            self._wake.set()

    def request_stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    async def reload(self) -> bool:
        """Re-read the config file; on any problem keep running with the old one."""
        try:
            new = await asyncio.to_thread(load_config, self.config.path)
        except ConfigProblems as exc:
            log.error("reload refused, keeping the previous configuration:\n%s", exc)
            return False
        if new.store_url != self.config.store_url:
            log.error(
                "reload refused: changing `store` needs a restart (keeping %s)", self.db.describe()
            )
            return False
        now = self.clock.now()
        try:
            persisted = await asyncio.to_thread(self._store_config, new, now)
        except StoreError as exc:
            log.error("reload refused, the store is unavailable: %s", exc)
            return False
        self._schedule(new, now, persisted)
        self.config = new
        log.info("configuration reloaded: %d target(s)", len(new.targets))
        return True

    # -- one cycle --------------------------------------------------------------------------

    async def cycle(self, *, wait: bool = True) -> None:
        """One pass of everything that is due. ``wait`` (tests, time travel): finish the
        probes started in this pass before judging alerts."""
        if self._reload_requested:
            self._reload_requested = False
            await self.reload()
        self._check_store()
        now = self.clock.now()
        for mt in self.scheduler.due(now):
            task = asyncio.create_task(self._run_probe(mt, now))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if wait and self._tasks:
            await asyncio.gather(*list(self._tasks))
        await asyncio.to_thread(self._store_finished)
        await asyncio.to_thread(self._retry_unmarked)
        await asyncio.to_thread(self._daily, now)
        await asyncio.to_thread(self.evaluate_alerts, self.clock.now())
        await self.deliver()

    def _check_store(self) -> None:
        try:
            self.db.check_file()
        except StoreError as exc:
            raise StoreGone(str(exc)) from None

    async def _run_probe(self, mt: MonitoredTarget, now: datetime) -> None:
        t0 = time.perf_counter()
        try:
            result = await self.scheduler.limited(
                mt.host, lambda: self.probe(mt.target, self.settings, now)
            )
        except asyncio.CancelledError:
            self.scheduler.release(mt.key)
            raise
        except Exception as exc:
            log.exception("probe of %s raised", mt.key)
            result = TargetResult(
                target=mt.target.url,
                protocol=mt.target.spec.name,
                tls_mode=mt.target.tls_mode,
                status=Status.UNKNOWN,
                checked_at=now,
                error=Failure(
                    FailureClass.PROTOCOL_ERROR, f"internal error: {type(exc).__name__}: {exc}"
                ),
            )
        self._finished.append(
            _Finished(mt, result, now, round((time.perf_counter() - t0) * 1000, 3))
        )
        if self._wake is not None:
            self._wake.set()

    def _store_finished(self) -> None:
        while self._finished:
            item = self._finished[0]
            try:
                with self.db.transaction("recording a probe") as s:
                    outcome = repo.record_probe(
                        s, item.target, item.result, item.at, item.duration_ms
                    )
                    due = self.scheduler.finished(
                        item.target,
                        item.at,
                        outcome.failed,
                        outcome.consecutive_failures,
                        outcome.failure_declared,
                    )
                    repo.target_row(s, item.target.key).next_due_at = due
            except LookupError:
                self._finished.pop(0)  # removed from the config while it ran
                self.scheduler.release(item.target.key)
                continue
            except StoreError as exc:
                self._store_trouble(exc)
                return
            self._finished.pop(0)
            self._store_ok()

    def _store_trouble(self, exc: StoreError) -> None:
        if self.db.path is not None and not self.db.path.exists():
            raise StoreGone(str(exc)) from exc
        log.error(
            "%s (%d probe result(s) held in memory, written when the store is usable again)",
            exc,
            len(self._finished),
        )
        self._store_error_logged = True

    def _store_ok(self) -> None:
        if self._store_error_logged:
            log.warning("the store is writable again: held results written")
            self._store_error_logged = False

    def _daily(self, now: datetime) -> None:
        try:
            with self.db.transaction("re-evaluating stored chains") as s:
                last = repo.get_meta(s, "daily_at")
                if last is not None and now - datetime.fromisoformat(last) < DAILY:
                    return
                for mt in self.config.targets:
                    with contextlib.suppress(LookupError):
                        repo.reevaluate(s, mt, now)
                purged = repo.purge_probes(s, now - self.config.model.retention.probes)
                repo.set_meta(s, "daily_at", now.isoformat())
            log.info(
                "daily pass: stored chains re-evaluated, %d old probe summaries purged", purged
            )
        except StoreError as exc:
            self._store_trouble(exc)

    # -- alerts -----------------------------------------------------------------------------

    def evaluate_alerts(self, now: datetime) -> int:
        """Run the rules and queue their notifications; returns how many rows were queued."""
        a = self.config.alerts
        try:
            with self.db.transaction("evaluating alerts") as s:
                snap = build_snapshot(s, self.config, now)
                decisions = rules.evaluate(snap, a.thresholds, a.repeat, a.recovery)
                return self._apply(s, decisions, snap, now)
        except StoreError as exc:
            self._store_trouble(exc)
            return 0

    def _apply(
        self, s: Session, decisions: list[rules.Decision], snap: rules.Snapshot, now: datetime
    ) -> int:
        queued = 0
        active = [
            silencing.Silence(r.id, r.target, r.fingerprint, r.until, r.reason)
            for r in repo.active_silences(s, now)
        ]
        names = {k: m.name for k, m in snap.targets.items()}
        for d in decisions:
            row = s.scalar(select(AlertStateRow).where(AlertStateRow.key == d.key))
            if row is None:
                row = AlertStateRow(
                    key=d.key,
                    kind=d.kind,
                    ref=d.ref,
                    severity=d.severity,
                    opened_at=now,
                    notify_count=0,
                    data={},
                )
                s.add(row)
            if d.action == "open":
                row.opened_at, row.resolved_at, row.notify_count = now, None, 0
            if d.action == "resolve":
                row.resolved_at = now
            else:
                row.severity = d.severity
            row.step = d.step if d.step is not None else row.step
            row.data = dict(d.data)
            if d.notification is None:
                continue
            row.notify_count += 1
            row.last_notified_at = now
            queued += self._queue(s, d, snap, names, active, now)
        return queued

    def _queue(
        self,
        s: Session,
        d: rules.Decision,
        snap: rules.Snapshot,
        names: dict[str, str],
        active: list[silencing.Silence],
        now: datetime,
    ) -> int:
        n = d.notification
        assert n is not None
        key = "tw-" + hashlib.sha256(d.idempotency_key.encode()).hexdigest()[:40]
        metas = [snap.targets[k] for k in n.targets if k in snap.targets]
        route_severity = n.severity if n.severity != "ok" else "info"
        channels = route(self.config, metas, route_severity)
        hit = silencing.matching(active, now, n.targets, n.fingerprint, names)
        queued = 0
        for channel in channels or ["-"]:
            ckey = f"{key}-{hashlib.sha256(channel.encode()).hexdigest()[:8]}"
            title, body = render(n, ckey)
            state, note = outbox.PENDING, None
            if hit is not None:
                state, note = (
                    outbox.SILENCED,
                    f"silenced until {hit.until.isoformat()}: {hit.reason}",
                )
            elif not channels:
                state, note = outbox.UNROUTED, "no notify channel matches this alert (see routes)"
            if outbox.enqueue(
                s,
                key=ckey,
                alert_key=d.key,
                event=d.event,
                channel=channel,
                severity=n.severity,
                title=title,
                body=body,
                now=now,
                state=state,
                note=note,
            ):
                queued += 1
                log.info("queued %s [%s] %s -> %s", ckey, state, title, channel)
        return queued

    # -- delivery ---------------------------------------------------------------------------

    async def deliver(self) -> int:
        """Send every due outbox row (claim → send → mark). Returns how many were sent."""
        a = self.config.alerts
        try:
            expired, rows = await asyncio.to_thread(self._due_rows, self.clock.now())
        except StoreError as exc:
            self._store_trouble(exc)
            return 0
        if expired:
            log.error(
                "%d notification(s) dead-lettered after %s undelivered",
                expired,
                a.dead_letter_after,
            )
        sent = 0
        for row_id, channel, title, body, severity, key in rows:
            if self._stopping:
                break
            token = outbox.new_token()
            try:
                if not await asyncio.to_thread(self._claim, row_id, token):
                    continue
            except StoreError as exc:
                self._store_trouble(exc)
                return sent
            url = self.config.notify.get(channel)
            if url is None:
                err: str | None = f"channel {channel!r} is no longer configured"
            else:
                err = await self.sender.send(
                    Outgoing(url, title, body, severity, key), a.send_timeout.total_seconds()
                )
            if err is None:
                sent += 1
                log.info("delivered %s to %s", key, channel)
            else:
                log.warning("delivery of %s to %s failed: %s", key, channel, err)
            self._unmarked.append((row_id, token, err))
            await asyncio.to_thread(self._retry_unmarked)
        return sent

    def _due_rows(self, now: datetime) -> tuple[int, list[tuple[int, str, str, str, str, str]]]:
        """Dead-letter what waited too long; the rows due now, detached from the session."""
        with self.db.transaction("reading the outbox") as s:
            expired = outbox.expire(s, now, self.config.alerts.dead_letter_after)
            rows = [
                (r.id, r.channel, r.title, r.body, r.severity, r.idempotency_key)
                for r in outbox.due(s, now)
            ]
        return expired, rows

    def _claim(self, row_id: int, token: str) -> bool:
        with self.db.transaction("claiming a notification") as s:
            return outbox.claim(s, row_id, token, self.clock.now())

    def _retry_unmarked(self) -> None:
        a = self.config.alerts
        while self._unmarked:
            row_id, token, err = self._unmarked[0]
            now = self.clock.now()
            try:
                with self.db.transaction("recording a delivery") as s:
                    if err is None:
                        outbox.mark_sent(s, row_id, token, now)
                    else:
                        dead_after = (
                            a.dead_letter_after if not err.startswith("channel ") else timedelta(0)
                        )
                        state = outbox.mark_failed(
                            s, row_id, token, now, err, a.retry, a.retry_max, dead_after
                        )
                        if state == outbox.DEAD:
                            log.error("notification %d dead-lettered: %s", row_id, err)
            except StoreError as exc:
                self._store_trouble(exc)
                return
            self._unmarked.pop(0)

    # -- the loop ---------------------------------------------------------------------------

    def _next_wakeup(self, now: datetime) -> float:
        candidates = [now + timedelta(seconds=MAX_SLEEP)]
        nxt = self.scheduler.next_wakeup()
        if nxt is not None:
            candidates.append(nxt)
        with contextlib.suppress(StoreError), self.db.transaction("reading the outbox") as s:
            n = outbox.next_attempt(s)
            if n is not None:
                candidates.append(n)
        if self._finished or self._unmarked:
            candidates.append(now + timedelta(seconds=5))
        return max(0.0, (min(candidates) - now).total_seconds())

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT (exit 0) or a fatal store error (exit 1)."""
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        if not self.started:
            self.start()
        # logged only now that the signal handlers are in place: a SIGHUP sent as soon as
        # this line appears reloads instead of killing the process (the default action)
        log.info(
            "tlswatch serving %d target(s) from %s, %s",
            len(self.config.targets),
            self.config.path,
            self.db.describe(),
        )
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    await self.cycle(wait=False)
                except StoreGone as exc:
                    log.critical("%s", exc)
                    return 1
                if self._stopping:
                    break
                delay = await asyncio.to_thread(self._next_wakeup, self.clock.now())
                await self.clock.sleep(delay, self._wake)
            log.info("stopping: waiting for %d probe(s) in flight", len(self._tasks))
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=15)
            await asyncio.to_thread(self._store_finished)
            await asyncio.to_thread(self._retry_unmarked)
            return 0
        finally:
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.close()


# -- routing ------------------------------------------------------------------------------


def _route_matches(match: Any, meta: rules.TargetMeta | None, severity: str) -> bool:
    if match.severity is not None and match.severity != severity:
        return False
    if meta is None:
        return (
            match.owner is None
            and match.group is None
            and match.target is None
            and not match.labels
        )
    if match.owner is not None and match.owner != meta.owner:
        return False
    if match.group is not None and match.group != meta.group:
        return False
    if match.target is not None and match.target not in (meta.key, meta.name):
        return False
    return all(meta.labels.get(k) == v for k, v in match.labels.items())


def route(cfg: DaemonConfig, metas: list[rules.TargetMeta], severity: str) -> list[str]:
    """Channels for a notification: for each target involved, the first matching route;
    the union over targets. No routes at all: every channel."""
    routes = cfg.model.routes
    if not routes:
        return sorted(cfg.notify)
    out: list[str] = []
    for meta in metas or [None]:  # type: ignore[list-item]
        for r in routes:
            if _route_matches(r.match, meta, severity):
                out += [c for c in r.notify if c not in out]
                break
    return out


# -- the snapshot the rules judge ---------------------------------------------------------


def build_snapshot(s: Session, cfg: DaemonConfig, now: datetime) -> rules.Snapshot:
    metas = {
        mt.key: rules.TargetMeta(
            key=mt.key,
            name=mt.name,
            host=mt.target.host,
            owner=mt.owner,
            group=mt.group,
            labels=dict(mt.labels),
            warn=mt.target.options.get("warn"),
            crit=mt.target.options.get("crit"),
        )
        for mt in cfg.targets
    }
    host_of = {k: m.host for k, m in metas.items()}
    endpoints = {k: v for k, v in repo.current_endpoints(s, host_of).items() if k[0] in metas}
    states = {
        r.key: rules.AlertState(
            r.key,
            r.kind,
            r.ref,
            r.severity,
            r.step,
            r.opened_at,
            r.last_notified_at,
            r.notify_count,
            r.resolved_at,
            dict(r.data or {}),
        )
        for r in s.scalars(select(AlertStateRow))
    }
    targets = {r.key: r for r in repo.active_targets(s) if r.key in metas}
    failures = {
        k: rules.FailureFacts(
            r.failure_declared, r.last_error_code, r.last_error_message, r.consecutive_failures
        )
        for k, r in targets.items()
    }
    leaf_by_ep = {
        (r.target_id, repo.endpoint_label(r.address, r.port)): r.leaf_sha256
        for r in s.scalars(select(EndpointRow).where(EndpointRow.current.is_(True)))
    }
    findings = []
    for key, rows in repo.findings_by_target(s).items():
        t = targets.get(key)
        if t is None:
            continue
        for f in rows:
            fp = (
                leaf_by_ep.get((t.id, f.endpoint))
                if f.endpoint
                else (None if f.code == "ENDPOINTS_DISAGREE" else t.leaf_sha256)
            )
            findings.append(rules.FindingFact(key, f.endpoint, f.code, f.severity, f.message, fp))
    shas = (
        {leaf for _, leaf in endpoints.values() if leaf}
        | {st.ref for st in states.values() if st.kind == "expiry"}
        | {f.fingerprint for f in findings if f.fingerprint}
    )
    certs = {
        sha: rules.CertFacts(c.sha256, c.subject, c.issuer, c.not_before, c.not_after)
        for sha, c in repo.certificates_by_sha(s, shas).items()
    }
    return rules.Snapshot(now, metas, endpoints, certs, failures, findings, states)
