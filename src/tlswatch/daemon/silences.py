"""Silences: a target or a certificate fingerprint muted until a time, with a reason.

A notification is silenced when its certificate's fingerprint is silenced, or when every
target it concerns is silenced (by config URL or name). A silenced notification is still
recorded in the outbox (state ``silenced``) so ``tlswatch alerts`` shows what was muted; the
alert's state advances as usual, so nothing floods out when the silence ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Silence:
    id: int
    target: str | None
    fingerprint: str | None
    until: datetime
    reason: str


def matching(
    silences: Iterable[Silence],
    now: datetime,
    targets: Iterable[str],
    fingerprint: str | None,
    names: Mapping[str, str],
) -> Silence | None:
    """The silence that mutes a notification about ``targets`` / ``fingerprint``, if any.
    ``names`` maps a target key to its display name (a silence may use either)."""
    live = [s for s in silences if s.until > now]
    fp = fingerprint.lower() if fingerprint else None
    for s in live:
        if fp and s.fingerprint and s.fingerprint.lower() == fp:
            return s
    keys = list(targets)
    if not keys:
        return None
    found: Silence | None = None
    for key in keys:
        hit = next((s for s in live if s.target in (key, names.get(key))), None)
        if hit is None:
            return None
        found = found or hit
    return found
