"""Target URLs: ``scheme://host[:port][?option=value&...]`` (PRODUCT.md §1).

Parsing is strict: an unknown scheme, option or bad value raises :class:`TargetError` with a
message that says what is wrong and what would be right.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from urllib.parse import parse_qsl, urlsplit

from tlswatch.errors import TargetError
from tlswatch.protocols import PORT_SCHEMES, REGISTRY, ProtocolSpec

#: options every scheme accepts, with what they mean (PRODUCT.md §1)
GLOBAL_OPTIONS: Mapping[str, str] = {
    "sni": "server name sent in the ClientHello (default: the host when it is a name; empty: none)",
    "name": "host name to verify (default: sni, else host)",
    "ca": "PEM file of extra trust anchors",
    "trust": "system | mozilla | none",
    "warn": "warning threshold: days (30, 30d) or share of the lifetime (33%)",
    "crit": "critical threshold: days or share of the lifetime",
    "timeout": "seconds allowed for each phase (default 10)",
    "family": "4 | 6 | all (default all)",
    "client_cert": "PEM client certificate to present",
    "client_key": "PEM key of client_cert",
    "revocation": "ocsp: check revocation with the OCSP responder",
}

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 600.0
_THRESHOLD = re.compile(r"^\d+(\.\d+)?[d%]?$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")


@lru_cache(maxsize=4096)
def _is_ip_literal(host: str) -> bool:
    # Cached: a probe asks several times per target (SNI, verify name, DNS timing).
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Target:
    """One parsed target URL."""

    url: str
    scheme: str
    host: str
    port: int
    spec: ProtocolSpec
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def host_is_ip(self) -> bool:
        return _is_ip_literal(self.host)

    @property
    def sni(self) -> str | None:
        """SNI to send: ``sni=`` if given (empty: none); else the host when it is a name
        (RFC 6066 §3 forbids IP literals in SNI)."""
        if "sni" in self.options:
            return self.options["sni"] or None
        return None if self.host_is_ip else self.host.rstrip(".")

    @property
    def verify_name(self) -> str:
        """The name (or IP address) the certificate must match."""
        return self.options.get("name") or self.sni or self.host

    @property
    def timeout(self) -> float:
        return float(self.options.get("timeout", DEFAULT_TIMEOUT))

    @property
    def family(self) -> str:
        return self.options.get("family", "all")

    @property
    def tls_mode(self) -> str:
        return self.spec.tls_mode

    def with_options(self, **overrides: str) -> Target:
        """A copy with options overridden (CLI flags win over URL options)."""
        merged = dict(self.options)
        merged.update(overrides)
        return parse_target(_rebuild(self.scheme, self.host, self.port, merged))

    def __str__(self) -> str:
        return self.url


def _rebuild(scheme: str, host: str, port: int, options: Mapping[str, str]) -> str:
    h = f"[{host}]" if ":" in host else host
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{scheme}://{h}:{port}" + (f"?{query}" if query else "")


def parse_target(text: str) -> Target:
    """Parse a target URL (or a bare ``host:port`` whose port names the protocol)."""
    raw = text.strip()
    if not raw:
        raise TargetError("empty target")
    if "://" not in raw:
        return _parse_bare(raw)
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    spec = REGISTRY.get(scheme)
    if spec is None:
        raise TargetError(
            f"{raw}: unknown scheme {scheme!r}; known schemes: {', '.join(sorted(REGISTRY))}"
        )
    if parts.username or parts.password:
        raise TargetError(f"{raw}: credentials in target URLs are not supported")
    if parts.path not in ("", "/"):
        raise TargetError(f"{raw}: unexpected path {parts.path!r}")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"{raw}: {exc}") from None
    if not host:
        raise TargetError(f"{raw}: no host")
    host = _check_host(raw, host, parts.netloc)
    if port is None:
        if spec.default_port is None:
            raise TargetError(f"{raw}: scheme {scheme!r} has no default port; give one")
        port = spec.default_port
    if not 0 < port < 65536:
        raise TargetError(f"{raw}: port {port} out of range")
    options = _parse_options(raw, parts.query, spec)
    return Target(raw, scheme, host, port, spec.select(options), MappingProxyType(options))


def _parse_bare(raw: str) -> Target:
    host, sep, port_text = raw.rpartition(":")
    if not sep or not port_text.isdigit():
        raise TargetError(f"{raw}: give a URL (scheme://host:port) or host:port")
    port = int(port_text)
    # A port that names no protocol is detected from what the server says (auto://).
    scheme = PORT_SCHEMES.get(port, "auto")
    return parse_target(f"{scheme}://{host}:{port}")


def _check_host(raw: str, host: str, netloc: str) -> str:
    if "[" in netloc:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise TargetError(f"{raw}: {host!r} in brackets is not an IPv6 address") from None
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    if not _HOSTNAME.match(host):
        raise TargetError(f"{raw}: {host!r} is not a valid host name")
    return host.lower()


def _parse_options(raw: str, query: str, spec: ProtocolSpec) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise TargetError(f"{raw}: malformed options {query!r}") from None
    options: dict[str, str] = {}
    known = {**GLOBAL_OPTIONS, **spec.options, **{k: "" for k, _ in spec.variants}}
    for key, value in pairs:
        if key not in known:
            raise TargetError(
                f"{raw}: unknown option {key!r} for {spec.name}; known: {', '.join(sorted(known))}"
            )
        if key in options:
            raise TargetError(f"{raw}: option {key!r} given twice")
        options[key] = value
    _validate(raw, options)
    return options


def _validate(raw: str, options: Mapping[str, str]) -> None:
    if "timeout" in options:
        try:
            t = float(options["timeout"])
        except ValueError:
            t = -1
        if not 0 < t <= MAX_TIMEOUT:
            raise TargetError(f"{raw}: timeout must be seconds in (0, {MAX_TIMEOUT:g}]")
    if options.get("family", "all") not in ("4", "6", "all"):
        raise TargetError(f"{raw}: family must be 4, 6 or all")
    if options.get("trust", "system") not in ("system", "mozilla", "none"):
        raise TargetError(f"{raw}: trust must be system, mozilla or none")
    if options.get("revocation", "ocsp") not in ("ocsp", "none", ""):
        raise TargetError(f"{raw}: revocation must be ocsp or none")
    for key in ("warn", "crit"):
        if key in options and not _THRESHOLD.match(options[key]):
            raise TargetError(f"{raw}: {key} must be days (30 or 30d) or a percentage (33%)")
    if ("client_cert" in options) != ("client_key" in options):
        raise TargetError(f"{raw}: client_cert and client_key go together")
    if "ehlo" in options:
        from tlswatch.protocols.smtp import valid_ehlo_name  # only SMTP/LMTP accept ehlo=

        if not valid_ehlo_name(options["ehlo"]):
            raise TargetError(
                f"{raw}: ehlo must be a domain name or an address literal such as [192.0.2.1]"
            )


__all__ = ["GLOBAL_OPTIONS", "Target", "parse_target"]
