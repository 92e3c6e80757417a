"""The multi-process scan engine (tlswatch.scanpool) and the per-run caches of the fast path.

The pool tests use trivial handlers (no network): what they pin is the bookkeeping, that
every item yields exactly one record whichever process took it, that a bug or a dead child
becomes a record instead of a hang, and that in-flight work stays bounded. The CLI's use of
the pool against a real server is covered by tests/test_scan.py (default workers).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os

import pytest

from tests.support.pki import TestPKI
from tlswatch.scanpool import WorkerLost, WorkerPool, default_workers
from tlswatch.x509 import certinfo, verify


def _collect(
    pool: WorkerPool[int, tuple[str, int, int]], items: range
) -> list[tuple[str, int, int]]:
    async def run() -> list[tuple[str, int, int]]:
        out: list[tuple[str, int, int]] = []
        async for batch in pool.results(items):
            out.extend(batch)
        return out

    return asyncio.run(run())


def _fallback(item: int, exc: BaseException) -> tuple[str, int, int]:
    return (type(exc).__name__, item, 0)


def test_every_item_yields_exactly_one_record_across_processes() -> None:
    """3 processes over 600 items: each item is handled once, by one of the 3 processes."""
    parent = os.getpid()

    async def handle(item: int) -> tuple[str, int, int]:
        await asyncio.sleep(0)
        return ("ok", item, os.getpid())

    pool: WorkerPool[int, tuple[str, int, int]] = WorkerPool(
        handle, _fallback, workers=3, concurrency=30
    )
    children = {pid for pid, _ in pool._children}
    records = _collect(pool, range(600))
    assert sorted(r[1] for r in records) == list(range(600))
    assert {r[0] for r in records} == {"ok"}
    assert {r[2] for r in records} <= children | {parent}
    assert len(children) == 2
    for pid in children:  # reaped: no zombies left behind
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_handler_exception_becomes_the_fallback_record() -> None:
    """A handler that raises (a bug) yields its fallback record; the scan goes on."""

    async def handle(item: int) -> tuple[str, int, int]:
        if item % 10 == 3:
            raise ValueError("boom")
        return ("ok", item, 0)

    pool: WorkerPool[int, tuple[str, int, int]] = WorkerPool(
        handle, _fallback, workers=2, concurrency=8
    )
    records = _collect(pool, range(100))
    assert sorted(r[1] for r in records) == list(range(100))
    assert sorted(r[1] for r in records if r[0] == "ValueError") == list(range(3, 100, 10))


def test_dead_child_items_are_reported_not_lost() -> None:
    """A child that dies mid-scan: the items it held come back as WorkerLost records, the
    rest are handled, and the scan ends (no hang)."""
    parent = os.getpid()

    async def handle(item: int) -> tuple[str, int, int]:
        if os.getpid() != parent:
            os._exit(3)  # the child dies holding its batch
        await asyncio.sleep(0)
        return ("ok", item, 0)

    pool: WorkerPool[int, tuple[str, int, int]] = WorkerPool(
        handle, _fallback, workers=2, concurrency=10
    )
    records = _collect(pool, range(200))
    assert sorted(r[1] for r in records) == list(range(200))
    assert {r[0] for r in records} <= {"ok", WorkerLost.__name__}


def test_one_worker_runs_in_process_with_bounded_concurrency() -> None:
    """workers=1 forks nothing, and never more than ``concurrency`` handlers run at once."""
    running = 0
    peak = 0

    async def handle(item: int) -> tuple[str, int, int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        running -= 1
        return ("ok", item, 0)

    pool: WorkerPool[int, tuple[str, int, int]] = WorkerPool(
        handle, _fallback, workers=1, concurrency=7
    )
    assert pool._children == []
    records = _collect(pool, range(50))
    assert len(records) == 50
    assert peak == 7


def test_default_workers_is_the_usable_cpu_count() -> None:
    """--workers 0 means one process per CPU this process may use."""
    assert default_workers() == len(os.sched_getaffinity(0))


def test_describe_cache_keeps_position_and_time_exact(pki: TestPKI) -> None:
    """The same DER described at two positions and two times gives each its own position
    and days_left (the cache holds only time-independent facts)."""
    leaf = pki.issue("describe-cache")
    der = leaf.chain_der[1]
    t1 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    t2 = t1 + dt.timedelta(days=10)
    a = certinfo.describe(der, 1, t1)
    b = certinfo.describe(der, 3, t2)
    assert (a.position, b.position) == (1, 3)
    assert a.days_left is not None and b.days_left is not None
    assert round(a.days_left - b.days_left, 2) == 10.0
    assert a.sha256 == b.sha256 == leaf.chain_sha256[1]
    assert certinfo.describe(b"not a certificate", 0, t1).parse_error is not None


def test_self_signed_cache_answers_per_certificate(pki: TestPKI) -> None:
    """self_signed is cached per certificate content: a root stays self-signed and an
    intermediate stays not, however often and in whatever order they are asked."""
    from cryptography import x509

    root = x509.load_pem_x509_certificate(pki.root.cert_pem.bytes())
    inter = x509.load_der_x509_certificate(pki.issue("self-signed-cache").chain_der[1])
    for _ in range(3):
        assert verify.self_signed(root) is True
        assert verify.self_signed(inter) is False
