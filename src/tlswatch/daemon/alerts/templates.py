"""Message templates: a :class:`~tlswatch.daemon.alerts.rules.Notification` → title and body.

Every message names what a person on call needs without opening anything else: the days
left, the expiry date in UTC, subject, issuer, the SHA-256 fingerprint, every endpoint as
``host:port``, the finding and a suggested next step. The idempotency key closes the body,
so even a channel without custom headers (chat, e-mail clients) lets a reader or a
receiver spot a duplicate.

Certificate fields are untrusted input: control characters are replaced before they reach
any channel (a subject could otherwise carry terminal escapes or forged header lines).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tlswatch.daemon.alerts.rules import Notification

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean(value: Any) -> str:
    return _CONTROL.sub("?", str(value))


def utc(iso: str | None) -> str:
    if not iso:
        return "unknown"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")


def _days(value: Any) -> str:
    if value is None:
        return "unknown"
    d = float(value)
    if d <= 0:
        return f"expired {abs(d):.1f} days ago"
    return f"{d:.1f} days"


def _in_days(value: Any) -> str:
    whole = int(float(value))  # whole days still left, never rounded up
    if whole < 1:
        return "less than a day"
    return "1 day" if whole == 1 else f"{whole} days"


def _who(facts: Mapping[str, Any]) -> str:
    eps = facts.get("endpoints") or []
    if eps:
        return clean(eps[0]) + (f" and {len(eps) - 1} more" if len(eps) > 1 else "")
    return clean(facts.get("name") or facts.get("target") or facts.get("ref") or "?")


def render(n: Notification, key: str) -> tuple[str, str]:
    f = n.facts
    tag = "OK" if n.severity == "ok" else n.severity.upper()
    lines: list[tuple[str, str]] = []
    if n.kind in ("expiry", "repeat") and "fingerprint" in f and "step" in f:
        step = int(f["step"])
        if step == 0:
            title = f"[{tag}] Certificate EXPIRED: {_who(f)}"
            head = "The certificate served by the endpoints below has expired."
        else:
            title = f"[{tag}] Certificate expires in {_in_days(f['days_left'])}: {_who(f)}"
            head = f"The certificate served by the endpoints below expires within {step} days."
        if n.kind == "repeat":
            title += " (reminder)"
            head = "Reminder, still unresolved: " + head[0].lower() + head[1:]
        lines += _cert_lines(f)
        lines += [("Finding", f"{f['finding']} ({n.severity})")]
    elif n.kind == "renewed":
        title = f"[{tag}] Certificate replaced: {_who(f)}"
        head = "The certificate that was expiring is no longer served: it was replaced."
        lines += [
            ("Old fingerprint", f"SHA-256 {clean(f['old_fingerprint'])}"),
            ("Old expiry", utc(f.get("old_not_after"))),
        ]
        for new in f.get("new", []):
            lines += [
                ("New fingerprint", f"SHA-256 {clean(new['fingerprint'])}"),
                ("New expiry", utc(new.get("not_after"))),
                ("New subject", clean(new.get("subject", ""))),
                ("New issuer", clean(new.get("issuer", ""))),
            ]
        lines += [("Endpoints", ", ".join(clean(e) for e in f.get("endpoints", [])))]
        lines += [("Finding", "CERT_CHANGED (renewal)")]
    elif n.kind == "failure" or (n.kind == "repeat" and "code" in f):
        title = f"[{tag}] Probe failing: {clean(f['name'])} ({clean(f.get('code') or 'unknown')})"
        if n.kind == "repeat":
            title += " (reminder)"
        head = (
            f"tlswatch could not probe {clean(f['target'])} "
            f"{int(f.get('consecutive') or 0)} times in a row; its certificate cannot be checked."
        )
        lines += [
            ("Target", clean(f["target"])),
            ("Endpoints", ", ".join(clean(e) for e in f.get("endpoints", [])) or "none resolved"),
            ("Error", clean(f.get("message") or "")),
            ("Finding", f"{clean(f.get('finding'))} ({n.severity})"),
        ]
    elif n.kind == "failure_recovered":
        title = f"[{tag}] Probe recovered: {clean(f['name'])}"
        head = f"tlswatch can probe {clean(f['target'])} again."
        lines += [
            ("Target", clean(f["target"])),
            ("Endpoints", ", ".join(clean(e) for e in f.get("endpoints", []))),
        ]
    elif n.kind in ("finding", "repeat"):
        title = f"[{tag}] {clean(f['finding'])}: {_who(f)}"
        if n.kind == "repeat":
            title += " (reminder)"
        head = "\n".join(clean(m) for m in f.get("messages", []))
        if f.get("fingerprint"):
            lines += _cert_lines(f)
        else:
            lines += [("Endpoints", ", ".join(clean(e) for e in f.get("endpoints", [])))]
        lines += [("Finding", f"{clean(f['finding'])} ({n.severity})")]
    elif n.kind == "finding_resolved":
        title = f"[{tag}] Resolved {clean(f['finding'])}: {clean(f.get('ref', ''))[:64]}"
        head = f"The finding {clean(f['finding'])} no longer holds."
    else:  # pragma: no cover - every kind the rules emit is handled above
        title, head = f"[{tag}] tlswatch: {n.kind}", ""
    lines.append(("Next step", clean(f.get("next_step", ""))))
    width = max(len(k) for k, _ in lines) + 1
    body = head + "\n\n" + "\n".join(f"{k + ':':<{width}} {v}" for k, v in lines)
    body += f"\n\n-- tlswatch, notification key {key}"
    return clean(title), body


def _cert_lines(f: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        ("Days left", _days(f.get("days_left"))),
        ("Expires", utc(f.get("not_after"))),
        ("Subject", clean(f.get("subject", ""))),
        ("Issuer", clean(f.get("issuer", ""))),
        ("Fingerprint", f"SHA-256 {clean(f.get('fingerprint', ''))}"),
        ("Endpoints", ", ".join(clean(e) for e in f.get("endpoints", []))),
    ]
