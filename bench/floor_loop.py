"""The handshake floor: the cheapest client handshake on tlswatch's own TLS binding.

Where ``bare_loop.py`` is the issue's reference (stdlib ``ssl`` + asyncio, i.e. the system's
OpenSSL 3.0 on Debian 12), this loop uses exactly what tlswatch's engine uses and nothing
else: uvloop, a bare ``asyncio.Protocol``, pyOpenSSL over memory BIOs on the OpenSSL that
``cryptography`` ships, and tlswatch's own client context (its options, cipher list and key
exchange groups: OpenSSL 4's default groups would add a post-quantum key share that costs
about a quarter of a handshake). Per port: connect, handshake (no verification, no SNI),
read the chain as sent (DER), close. No parsing, no path validation, no findings, no output
per endpoint. A scanner built on this binding cannot spend less CPU per endpoint than this;
the runner compares tlswatch's client CPU with it (docs/performance.md, "Phase 5").

    python bench/floor_loop.py --ports-file ports.txt [--shard 0/2] [--concurrency 100]

Prints one JSON line ``{"ok": N, "failed": M}``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from OpenSSL import SSL, crypto

from tlswatch.tls.context import client_context

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_loop import cli

try:
    import uvloop
except ImportError:  # pragma: no cover - the fast extra is part of scripts/setup
    uvloop = None  # type: ignore[assignment]

TIMEOUT = 10.0


class _Handshake(asyncio.Protocol):
    """One client handshake over memory BIOs; resolves ``done`` with the chain's length."""

    def __init__(self, ctx: SSL.Context, done: asyncio.Future[int]) -> None:
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        self.done = done
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass: no isinstance check
        self.transport = transport  # type: ignore[assignment]
        self._step()

    def data_received(self, data: bytes) -> None:
        self.conn.bio_write(data)
        self._step()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(0)

    def _step(self) -> None:
        assert self.transport is not None
        try:
            self.conn.do_handshake()
            finished = True
        except SSL.WantReadError:
            finished = False
        except SSL.Error:
            self.transport.close()
            return
        try:
            out = self.conn.bio_read(65536)
        except SSL.WantReadError:
            out = b""
        if out:
            self.transport.write(out)
        if finished and not self.done.done():
            chain = self.conn.get_peer_cert_chain() or []
            ders = [crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in chain]
            self.transport.close()
            self.done.set_result(len(ders))


async def _one(host: str, port: int, ctx: SSL.Context, sem: asyncio.Semaphore) -> bool:
    loop = asyncio.get_running_loop()
    async with sem:
        done: asyncio.Future[int] = loop.create_future()
        transport = None
        try:
            async with asyncio.timeout(TIMEOUT):
                transport, _ = await loop.create_connection(
                    lambda: _Handshake(ctx, done), host, port
                )
                return await done > 0
        except (OSError, TimeoutError):
            return False
        finally:
            if transport is not None:
                transport.close()


async def _main(host: str, ports: list[int], concurrency: int) -> dict[str, int]:
    ctx = client_context()  # tlswatch's: the same ClientHello as a scan's
    sem = asyncio.Semaphore(concurrency)
    results = await asyncio.gather(*(_one(host, p, ctx, sem) for p in ports))
    ok = sum(results)
    return {"ok": ok, "failed": len(results) - ok}


def main() -> None:
    def run(host: str, ports: list[int], concurrency: int) -> dict[str, int]:
        coro = _main(host, ports, concurrency)
        return uvloop.run(coro) if uvloop is not None else asyncio.run(coro)

    cli(run)


if __name__ == "__main__":
    main()
