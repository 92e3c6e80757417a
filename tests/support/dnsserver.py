"""A tiny authoritative DNS server for tests (UDP and TCP on one 127.0.0.1 port).

It answers only the names it is given, authoritatively (AA set): A/AAAA records from its
table, NODATA for a known name without that type, NXDOMAIN for anything else. Messages are
parsed and built with dnspython; TCP uses the 2-byte length prefix of RFC 1035 §4.2.2.
It counts the questions it receives, so a test can prove a name was (or was not) asked.

Runs on its own event loop in a background thread, so it answers while a test blocks on a
subprocess as well as while an async test awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

#: name -> rdtype ("A"/"AAAA") -> addresses
Records = Mapping[str, Mapping[str, Sequence[str]]]


class DNSServer:
    def __init__(self, records: Records, ttl: int = 60) -> None:
        self.records = {
            dns.name.from_text(name): {t.upper(): list(v) for t, v in types.items()}
            for name, types in records.items()
        }
        self.ttl = ttl
        #: (name without trailing dot, rdtype) -> questions received
        self.questions: Counter[tuple[str, str]] = Counter()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    @property
    def address(self) -> str:
        """``ip:port``, the form ``--dns-server`` and ``Resolver(nameservers=...)`` take."""
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes) -> bytes | None:
        """The response to one query message (None for bytes that are not a query)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # junk is dropped, as a real server would
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.questions[(question.name.to_text(omit_final_dot=True), rdtype)] += 1
            types = self.records.get(question.name)
            if types is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                continue
            addresses = types.get(rdtype, [])
            if addresses:
                response.answer.append(
                    dns.rrset.from_text_list(
                        question.name, self.ttl, dns.rdataclass.IN, question.rdtype, addresses
                    )
                )
        return bytes(response.to_wire())

    async def _start(self) -> int:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", port)
            except OSError:
                udp.close()  # that port is busy on TCP: pick another
                continue
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _UDP(self), sock=udp)
            return port
        raise RuntimeError("no port free for both UDP and TCP")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = self.answer(await reader.readexactly(length))
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self._udp.close()
            self._tcp.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.server.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@contextlib.contextmanager
def dns_server(records: Records) -> Iterator[DNSServer]:
    server = DNSServer(records)
    try:
        yield server
    finally:
        server.close()
