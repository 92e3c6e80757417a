"""auto:// in the shell: the detection pass, then client-first candidates if needed.

The first pass runs :class:`tlswatch.protocols.auto.AutoNegotiator` (greeting → that
protocol; silence → implicit TLS). When the server stayed silent *and* did not answer our
ClientHello with TLS, it is a protocol where the client speaks first with something other
than TLS: each of :data:`~tlswatch.protocols.auto.CLIENT_FIRST` is tried on a fresh
connection, under a shorter timeout, until one gets an answer it understands. How the
server took the ClientHello (no answer at all; or a refusal of the next connection, as a
point-to-point OpenVPN server that restarts after each peer gives) decides which candidates
go first (:func:`~tlswatch.protocols.auto.client_first_order`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from types import MappingProxyType

from tlswatch.errors import Failure, FailureClass
from tlswatch.model import Observation
from tlswatch.net.resolve import Address
from tlswatch.protocols import REGISTRY
from tlswatch.protocols.auto import client_first_order
from tlswatch.targets import Target

#: per-candidate timeout: a wrong guess usually ends at once (the server closes or answers
#: garbage), a silent one must not cost the whole probe timeout six times
CANDIDATE_TIMEOUT = 3.0
#: pause between connection attempts while a server that refuses right after our previous
#: connection comes back (see :func:`_observe_candidate`)
RECONNECT_INTERVAL = 0.1
#: failures of the implicit-TLS attempt that mean "not TLS": try the candidates
_NOT_TLS = frozenset(
    {FailureClass.PROTOCOL_ERROR, FailureClass.CLOSED, FailureClass.HANDSHAKE_TIMEOUT}
)

Observe = Callable[..., Awaitable[Observation]]


def _identified(scheme: str, obs: Observation) -> bool:
    """The candidate's dialogue understood the server: it reached TLS, or the server
    answered in that protocol's own words (a refusal). Silence proves nothing: an OpenVPN
    reset nobody answers is not an OpenVPN server."""
    if obs.timings.upgrade is not None:
        return True
    if obs.error is None:
        return True
    refused = obs.error.code in (FailureClass.UPGRADE_REFUSED, FailureClass.UPGRADE_NOT_OFFERED)
    return refused and scheme != "openvpn"


def _usable(scheme: str) -> bool:
    spec = REGISTRY.get(scheme)
    if spec is None:
        return False
    try:
        spec.negotiator_factory()
    except (ImportError, AttributeError):
        return False
    return True


async def _observe_candidate(
    candidate: Target, address: Address, dns_ms: float | None, observe: Observe, wait: float
) -> Observation:
    """One candidate's probe; a refused connection is retried for up to ``wait`` seconds.

    The port accepted our first connection moments ago, so a refusal now means the server
    stopped listening because of it: a point-to-point OpenVPN server (``--proto
    tcp-server`` without ``--mode server``) serves one peer, closes its socket when that
    peer leaves and listens again after a restart pause (1 s by default). Waiting for it,
    bounded, is what lets a candidate reach it at all."""
    deadline = time.monotonic() + wait
    while True:
        obs = await observe(candidate, address, dns_ms, detect=False)
        if not _refused(obs) or time.monotonic() + RECONNECT_INTERVAL >= deadline:
            return obs
        await asyncio.sleep(RECONNECT_INTERVAL)


def _refused(obs: Observation) -> bool:
    return obs.error is not None and obs.error.code is FailureClass.CONNECT_REFUSED


async def observe_auto(
    target: Target, address: Address, dns_ms: float | None, observe: Observe
) -> Observation:
    first = await observe(target, address, dns_ms, detect=False)
    if (
        first.upgrade.get("detected") != "tls"
        or first.error is None
        or first.error.code not in _NOT_TLS
    ):
        return first
    wait = min(target.timeout, CANDIDATE_TIMEOUT)
    timeout = str(wait)
    unanswered = first.error.code is FailureClass.HANDSHAKE_TIMEOUT
    stops_listening = False
    tried: list[str] = []
    while order := client_first_order(unanswered, stops_listening, tuple(tried)):
        scheme = order[0]
        tried.append(scheme)
        if not _usable(scheme):
            continue
        spec = REGISTRY[scheme]
        candidate = dataclasses.replace(
            target,
            scheme=scheme,
            spec=spec,
            options=MappingProxyType({**target.options, "timeout": timeout}),
        )
        obs = await observe(candidate, address, dns_ms, detect=False)
        if _refused(obs) and not stops_listening:
            # Refused right after accepting our first connection: the server stops
            # listening after each peer. Put the protocols known to do that first, and
            # wait for the server to listen again before each try.
            stops_listening = True
            tried.remove(scheme)
            continue
        if stops_listening and _refused(obs):
            obs = await _observe_candidate(candidate, address, dns_ms, observe, wait)
            if _refused(obs):
                return dataclasses.replace(obs, upgrade={**first.upgrade, "detected": "unknown"})
        if _identified(scheme, obs):
            info = {**obs.upgrade, "detected": scheme, "detected_by": "client-first probe"}
            return dataclasses.replace(obs, upgrade=info)
    err = first.error
    usable = [s for s in tried if _usable(s)]
    return dataclasses.replace(
        first,
        upgrade={**first.upgrade, "detected": "unknown"},
        error=Failure(
            err.code,
            "could not identify the protocol: the server sent no greeting, did not answer "
            f"TLS ({err.message}), and understood none of: {', '.join(usable)}",
            err.excerpt,
        ),
    )
