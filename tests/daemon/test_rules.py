"""Alert rules (pure functions over a snapshot): threshold crossings, certificate-centric
grouping, repeats, failure alerts, silences and routing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.daemon.conftest import write_config
from tlswatch.daemon.alerts import rules
from tlswatch.daemon.config import load_config
from tlswatch.daemon.service import route
from tlswatch.daemon.silences import Silence, matching

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
FP = "ab" * 32
CERT = rules.CertFacts(
    FP, "CN=mail.example.test", "CN=CA", T0 - dt.timedelta(days=300), T0 + dt.timedelta(days=60)
)
META = {
    k: rules.TargetMeta(k, k, "mail.example.test")
    for k in (
        "smtp://mail.example.test:25",
        "imaps://mail.example.test:993",
        "pop3s://mail.example.test:995",
    )
}


def _snap(
    now: dt.datetime,
    states: dict[str, rules.AlertState] | None = None,
    failures: dict | None = None,
) -> rules.Snapshot:
    eps = {
        (k, "192.0.2.1", int(k.rsplit(":", 1)[1])): (
            rules.Endpoint(k, "mail.example.test", "192.0.2.1", int(k.rsplit(":", 1)[1])),
            FP,
        )
        for k in META
    }
    return rules.Snapshot(now, META, eps, {FP: CERT}, failures or {}, [], states or {})


def _apply(
    states: dict[str, rules.AlertState], decisions: list[rules.Decision], now: dt.datetime
) -> None:
    for d in decisions:
        old = states.get(d.key)
        notified = d.notification is not None
        states[d.key] = rules.AlertState(
            d.key,
            d.kind,
            d.ref,
            d.severity,
            d.step,
            now if d.action == "open" or old is None else old.opened_at,
            now if notified else (old.last_notified_at if old else None),
            (0 if d.action == "open" or old is None else old.notify_count) + int(notified),
            now if d.action == "resolve" else None,
            dict(d.data),
        )


def test_one_alert_per_certificate_lists_every_endpoint() -> None:
    """Three services on one certificate crossing 30 days: one notification naming all
    three endpoints as host:port."""
    (d,) = rules.evaluate(_snap(T0 + dt.timedelta(days=31)), [30, 14, 7], None, True)
    assert d.key == f"cert:{FP}" and d.event == "expiry:30"
    assert d.notification is not None
    assert d.notification.facts["endpoints"] == [
        "mail.example.test:25",
        "mail.example.test:993",
        "mail.example.test:995",
    ]


@given(st.lists(st.floats(min_value=0, max_value=70), min_size=1, max_size=30))
def test_each_threshold_notified_at_most_once_in_order(offsets: list[float]) -> None:
    """Whatever days the daemon happens to look at, each level is notified at most once,
    levels only go down, and the last look's level has been notified."""
    states: dict[str, rules.AlertState] = {}
    seen: list[int] = []
    for off in sorted(offsets):
        now = T0 + dt.timedelta(days=off)
        decisions = rules.evaluate(_snap(now, states), [30, 14, 7, 3, 1], None, True)
        seen += [d.step for d in decisions if d.notification is not None and d.step is not None]
        _apply(states, decisions, now)
    assert seen == sorted(set(seen), reverse=True)
    last = rules.level_for(60 - sorted(offsets)[-1], [30, 14, 7, 3, 1])
    assert (seen[-1] if seen else None) == last


def test_repeat_for_unresolved_critical_and_failure_lifecycle() -> None:
    """A critical expiry alert repeats every `repeat`; a declared failure opens one alert,
    repeats, and recovers once when the probe works again."""
    states: dict[str, rules.AlertState] = {}
    now = T0 + dt.timedelta(days=55)  # 5 days left: critical
    fail = {
        k: rules.FailureFacts(k.startswith("smtp"), "connect_refused", "refused", 2) for k in META
    }
    _apply(
        states, rules.evaluate(_snap(now, states, fail), [30, 7], dt.timedelta(hours=24), True), now
    )
    assert {k: s.severity for k, s in states.items()} == {
        f"cert:{FP}": "critical",
        "failure:smtp://mail.example.test:25": "critical",
    }
    later = now + dt.timedelta(hours=25)
    ds = rules.evaluate(_snap(later, states, fail), [30, 7], dt.timedelta(hours=24), True)
    assert sorted(d.notification.kind for d in ds if d.notification) == ["repeat", "repeat"]
    _apply(states, ds, later)
    ok = {k: rules.FailureFacts(False, None, None, 0) for k in META}
    ds = rules.evaluate(_snap(later, states, ok), [30, 7], dt.timedelta(hours=24), True)
    (rec,) = [d for d in ds if d.kind == "failure"]
    assert (
        rec.action == "resolve"
        and rec.notification is not None
        and rec.notification.kind == "failure_recovered"
    )


def test_silence_matching() -> None:
    """A fingerprint silence mutes its certificate; a target silence mutes only when every
    target of the notification is silenced; expired silences mute nothing."""
    s_fp = Silence(1, None, FP.upper(), T0 + dt.timedelta(days=1), "renewal in progress")
    s_t = Silence(2, "smtp://mail.example.test:25", None, T0 + dt.timedelta(days=1), "")
    names = {k: k for k in META}
    assert matching([s_fp], T0, list(META), FP, names) is s_fp
    assert matching([s_fp], T0 + dt.timedelta(days=2), list(META), FP, names) is None
    assert matching([s_t], T0, ["smtp://mail.example.test:25"], None, names) is s_t
    assert matching([s_t], T0, list(META), None, names) is None


def test_routes_first_match_per_target(tmp_path: Path) -> None:
    """Routes: the first matching route per target; severity and owner filters; no route
    matching → no channel."""
    cfg = load_config(
        write_config(
            tmp_path,
            "sqlite:///x.db",
            [{"url": "tls://a.example:1", "owner": "idm"}, "tls://b.example:1"],
            notify={"pager": "json://127.0.0.1:9/p", "hook": "json://127.0.0.1:9/h"},
            routes=[
                {"match": {"owner": "idm", "severity": "critical"}, "notify": ["pager", "hook"]},
                {"match": {"target": "tls://b.example:1"}, "notify": ["hook"]},
            ],
        )
    )
    idm = rules.TargetMeta("tls://a.example:1", "tls://a.example:1", "a.example", owner="idm")
    other = rules.TargetMeta("tls://b.example:1", "tls://b.example:1", "b.example")
    assert route(cfg, [idm], "critical") == ["pager", "hook"]
    assert route(cfg, [idm], "warning") == []
    assert route(cfg, [idm, other], "critical") == ["pager", "hook"]
    assert route(cfg, [other], "info") == ["hook"]
