"""When each target is probed, and how many probes run at once.

- Each target runs every ``interval``, spread by ``jitter`` (± a share of the interval) so
  thousands of targets with the same interval do not fire in the same second.
- A failed probe is retried after ``retry_backoff``, doubling per consecutive failure and
  capped at the interval, until ``failures_before_alert`` failures in a row declare the
  failure; then the normal interval resumes (each run can detect the recovery).
- At most ``concurrency`` probes are in flight overall and ``per_host`` against one host.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from tlswatch.daemon.config import MonitoredTarget

T = TypeVar("T")
#: the first run of a new target is spread over at most this much time
FIRST_RUN_SPREAD = timedelta(seconds=30)


@dataclass
class Slot:
    target: MonitoredTarget
    next_due: datetime
    running: bool = False


class Scheduler:
    def __init__(self, concurrency: int, per_host: int, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.slots: dict[str, Slot] = {}
        self.configure(concurrency, per_host)

    def configure(self, concurrency: int, per_host: int) -> None:
        self.concurrency = concurrency
        self.per_host = per_host
        self._global = asyncio.Semaphore(concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    def set_targets(
        self,
        targets: Iterable[MonitoredTarget],
        now: datetime,
        persisted: Mapping[str, datetime | None],
    ) -> None:
        """Adopt a (re)loaded target list; keep the timing of targets that stay."""
        fresh: dict[str, Slot] = {}
        for mt in targets:
            slot = self.slots.get(mt.key)
            if slot is not None:
                slot.target = mt
                fresh[mt.key] = slot
                continue
            due = persisted.get(mt.key)
            if due is None or due > now + mt.interval:
                spread = min(FIRST_RUN_SPREAD, mt.interval).total_seconds() * mt.jitter
                due = now + timedelta(seconds=self.rng.uniform(0, spread))
            fresh[mt.key] = Slot(mt, due)
        self.slots = fresh

    def due(self, now: datetime) -> list[MonitoredTarget]:
        out = [s.target for s in self.slots.values() if not s.running and s.next_due <= now]
        for mt in out:
            self.slots[mt.key].running = True
        return out

    def finished(
        self, mt: MonitoredTarget, now: datetime, failed: bool, consecutive: int, declared: bool
    ) -> datetime:
        """Schedule the next run after a probe; returns its time."""
        if failed and not declared:
            delay = min(mt.retry_backoff * (2 ** max(0, consecutive - 1)), mt.interval)
        else:
            spread = mt.interval.total_seconds() * mt.jitter
            delay = mt.interval + timedelta(seconds=self.rng.uniform(-spread, spread))
        due = now + delay
        slot = self.slots.get(mt.key)
        if slot is not None:
            slot.next_due = due
            slot.running = False
        return due

    def release(self, key: str) -> None:
        slot = self.slots.get(key)
        if slot is not None:
            slot.running = False

    def next_wakeup(self) -> datetime | None:
        return min((s.next_due for s in self.slots.values() if not s.running), default=None)

    async def limited(self, host: str, fn: Callable[[], Awaitable[T]]) -> T:
        sem = self._hosts.get(host)
        if sem is None:
            sem = self._hosts[host] = asyncio.Semaphore(self.per_host)
        async with self._global, sem:
            return await fn()
