"""Sending one outbox row through Apprise, with the idempotency key attached.

Apprise is synchronous; a send runs in a worker thread with a deadline. The key travels as
an ``Idempotency-Key`` header on every Apprise service that supports custom headers
(``json://``, ``xml://``, ``form://``, ``mailto://``…) and in the body's last line for the
others. Apprise reports failures through its logger, so the reason is captured from there.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

import apprise

log = logging.getLogger("tlswatch.daemon.delivery")

IDEMPOTENCY_HEADER = "Idempotency-Key"
_TYPES = {
    "ok": apprise.NotifyType.SUCCESS,
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "critical": apprise.NotifyType.FAILURE,
}


@dataclass(frozen=True)
class Outgoing:
    url: str
    title: str
    body: str
    severity: str
    key: str


class Sender(Protocol):
    async def send(self, msg: Outgoing, timeout: float) -> str | None:
        """Deliver ``msg``; None on success, else why it failed."""
        ...


class AppriseSender:
    async def send(self, msg: Outgoing, timeout: float) -> str | None:
        try:
            return await asyncio.wait_for(asyncio.to_thread(_send_sync, msg, timeout), timeout)
        except TimeoutError:
            return f"no answer within {timeout:g}s"


def _send_sync(msg: Outgoing, timeout: float) -> str | None:
    plugin = apprise.Apprise.instantiate(msg.url, suppress_exceptions=True)
    if plugin is None:
        return "Apprise cannot use this URL (check `tlswatch config check`)"
    headers = getattr(plugin, "headers", None)
    if isinstance(headers, dict):
        headers[IDEMPOTENCY_HEADER] = msg.key
    # bound Apprise's own network waits below our deadline
    for attr in ("socket_connect_timeout", "socket_read_timeout"):
        if hasattr(plugin, attr):
            setattr(plugin, attr, max(1.0, timeout - 1))
    if "format=" not in msg.url:
        # our messages are aligned plain text: keep them so (e-mail defaults to HTML)
        plugin.notify_format = apprise.NotifyFormat.TEXT
    a = apprise.Apprise()
    a.add(plugin)
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as logs:
        try:
            ok = a.notify(
                body=msg.body,
                title=msg.title,
                notify_type=_TYPES.get(msg.severity, apprise.NotifyType.INFO),
                body_format=apprise.NotifyFormat.TEXT,
            )
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        captured = logs.getvalue().strip()
    if ok:
        return None
    last = [line for line in captured.splitlines() if line.strip()]
    return " | ".join(last[-3:]) or "Apprise reported a failure"
