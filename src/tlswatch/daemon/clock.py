"""The daemon's notion of time, injectable so tests can travel through weeks in a second.

Every "now" the daemon uses (scheduling, expiry arithmetic, alert repeat, outbox backoff,
silence expiry) comes from a :class:`Clock`. :class:`SystemClock` is wall time;
:class:`ManualClock` only moves when told to.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Wait ``seconds`` of this clock's time, or until ``wake`` is set."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        if wake is None:
            await asyncio.sleep(max(0.0, seconds))
            return
        try:
            await asyncio.wait_for(wake.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass


class ManualClock:
    """A clock for tests: ``advance()`` moves it; ``sleep`` moves it forward at once."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when.astimezone(UTC)

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        self._now += timedelta(seconds=max(0.0, seconds))
        await asyncio.sleep(0)
