"""tlswatch: watch the TLS certificates of every service that speaks TLS.

The public library API (every shell — CLI, daemon, exporter, workers — uses only this)::

    import tlswatch

    target = tlswatch.parse_target("smtp://mail.example.com:587")
    result = await tlswatch.check_target(target)            # a judged TargetResult
    async for r in tlswatch.scan(targets, concurrency=100):  # many, streamed, bounded
        ...
    observations, dns_failure = await tlswatch.observe_target(target)  # raw, re-judge later

Names are resolved lazily (PEP 562): ``import tlswatch`` loads no asyncio, cryptography,
rich or typer, so a short-lived process reaches its first connection quickly. Each name is
imported from its home module on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it
_HOME: dict[str, str] = {
    # targets
    "parse_target": "tlswatch.targets",
    "Target": "tlswatch.targets",
    # probing
    "check_target": "tlswatch.probe",
    "check_targets": "tlswatch.probe",
    "scan": "tlswatch.probe",
    "observe_target": "tlswatch.probe",
    "ProbeSettings": "tlswatch.probe",
    "Resolver": "tlswatch.net.resolve",
    "Address": "tlswatch.net.resolve",
    # the result model
    "Status": "tlswatch.model",
    "Observation": "tlswatch.model",
    "TLSInfo": "tlswatch.model",
    "Timings": "tlswatch.model",
    "KeyInfo": "tlswatch.model",
    "CertInfo": "tlswatch.model",
    "Verification": "tlswatch.model",
    "Finding": "tlswatch.model",
    "EndpointResult": "tlswatch.model",
    "TargetResult": "tlswatch.model",
    # failures and errors
    "Failure": "tlswatch.errors",
    "FailureClass": "tlswatch.errors",
    "TlswatchError": "tlswatch.errors",
    "TargetError": "tlswatch.errors",
    "ConfigError": "tlswatch.errors",
    "ProbeError": "tlswatch.errors",
}

__all__ = [
    "Address",
    "CertInfo",
    "ConfigError",
    "EndpointResult",
    "Failure",
    "FailureClass",
    "Finding",
    "KeyInfo",
    "Observation",
    "ProbeError",
    "ProbeSettings",
    "Resolver",
    "Status",
    "TLSInfo",
    "Target",
    "TargetError",
    "TargetResult",
    "Timings",
    "TlswatchError",
    "Verification",
    "__version__",
    "check_target",
    "check_targets",
    "observe_target",
    "parse_target",
    "scan",
]

if TYPE_CHECKING:
    from tlswatch.errors import (
        ConfigError,
        Failure,
        FailureClass,
        ProbeError,
        TargetError,
        TlswatchError,
    )
    from tlswatch.model import (
        CertInfo,
        EndpointResult,
        Finding,
        KeyInfo,
        Observation,
        Status,
        TargetResult,
        Timings,
        TLSInfo,
        Verification,
    )
    from tlswatch.net.resolve import Address, Resolver
    from tlswatch.probe import (
        ProbeSettings,
        check_target,
        check_targets,
        observe_target,
        scan,
    )
    from tlswatch.targets import Target, parse_target


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'tlswatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later accesses skip this hook
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
