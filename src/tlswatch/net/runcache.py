"""A per-run cache of side fetches (AIA issuers, OCSP answers): concurrent asks for the
same key share one download."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class RunCache(Generic[T]):
    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Future[T]] = {}

    async def get(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        fut = self._tasks.get(key)
        if fut is None:
            fut = asyncio.ensure_future(make())
            self._tasks[key] = fut
        return await asyncio.shield(fut)

    def __len__(self) -> int:
        return len(self._tasks)


__all__ = ["RunCache"]
