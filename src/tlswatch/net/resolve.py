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

    async def resolve(
        self, host: str, family: str = "all", timeout: float | None = None
    ) -> list[Address] | Failure:
        """Addresses of ``host`` filtered by family ("4", "6", "all"), or a dns Failure.
        ``timeout`` (the target's phase timeout) bounds this call on top of the resolver's
        own. Never raises (cancellation aside)."""
        literal = _literal(host)
        if literal is not None:
            addrs = [literal]
        elif _is_invalid_tld(host):
            # RFC 6761 §6.4: resolution APIs SHOULD answer names under .invalid negatively
            # at once, without asking any server (no query leaves the machine).
            return Failure(
                FailureClass.DNS, f"cannot resolve {host}: .invalid names never resolve (RFC 6761)"
            )
        else:
            lookup = asyncio.ensure_future(self._lookup(host))
            lookup.add_done_callback(_retrieve)
            try:
                async with asyncio.timeout(timeout):
                    # shield: a caller giving up must not cancel a lookup others share
                    addrs = await asyncio.shield(lookup)
            except TimeoutError:
                return Failure(
                    FailureClass.DNS, f"cannot resolve {host}: no answer within {timeout:g}s"
                )
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
        except BaseException as exc:
            # Waiters sharing this lookup get a failure of their own, never a hang: also
            # when this task was cancelled (their probes were not).
            if isinstance(exc, TimeoutError):
                failure = _LookupFailed(f"no answer within {self.timeout:g}s")
            elif isinstance(exc, _LookupFailed):
                failure = exc
            elif isinstance(exc, Exception):
                failure = _LookupFailed(f"{type(exc).__name__}: {exc}")
            else:
                failure = _LookupFailed("lookup cancelled")
            fut.set_exception(failure)
            fut.exception()  # mark retrieved: nobody may be waiting
            if isinstance(exc, Exception):
                raise failure from None
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
        except (OSError, UnicodeError) as exc:  # e.g. a label IDNA cannot encode
            raise _LookupFailed(str(exc) or type(exc).__name__) from None
        return _dedupe(Address(int(fam), str(sa[0])) for fam, _, _, _, sa in infos)

    async def _dns(self, host: str) -> list[Address]:
        import dns.asyncresolver
        import dns.exception
        import dns.resolver

        res = dns.asyncresolver.Resolver(configure=False)
        servers, port = [], 53
        for ns in self.nameservers:
            try:
                ip, port = _split_server(ns)
                ipaddress.ip_address(ip)
            except ValueError:
                raise _LookupFailed(
                    f"bad DNS server {ns!r} (give ip, ip:port or [ipv6]:port)"
                ) from None
            servers.append(ip)
        res.nameservers = servers
        res.port = port
        res.lifetime = self.timeout

        nxdomain: list[bool] = []

        async def query(rdtype: str, family: int) -> list[Address]:
            try:
                answer = await res.resolve(host, rdtype, search=False)
            except dns.resolver.NXDOMAIN:
                nxdomain.append(True)
                return []
            except dns.resolver.NoAnswer:
                return []
            except dns.exception.DNSException as exc:
                raise _LookupFailed(str(exc) or type(exc).__name__) from None
            return [Address(int(family), r.to_text()) for r in answer]

        v4, v6 = await asyncio.gather(query("A", socket.AF_INET), query("AAAA", socket.AF_INET6))
        addrs = _dedupe([*v4, *v6])
        if not addrs:
            raise _LookupFailed(
                "no such domain (NXDOMAIN)" if len(nxdomain) == 2 else "no A or AAAA record"
            )
        return addrs


class _LookupFailed(Exception):
    pass


def _retrieve(task: asyncio.Future[list[Address]]) -> None:
    """Mark a lookup's outcome as seen, for lookups whose caller stopped waiting."""
    if not task.cancelled():
        task.exception()


def _is_invalid_tld(host: str) -> bool:
    return host.rstrip(".").lower().rsplit(".", 1)[-1] == "invalid"


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
