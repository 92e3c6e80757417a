"""The library API every shell calls: probe targets, get judged results.

    results = await check_targets([parse_target("smtp://mail.example.com:587")])
    async for result in scan(targets, concurrency=100): ...

Network work happens in :mod:`tlswatch.net`; judgement in :mod:`tlswatch.analysis`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tlswatch.errors import Failure, FailureClass
from tlswatch.model import Observation, TargetResult
from tlswatch.net.driver import probe_endpoint
from tlswatch.net.resolve import Address, Resolver
from tlswatch.protocols.base import Negotiator, NegotiatorContext
from tlswatch.targets import Target
from tlswatch.tls.context import ClientCertError, ClientContext, client_context

if TYPE_CHECKING:
    from tlswatch.net.evidence import EvidenceOptions

# tlswatch.analysis (and with it cryptography, ~50 ms) is imported on the first judgement,
# not at import time: a short-lived process reaches its first connection sooner.

DEFAULT_CONCURRENCY = 100


@dataclass
class ProbeSettings:
    """Run-wide settings shared by every target of one run."""

    resolver: Resolver = field(default_factory=Resolver)
    #: AIA issuer fetching (--no-fetch), OCSP transport and the per-run fetch cache;
    #: None: defaults (tlswatch.net.evidence.EvidenceOptions)
    evidence: EvidenceOptions | None = None


async def observe_target(
    target: Target, settings: ProbeSettings | None = None
) -> tuple[list[Observation], Failure | None]:
    """Resolve ``target`` and probe each of its addresses (concurrently)."""
    settings = settings or ProbeSettings()
    start = time.perf_counter()
    addrs = await settings.resolver.resolve(target.host, target.family, target.timeout)
    dns_ms = None if target.host_is_ip else round((time.perf_counter() - start) * 1000, 3)
    if isinstance(addrs, Failure):
        return [], addrs
    if len(addrs) == 1:
        return [await observe_endpoint(target, addrs[0], dns_ms)], None
    return list(await asyncio.gather(*(observe_endpoint(target, a, dns_ms) for a in addrs))), None


def _context_for(target: Target) -> ClientContext:
    """The (cached) TLS context for ``target``: its ALPN and client certificate."""
    return client_context(
        target.spec.alpn, target.options.get("client_cert"), target.options.get("client_key")
    )


async def observe_endpoint(
    target: Target, address: Address, dns_ms: float | None = None, *, detect: bool = True
) -> Observation:
    """Probe one address of ``target``. Never raises: set-up problems (a negotiator that
    cannot be built, an unreadable client certificate) are failures in the Observation."""
    spec = target.spec
    if detect and spec.name == "auto":
        from tlswatch.net.autodetect import observe_auto

        return await observe_auto(target, address, dns_ms, observe_endpoint)

    def failed(code: FailureClass, message: str) -> Observation:
        return Observation(address.ip, target.port, error=Failure(code, message))

    negotiator: Negotiator | None = None
    try:
        framer_factory = spec.framer_factory()
        factory = spec.negotiator_factory()
        if factory is not None:
            negotiator = factory(
                NegotiatorContext(target.host, target.port, target.sni, target.options)
            )
    except Exception as exc:  # a probe never raises
        return failed(
            FailureClass.PROTOCOL_ERROR,
            f"internal error: no usable {spec.name} negotiator or framer "
            f"({type(exc).__name__}: {exc})",
        )
    try:
        context = _context_for(target)
    except (OSError, ClientCertError, ValueError) as exc:
        return failed(
            FailureClass.TLS_ERROR,
            f"cannot load client_cert/client_key: {getattr(exc, 'strerror', None) or exc}",
        )
    return await probe_endpoint(
        address,
        target.port,
        timeout=target.timeout,
        server_hostname=target.sni,
        context=context,
        negotiator=negotiator,
        framer_factory=framer_factory,
        protocol_name=spec.name,
        dns_ms=dns_ms,
        transport=spec.transport,
    )


async def check_target(
    target: Target, settings: ProbeSettings | None = None, now: datetime | None = None
) -> TargetResult:
    """Probe every address of ``target`` and judge what was seen. Never raises for
    anything a server does."""
    observations, dns_failure = await observe_target(target, settings)
    from tlswatch.analysis.evaluate import evaluate_target
    from tlswatch.net.evidence import EvidenceOptions, gather_evidence

    if settings is not None and settings.evidence is None:
        settings.evidence = EvidenceOptions()  # one fetch cache for the whole run
    evidence = settings.evidence if settings is not None else None
    observations = await gather_evidence(target, observations, evidence)
    return evaluate_target(target, observations, now or datetime.now(UTC), dns_failure)


def prewarm(targets: Iterable[Target] = ()) -> None:
    """Do now, once, what each process would otherwise do on its first target: import the
    judging modules and load the trust anchors and TLS contexts ``targets`` use.

    Meant for just before forking scan workers (tlswatch.scanpool): the children inherit
    the loaded modules and parsed trust stores instead of each importing cryptography's
    X.509 layer and parsing the system bundle again (≈ 40-60 ms of CPU per process,
    docs/performance.md). Problems are left for the probe itself to report."""
    from tlswatch.analysis.evaluate import evaluate_target  # noqa: F401
    from tlswatch.analysis.policy import policy_for
    from tlswatch.net.evidence import gather_evidence  # noqa: F401

    for target in targets:
        try:
            policy_for(target)
            _context_for(target)
        except Exception:  # noqa: S112 - the probe reports it, with its own words
            continue


async def check_targets(
    targets: Iterable[Target],
    settings: ProbeSettings | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[TargetResult]:
    """Check every target (at most ``concurrency`` at once); results in the input order."""
    settings = settings or ProbeSettings()
    gate = asyncio.Semaphore(concurrency)

    async def bounded(target: Target) -> TargetResult:
        async with gate:
            return await check_target(target, settings)

    return list(await asyncio.gather(*(bounded(t) for t in targets)))


async def scan(
    targets: Iterable[Target] | AsyncIterable[Target],
    concurrency: int = DEFAULT_CONCURRENCY,
    settings: ProbeSettings | None = None,
) -> AsyncIterator[TargetResult]:
    """Probe many targets with at most ``concurrency`` in flight; yield results as they
    finish (not in input order).

    Targets are pulled lazily, one each time a slot frees up, and a result is forgotten
    once yielded, so memory stays flat however long the list is. An async iterable (lines
    read from a pipe, say) is awaited without blocking the probes in flight: results keep
    coming while the next target is awaited. Closing the generator early cancels the
    probes still running.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    settings = settings or ProbeSettings()
    running: set[asyncio.Task[TargetResult]] = set()

    def start(target: Target) -> None:
        running.add(asyncio.create_task(check_target(target, settings)))

    try:
        if isinstance(targets, AsyncIterable):
            async for result in _scan_async(aiter(targets), concurrency, running, start):
                yield result
            return
        it = iter(targets)
        exhausted = False
        while True:
            while not exhausted and len(running) < concurrency:
                try:
                    start(next(it))
                except StopIteration:
                    exhausted = True
            if not running:
                return
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running.difference_update(done)
            for task in done:
                yield task.result()
    finally:
        for task in running:
            task.cancel()


async def _scan_async(
    source: AsyncIterator[Target],
    concurrency: int,
    running: set[asyncio.Task[TargetResult]],
    start: Callable[[Target], None],
) -> AsyncIterator[TargetResult]:
    """scan() over an async source: fetching the next target is one more task in the wait
    set, so a slow source never holds back finished results."""

    async def fetch() -> Target:
        return await anext(source)

    fetching: asyncio.Task[Target] | None = None
    exhausted = False
    try:
        while True:
            if fetching is None and not exhausted and len(running) < concurrency:
                fetching = asyncio.create_task(fetch())
            waiting: set[asyncio.Task[Any]] = set(running)
            if fetching is not None:
                waiting.add(fetching)
            if not waiting:
                return
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if fetching is not None and fetching in done:
                done.discard(fetching)
                try:
                    start(fetching.result())
                except StopAsyncIteration:
                    exhausted = True
                fetching = None
            running.difference_update(done)
            for task in done:
                yield task.result()
    finally:
        if fetching is not None:
            fetching.cancel()
