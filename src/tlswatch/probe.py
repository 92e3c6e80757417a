"""The library API every shell calls: probe targets, get judged results.

    results = await check_targets([parse_target("smtp://mail.example.com:587")])
    async for result in scan(targets, concurrency=100): ...

Network work happens in :mod:`tlswatch.net`; judgement in :mod:`tlswatch.analysis`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tlswatch.analysis.evaluate import evaluate_target
from tlswatch.errors import Failure
from tlswatch.model import Observation, TargetResult
from tlswatch.net.driver import probe_endpoint
from tlswatch.net.resolve import Address, Resolver
from tlswatch.protocols.base import NegotiatorContext
from tlswatch.targets import Target
from tlswatch.tls.context import client_context

DEFAULT_CONCURRENCY = 100


@dataclass
class ProbeSettings:
    """Run-wide settings shared by every target of one run."""

    resolver: Resolver = field(default_factory=Resolver)


async def observe_target(
    target: Target, settings: ProbeSettings | None = None
) -> tuple[list[Observation], Failure | None]:
    """Resolve ``target`` and probe each of its addresses (concurrently)."""
    settings = settings or ProbeSettings()
    start = time.perf_counter()
    addrs = await settings.resolver.resolve(target.host, target.family)
    dns_ms = None if target.host_is_ip else round((time.perf_counter() - start) * 1000, 3)
    if isinstance(addrs, Failure):
        return [], addrs
    if len(addrs) == 1:
        return [await observe_endpoint(target, addrs[0], dns_ms)], None
    return list(await asyncio.gather(*(observe_endpoint(target, a, dns_ms) for a in addrs))), None


async def observe_endpoint(
    target: Target, address: Address, dns_ms: float | None = None
) -> Observation:
    spec = target.spec
    factory = spec.negotiator_factory()
    negotiator = None
    if factory is not None:
        negotiator = factory(
            NegotiatorContext(target.host, target.port, target.sni, target.options)
        )
    context = client_context(
        spec.alpn, target.options.get("client_cert"), target.options.get("client_key")
    )
    return await probe_endpoint(
        address,
        target.port,
        timeout=target.timeout,
        server_hostname=target.sni,
        context=context,
        negotiator=negotiator,
        framer_factory=spec.framer_factory(),
        protocol_name=spec.name,
        dns_ms=dns_ms,
    )


async def check_target(
    target: Target, settings: ProbeSettings | None = None, now: datetime | None = None
) -> TargetResult:
    observations, dns_failure = await observe_target(target, settings)
    return evaluate_target(target, observations, now or datetime.now(UTC), dns_failure)


async def check_targets(
    targets: Iterable[Target], settings: ProbeSettings | None = None
) -> list[TargetResult]:
    settings = settings or ProbeSettings()
    return list(await asyncio.gather(*(check_target(t, settings) for t in targets)))


async def scan(
    targets: Iterable[Target],
    concurrency: int = DEFAULT_CONCURRENCY,
    settings: ProbeSettings | None = None,
) -> AsyncIterator[TargetResult]:
    """Probe many targets with at most ``concurrency`` in flight; yield results as they
    finish. Targets are pulled from the iterable lazily, so memory stays flat however long
    the list is."""
    settings = settings or ProbeSettings()
    it = iter(targets)
    pending: set[asyncio.Task[TargetResult]] = set()

    def refill() -> None:
        while len(pending) < concurrency:
            try:
                t = next(it)
            except StopIteration:
                return
            pending.add(asyncio.create_task(check_target(t, settings)))

    refill()
    while pending:
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            pending.discard(task)
        refill()
        for task in done:
            yield task.result()
