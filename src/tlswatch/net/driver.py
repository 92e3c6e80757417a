"""The one asyncio driver: the only code in tlswatch that touches sockets.

It connects, pumps a sans-IO negotiator until it says "ready for TLS", then pumps the TLS
engine until the handshake completes, each phase under its own deadline (a deadline for the
whole phase, not per read, so a server trickling one byte a second still times out), and
every read bounded. Everything that goes wrong becomes a classified
:class:`~tlswatch.errors.Failure` in the returned :class:`~tlswatch.model.Observation`:
:func:`probe_endpoint` never raises (only cancellation propagates).

Where each kind of trouble ends up:

    connect      refused / unreachable      connect_refused
                 no answer in time          connect_timeout
    upgrade      negotiator verdict         its Failed event (upgrade_refused, ...)
                 stall                      upgrade_timeout
                 more than MAX_UPGRADE_BYTES protocol_error
                 negotiator raised (a bug)  protocol_error naming the exception
    handshake    engine verdict             tls_alert / tls_error / protocol_error / closed
                 stall                      handshake_timeout
                 engine/framer raised       tls_error naming the exception
    any phase    reset, EOF, send failed    closed
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable
from typing import cast

from OpenSSL import SSL

from tlswatch.errors import Failure, FailureClass, excerpt
from tlswatch.model import Observation, Timings, TLSInfo
from tlswatch.net.resolve import Address
from tlswatch.protocols.base import Event, Failed, Negotiator, Ready, Send
from tlswatch.tls.context import ClientContext
from tlswatch.tls.engine import TLSEngine
from tlswatch.tls.framing import PASS_THROUGH, RecordFramer

#: bytes asked for per read: each read is bounded, whatever the server sends
READ_SIZE = 65536
#: backstop on the plaintext of one upgrade dialogue, whatever the negotiator's own cap
#: (STYLE.md rule 3): real greetings and capability lists are a few KiB at most
MAX_UPGRADE_BYTES = 1 << 20


class _PhaseFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        self.failure = failure


def _closed(during: str, exc: BaseException | None = None) -> Failure:
    why = f" ({_oserror_text(exc)})" if isinstance(exc, OSError) else ""
    return Failure(FailureClass.CLOSED, f"server closed the connection {during}{why}")


class _StreamProtocol(asyncio.Protocol):
    """The receiving end of one TCP connection: buffers what arrives for :class:`_Conn`.

    A bare protocol instead of asyncio's StreamReader/StreamWriter pair: a probe reads a
    handful of times and writes two or three, and the streams' objects, futures and drain
    coroutine cost about 0.1 ms of CPU per endpoint (issue 6, docs/performance.md). Reads
    stay bounded: reading from the socket pauses once 2 × READ_SIZE bytes wait unread, as
    StreamReader's limit did."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost = False
        #: why the connection ended, if not by a clean EOF
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > 2 * READ_SIZE and not self._paused_reading and self.transport:
            self._paused_reading = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # half-open: ours to close (as StreamReaderProtocol does over TCP)

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.lost = True
        if exc is not None:
            self.error = exc
        self._wake()
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_readable(self) -> None:
        """Until data, EOF or an error is there to be taken."""
        if self.buffer or self.eof:
            return
        assert self._waiter is None, "one reader at a time"
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self) -> bytes:
        data = bytes(self.buffer[:READ_SIZE])
        del self.buffer[:READ_SIZE]
        if self._paused_reading and len(self.buffer) <= READ_SIZE and self.transport:
            self._paused_reading = False
            self.transport.resume_reading()
        return data

    async def drain(self) -> None:
        """Until the transport's write buffer is below its high-water mark."""
        if self.lost:
            raise ConnectionResetError("Connection lost")
        if not self._write_paused:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        await self._drain_waiter
        if self.lost:
            raise ConnectionResetError("Connection lost")


class _Conn:
    """A connected stream with a byte counter and the last bytes seen (for messages)."""

    received: int
    last: bytes
    during: str

    async def read(self) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _count(self, data: bytes) -> None:
        """Account for received bytes: the total, and the tail quoted in messages."""
        self.received += len(data)
        self.last = (self.last + data)[-200:]


class _TCPConn(_Conn):
    """A TCP connection over :class:`_StreamProtocol`."""

    def __init__(self, proto: _StreamProtocol) -> None:
        self.proto = proto
        self.received = 0
        self.last = b""
        self.during = "during the upgrade"

    async def read(self) -> bytes:
        """At most READ_SIZE bytes; b"" when the server closed or reset the connection."""
        proto = self.proto
        if not proto.buffer:
            if proto.eof:
                return self._end()
            await proto.wait_readable()
            if not proto.buffer:
                return self._end()
        data = proto.take()
        self._count(data)
        return data

    def _end(self) -> bytes:
        exc = self.proto.error
        if exc is None or isinstance(
            exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError
        ):
            # A reset is the server going away: the consumer sees end of stream and
            # classifies it as `closed` in its own words.
            return b""
        if isinstance(exc, OSError):
            raise _PhaseFailed(_closed(self.during, exc)) from None
        return b""

    def write(self, data: bytes) -> None:
        if not data:
            return
        transport = self.proto.transport
        if transport is None:  # pragma: no cover - never before connection_made
            raise _PhaseFailed(_closed(self.during))
        try:
            transport.write(data)
        except (OSError, RuntimeError) as exc:
            # RuntimeError: the transport was closed under us (e.g. after a reset).
            raise _PhaseFailed(_closed(self.during, exc)) from None

    async def drain(self) -> None:
        try:
            await self.proto.drain()
        except (OSError, RuntimeError) as exc:
            raise _PhaseFailed(_closed(f"{self.during}, while we were sending", exc)) from None

    def close(self) -> None:
        transport = self.proto.transport
        if transport is None:  # pragma: no cover
            return
        try:
            transport.close()
        except (OSError, RuntimeError):  # pragma: no cover - already gone
            pass


def _oserror_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{text} ({name})" if name else text


def _bug(what: str, exc: BaseException) -> str:
    detail = str(exc)
    return f"{what}: {type(exc).__name__}" + (f": {detail}" if detail else "")


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


async def probe_endpoint(
    address: Address,
    port: int,
    *,
    timeout: float,
    server_hostname: str | None,
    context: ClientContext,
    negotiator: Negotiator | None = None,
    framer_factory: Callable[[Negotiator | None], RecordFramer] | None = None,
    protocol_name: str = "",
    dns_ms: float | None = None,
    transport: str = "tcp",
) -> Observation:
    """Connect to one endpoint, upgrade if needed, handshake, and report what was seen.

    Never raises: every failure is classified into the Observation's ``error``.
    """
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

    start = time.perf_counter()
    # Phase 1: connect.
    if transport == "udp":
        opened = await _open_datagram(address, port)
    else:
        opened = await _open_stream(address, port, timeout)
    if isinstance(opened, Failure):
        return result(opened)
    timings["connect"] = _ms(start)
    conn = opened
    try:
        return await _upgrade_and_handshake(
            conn,
            result,
            timings,
            info,
            timeout=timeout,
            server_hostname=server_hostname,
            context=context,
            negotiator=negotiator,
            framer_factory=framer_factory,
            protocol_name=protocol_name,
        )
    finally:
        conn.close()


async def _open_stream(address: Address, port: int, timeout: float) -> _Conn | Failure:
    """A TCP connection, or why there is none."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, proto = await loop.create_connection(
                _StreamProtocol, address.ip, port, family=address.family
            )
    except TimeoutError:
        # Also the kernel's own ETIMEDOUT (TimeoutError is that OSError subclass).
        return Failure(
            FailureClass.CONNECT_TIMEOUT,
            f"no answer to the TCP connection within {timeout:g}s "
            "(a firewall dropping packets, the host down, or its listen queue full)",
        )
    except ConnectionRefusedError:
        return Failure(
            FailureClass.CONNECT_REFUSED,
            f"connection refused on port {port}: nothing listens there",
        )
    except OSError as exc:
        # EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL (e.g. IPv6 disabled): no connection.
        return Failure(FailureClass.CONNECT_REFUSED, f"cannot connect: {_oserror_text(exc)}")
    except Exception as exc:  # a probe never raises
        return Failure(FailureClass.CONNECT_REFUSED, _bug("cannot connect", exc))
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover
            pass
    return _TCPConn(proto)


async def _upgrade_and_handshake(
    conn: _Conn,
    result: Callable[..., Observation],
    timings: dict[str, float | None],
    info: dict[str, str],
    *,
    timeout: float,
    server_hostname: str | None,
    context: ClientContext,
    negotiator: Negotiator | None,
    framer_factory: Callable[[Negotiator | None], RecordFramer] | None,
    protocol_name: str,
) -> Observation:
    # Phase 2: the plaintext upgrade dialogue.
    if negotiator is not None:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                info.update(await _negotiate(conn, negotiator, protocol_name))
        except TimeoutError:
            said = (
                f"; last received: {excerpt(conn.last)!r}" if conn.received else "; it sent nothing"
            )
            return result(
                Failure(
                    FailureClass.UPGRADE_TIMEOUT,
                    f"server stalled during the {protocol_name or 'upgrade'} dialogue: "
                    f"no go-ahead for TLS within {timeout:g}s after {conn.received} bytes{said}",
                )
            )
        except _PhaseFailed as exc:
            return result(exc.failure)
        except Exception as exc:  # a probe never raises
            return result(
                Failure(FailureClass.PROTOCOL_ERROR, _bug("internal error in the upgrade", exc))
            )
        timings["upgrade"] = _ms(start)
    # Phase 3: the TLS handshake.
    conn.during = "during the TLS handshake"
    start = time.perf_counter()
    received_before = conn.received
    try:
        # A framer may need what the dialogue learned (OpenVPN session ids, tls-auth key).
        framer = framer_factory(negotiator) if framer_factory else PASS_THROUGH
        engine = TLSEngine(context, server_hostname, framer)
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
    except _PhaseFailed as exc:
        return result(exc.failure)
    except Exception as exc:  # a framer or engine bug must not escape
        return result(
            Failure(FailureClass.TLS_ERROR, _bug("internal error in the TLS engine", exc))
        )
    timings["handshake"] = _ms(start)
    if engine.failure is not None:
        return result(engine.failure)
    facts = engine.facts
    if facts is None:  # pragma: no cover - done implies one of the two
        return result(Failure(FailureClass.TLS_ERROR, "TLS handshake ended without a result"))
    # (our close_notify left with our last flight: see _handshake)
    return result(None, facts.chain, TLSInfo(facts.version, facts.cipher, facts.alpn))


def _negotiator_step(
    negotiator: Negotiator, data: bytes | None, protocol: str, now: float | None = None
) -> list[Event]:
    """One call into the negotiator; an exception there is a negotiator bug, reported as
    protocol_error (the server's bytes were not understood) with the evidence."""
    try:
        if now is not None:
            return list(negotiator.handle_timer(now))
        if data is None:
            return list(negotiator.initiate())
        return list(negotiator.receive_data(data))
    except Exception as exc:  # a probe never raises
        name = protocol or type(negotiator).__name__
        raise _PhaseFailed(
            Failure(
                FailureClass.PROTOCOL_ERROR,
                _bug(f"the {name} negotiator could not handle the server's reply", exc),
                excerpt(data) if data else None,
            )
        ) from None


async def _negotiate(conn: _Conn, negotiator: Negotiator, protocol: str) -> dict[str, str]:
    events = _negotiator_step(negotiator, None, protocol)
    while True:
        for event in events:
            if isinstance(event, Send):
                conn.write(event.data)
            elif isinstance(event, Ready):
                await conn.drain()
                return {str(k): str(v) for k, v in event.info.items()}
            elif isinstance(event, Failed):
                raise _PhaseFailed(event.failure)
        await conn.drain()
        data = await _read_or_timer(conn, negotiator.next_timer())
        if data is None:
            events = _negotiator_step(negotiator, None, protocol, now=time.monotonic())
            continue
        if conn.received > MAX_UPGRADE_BYTES:
            raise _PhaseFailed(
                Failure(
                    FailureClass.PROTOCOL_ERROR,
                    f"server sent more than {MAX_UPGRADE_BYTES} bytes of plaintext "
                    "without a go-ahead for TLS",
                    excerpt(conn.last),
                )
            )
        events = _negotiator_step(negotiator, data, protocol)
        if not data and not events:
            # A negotiator must decide on end of stream; be safe if one does not.
            raise _PhaseFailed(_closed("during the upgrade"))


async def _handshake(conn: _Conn, engine: TLSEngine) -> None:
    conn.write(engine.initiate())
    while not engine.done:
        await conn.drain()
        data = await _read_or_timer(conn, engine.next_timer())
        if data is None:
            conn.write(engine.handle_timer(time.monotonic()))
            continue
        out = engine.receive_data(data)
        if engine.facts is not None:
            # Done: the close_notify that ends the session politely travels with our last
            # flight (TLS 1.3: our Finished), one send instead of two per endpoint.
            out += _close_notify(engine)
        conn.write(out)
    try:
        await conn.drain()
    except _PhaseFailed:
        # The handshake is decided; a server closing right after it changes nothing.
        pass


def _close_notify(engine: TLSEngine) -> bytes:
    try:
        return engine.close_notify()
    except (SSL.Error, ValueError):  # courtesy only: failures here change nothing
        return b""


async def _read_or_timer(conn: _Conn, due: float | None) -> bytes | None:
    """Read, or None once ``due`` (time.monotonic()) arrives first: the timer of a
    negotiator or framer that acts on silence (retransmission)."""
    if due is None:
        return await conn.read()
    delay = due - time.monotonic()
    if delay <= 0:
        return None
    try:
        async with asyncio.timeout(delay):
            return await conn.read()
    except TimeoutError:
        return None


#: datagrams queued at most between two reads; more are dropped, as a kernel buffer would
MAX_QUEUED_DATAGRAMS = 64
_RECORD_HEADER = 2


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | OSError] = asyncio.Queue(MAX_QUEUED_DATAGRAMS)

    def datagram_received(self, data: bytes, addr: object) -> None:
        if data and not self.queue.full():
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and not self.queue.full():
            self.queue.put_nowait(exc)


class _DatagramConn(_Conn):
    """A UDP "connection" (a socket with a fixed peer) behind the stream interface.

    Datagram boundaries matter to the protocols on top (OpenVPN over UDP), so both ways
    each datagram travels as one record prefixed by its 16-bit big-endian length -- the
    framing RFC 4571 uses to carry datagrams over a stream, and the one OpenVPN over TCP
    uses: a negotiator or framer sees the same format on both transports.
    """

    def __init__(self, transport: asyncio.DatagramTransport, proto: _DatagramProtocol) -> None:
        self.transport = transport
        self.proto = proto
        self.received = 0
        self.last = b""
        self.during = "during the upgrade"
        self._out = bytearray()
        self.port = 0

    async def read(self) -> bytes:
        item = await self.proto.queue.get()
        if isinstance(item, OSError):
            if isinstance(item, ConnectionRefusedError):
                raise _PhaseFailed(
                    Failure(
                        FailureClass.CONNECT_REFUSED,
                        f"nothing listens on UDP port {self.port} (ICMP port unreachable)",
                    )
                )
            raise _PhaseFailed(_closed(self.during, item))
        self._count(item)
        return len(item).to_bytes(_RECORD_HEADER, "big") + item

    def write(self, data: bytes) -> None:
        self._out += data
        while len(self._out) >= _RECORD_HEADER:
            size = int.from_bytes(self._out[:_RECORD_HEADER], "big")
            if len(self._out) < _RECORD_HEADER + size:
                break
            datagram = bytes(self._out[_RECORD_HEADER : _RECORD_HEADER + size])
            del self._out[: _RECORD_HEADER + size]
            try:
                self.transport.sendto(datagram)
            except OSError as exc:
                raise _PhaseFailed(_closed(self.during, exc)) from None

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.transport.close()


async def _open_datagram(address: Address, port: int) -> _Conn | Failure:
    """A UDP "connection", or why there is none: nothing goes on the wire ("connect" binds
    a socket with a fixed peer; an ICMP port-unreachable shows on a later read)."""
    loop = asyncio.get_running_loop()
    try:
        transport, proto = await loop.create_datagram_endpoint(
            _DatagramProtocol, remote_addr=(address.ip, port), family=address.family
        )
    except OSError as exc:
        return Failure(FailureClass.CONNECT_REFUSED, f"cannot connect: {_oserror_text(exc)}")
    conn = _DatagramConn(transport, proto)
    conn.port = port
    return conn
