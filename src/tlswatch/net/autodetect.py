"""auto:// in the shell: the detection pass, then client-first candidates if needed.

The first pass runs :class:`tlswatch.protocols.auto.AutoNegotiator` (greeting → that
protocol; silence → implicit TLS). When the server stayed silent *and* did not answer our
ClientHello with TLS, it is a protocol where the client speaks first with something other
than TLS: each of :data:`~tlswatch.protocols.auto.CLIENT_FIRST` is tried on a fresh
connection, under a shorter timeout, until one gets an answer it understands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from types import MappingProxyType

from tlswatch.errors import Failure, FailureClass
from tlswatch.model import Observation
from tlswatch.net.resolve import Address
from tlswatch.protocols import REGISTRY
from tlswatch.protocols.auto import CLIENT_FIRST
from tlswatch.targets import Target

#: per-candidate timeout: a wrong guess usually ends at once (the server closes or answers
#: garbage), a silent one must not cost the whole probe timeout six times
CANDIDATE_TIMEOUT = 3.0
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
    timeout = str(min(target.timeout, CANDIDATE_TIMEOUT))
    tried = []
    for scheme in CLIENT_FIRST:
        if not _usable(scheme):
            continue
        tried.append(scheme)
        spec = REGISTRY[scheme]
        candidate = dataclasses.replace(
            target,
            scheme=scheme,
            spec=spec,
            options=MappingProxyType({**target.options, "timeout": timeout}),
        )
        obs = await observe(candidate, address, dns_ms, detect=False)
        if _identified(scheme, obs):
            info = {**obs.upgrade, "detected": scheme, "detected_by": "client-first probe"}
            return dataclasses.replace(obs, upgrade=info)
    err = first.error
    return dataclasses.replace(
        first,
        upgrade={**first.upgrade, "detected": "unknown"},
        error=Failure(
            err.code,
            "could not identify the protocol: the server sent no greeting, did not answer "
            f"TLS ({err.message}), and understood none of: {', '.join(tried)}",
            err.excerpt,
        ),
    )
