"""Name resolution: every A and AAAA address of a name is its own endpoint (PRODUCT.md §2).

By default the system resolver (``getaddrinfo``: /etc/hosts, nsswitch, resolv.conf) answers,
as it would for the mail and database clients being monitored. ``Resolver(nameservers=...)``
asks given DNS servers directly with dnspython instead (A and AAAA queried in parallel).
Answers are cached for the resolver's lifetime, bounded by ``cache_ttl``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass

from tlswatch.errors import Failure, FailureClass


@dataclass(frozen=True, slots=True)
class Address:
    family: int  # socket.AF_INET or AF_INET6
    ip: str


class Resolver:
    def __init__(
        self,
        nameservers: list[str] | None = None,
        cache_ttl: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        self.nameservers = nameservers or []
        self.cache_ttl = cache_ttl
        self.timeout = timeout
        self._cache: dict[str, tuple[float, list[Address]]] = {}
        self._inflight: dict[str, asyncio.Future[list[Address]]] = {}

    async def resolve(self, host: str, family: str = "all") -> list[Address] | Failure:
        """Addresses of ``host`` filtered by family ("4", "6", "all"), or a dns Failure."""
        literal = _literal(host)
        if literal is not None:
            addrs = [literal]
        else:
            try:
                addrs = await self._lookup(host)
            except _LookupFailed as exc:
                return Failure(FailureClass.DNS, f"cannot resolve {host}: {exc}")
        wanted = {
            "4": (socket.AF_INET,),
            "6": (socket.AF_INET6,),
        }.get(family, (socket.AF_INET, socket.AF_INET6))
        selected = [a for a in addrs if a.family in wanted]
        if not selected:
            fam = {"4": "IPv4", "6": "IPv6"}.get(family, "")
            return Failure(FailureClass.DNS, f"{host} has no {fam} address".replace("  ", " "))
        return selected

    async def _lookup(self, host: str) -> list[Address]:
        now = time.monotonic()
        hit = self._cache.get(host)
        if hit and hit[0] > now:
            return hit[1]
        pending = self._inflight.get(host)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[list[Address]] = asyncio.get_running_loop().create_future()
        self._inflight[host] = fut
        try:
            async with asyncio.timeout(self.timeout):
                if self.nameservers:
                    addrs = await self._dns(host)
                else:
                    addrs = await self._system(host)
        except TimeoutError:
            exc: Exception = _LookupFailed(f"no answer within {self.timeout:g}s")
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise exc from None
        except _LookupFailed as e:
            fut.set_exception(e)
            fut.exception()
            raise
        finally:
            self._inflight.pop(host, None)
        fut.set_result(addrs)
        self._cache[host] = (now + self.cache_ttl, addrs)
        return addrs

    async def _system(self, host: str) -> list[Address]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise _LookupFailed(exc.strerror or str(exc)) from None
        return _dedupe(Address(int(fam), str(sa[0])) for fam, _, _, _, sa in infos)

    async def _dns(self, host: str) -> list[Address]:
        import dns.asyncresolver  # noqa: PLC0415 - only when DNS servers are configured
        import dns.exception  # noqa: PLC0415
        import dns.resolver  # noqa: PLC0415

        res = dns.asyncresolver.Resolver(configure=False)
        servers, port = [], 53
        for ns in self.nameservers:
            ip, port = _split_server(ns)
            servers.append(ip)
        res.nameservers = servers
        res.port = port
        res.lifetime = self.timeout

        async def query(rdtype: str, family: int) -> list[Address]:
            try:
                answer = await res.resolve(host, rdtype, search=False)
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                return []
            except dns.exception.DNSException as exc:
                raise _LookupFailed(str(exc) or type(exc).__name__) from None
            return [Address(family, r.to_text()) for r in answer]

        v4, v6 = await asyncio.gather(
            query("A", socket.AF_INET), query("AAAA", socket.AF_INET6)
        )
        addrs = _dedupe([*v4, *v6])
        if not addrs:
            raise _LookupFailed("no A or AAAA record")
        return addrs


class _LookupFailed(Exception):
    pass


def _literal(host: str) -> Address | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return Address(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, str(ip))


def _dedupe(addrs: object) -> list[Address]:
    seen: dict[Address, None] = {}
    for a in addrs:  # type: ignore[attr-defined]
        seen.setdefault(a, None)
    return list(seen)


def _split_server(text: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``[::1]:5353`` or ``::1``."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host.rstrip("]"), int(port or 53)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53
