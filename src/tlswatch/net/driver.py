"""The one asyncio driver: the only code in tlswatch that touches sockets.

It connects, pumps a sans-IO negotiator until it says "ready for TLS", then pumps the TLS
engine until the handshake completes, each phase under its own deadline (a deadline for the
whole phase, not per read, so a server trickling one byte a second still times out), and
every read bounded. Everything that goes wrong becomes a classified
:class:`~tlswatch.errors.Failure` in the returned :class:`~tlswatch.model.Observation`.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Callable

from tlswatch.errors import Failure, FailureClass, excerpt
from tlswatch.model import Observation, TLSInfo, Timings
from tlswatch.net.resolve import Address
from tlswatch.protocols.base import Failed, Negotiator, Ready, Send
from tlswatch.tls.engine import TLSEngine
from tlswatch.tls.framing import PASS_THROUGH, RecordFramer

READ_SIZE = 65536


class _PhaseFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        self.failure = failure


class _Conn:
    """A connected stream with a byte counter and the last bytes seen (for messages)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = 0
        self.last = b""

    async def read(self) -> bytes:
        try:
            data = await self.reader.read(READ_SIZE)
        except (ConnectionResetError, BrokenPipeError):
            return b""
        except OSError as exc:
            raise _PhaseFailed(
                Failure(FailureClass.CLOSED, f"connection failed: {_oserror_text(exc)}")
            ) from None
        self.received += len(data)
        if data:
            self.last = (self.last + data)[-200:]
        return data

    def write(self, data: bytes) -> None:
        if data:
            self.writer.write(data)

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            raise _PhaseFailed(
                Failure(FailureClass.CLOSED, "server closed the connection while we were sending")
            ) from None

    def close(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):  # pragma: no cover - already gone
            pass


def _oserror_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{text} ({name})" if name else text


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


async def probe_endpoint(
    address: Address,
    port: int,
    *,
    timeout: float,
    server_hostname: str | None,
    context: ssl.SSLContext,
    negotiator: Negotiator | None = None,
    framer_factory: Callable[[], RecordFramer] | None = None,
    protocol_name: str = "",
    dns_ms: float | None = None,
) -> Observation:
    """Connect to one endpoint, upgrade if needed, handshake, and report what was seen."""
    timings: dict[str, float | None] = {"dns": dns_ms}
    info: dict[str, str] = {}

    def result(
        failure: Failure | None = None,
        chain: tuple[bytes, ...] = (),
        tls: TLSInfo | None = None,
    ) -> Observation:
        return Observation(
            address=address.ip,
            port=port,
            chain=chain,
            tls=tls,
            error=failure,
            timings=Timings(**timings),
            upgrade=info,
        )

    # Phase 1: connect.
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                address.ip, port, family=address.family, limit=READ_SIZE
            )
    except TimeoutError:
        return result(
            Failure(
                FailureClass.CONNECT_TIMEOUT,
                f"no answer to the TCP connection within {timeout:g}s "
                "(a firewall dropping packets, or the host is down)",
            )
        )
    except ConnectionRefusedError:
        return result(
            Failure(FailureClass.CONNECT_REFUSED, f"connection refused on port {port}: nothing listens there")
        )
    except OSError as exc:
        return result(
            Failure(FailureClass.CONNECT_REFUSED, f"cannot connect: {_oserror_text(exc)}")
        )
    timings["connect"] = _ms(start)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover
            pass
    conn = _Conn(reader, writer)
    try:
        # Phase 2: the plaintext upgrade dialogue.
        if negotiator is not None:
            start = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    info.update(await _negotiate(conn, negotiator))
            except TimeoutError:
                said = (
                    f"; last received: {excerpt(conn.last)!r}"
                    if conn.received
                    else "; it sent nothing"
                )
                return result(
                    Failure(
                        FailureClass.UPGRADE_TIMEOUT,
                        f"server stalled during the {protocol_name or 'upgrade'} dialogue: "
                        f"no go-ahead for TLS within {timeout:g}s after {conn.received} bytes{said}",
                    )
                )
            timings["upgrade"] = _ms(start)
        # Phase 3: the TLS handshake.
        start = time.perf_counter()
        framer = framer_factory() if framer_factory else PASS_THROUGH
        engine = TLSEngine(context, server_hostname, framer)
        received_before = conn.received
        try:
            async with asyncio.timeout(timeout):
                await _handshake(conn, engine)
        except TimeoutError:
            got = conn.received - received_before
            return result(
                Failure(
                    FailureClass.HANDSHAKE_TIMEOUT,
                    f"TLS handshake did not complete within {timeout:g}s "
                    f"({got} bytes received from the server)",
                )
            )
        timings["handshake"] = _ms(start)
        if engine.failure is not None:
            return result(engine.failure)
        facts = engine.facts
        assert facts is not None
        conn.write(engine.close_notify())
        return result(
            None, facts.chain, TLSInfo(facts.version, facts.cipher, facts.alpn)
        )
    except _PhaseFailed as exc:
        return result(exc.failure)
    finally:
        conn.close()


async def _negotiate(conn: _Conn, negotiator: Negotiator) -> dict[str, str]:
    events = negotiator.initiate()
    while True:
        for event in events:
            if isinstance(event, Send):
                conn.write(event.data)
            elif isinstance(event, Ready):
                await conn.drain()
                return dict(event.info)
            elif isinstance(event, Failed):
                raise _PhaseFailed(event.failure)
        await conn.drain()
        data = await conn.read()
        events = negotiator.receive_data(data)
        if not data and not events:
            # A negotiator must decide on end of stream; be safe if one does not.
            raise _PhaseFailed(
                Failure(FailureClass.CLOSED, "server closed the connection during the upgrade")
            )


async def _handshake(conn: _Conn, engine: TLSEngine) -> None:
    conn.write(engine.initiate())
    while not engine.done:
        await conn.drain()
        data = await conn.read()
        conn.write(engine.receive_data(data))
    await conn.drain()
