"""Broken servers for the wrapped and remote-access protocols: garbage after the greeting,
a refusal, silence, a truncated and an oversized packet. Every case ends in its failure
class, within its timeout (scripted servers: no real server misbehaves like this)."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterator

import pytest

from tests.servers.tds import TDSServers
from tests.support.fakeserver import FakeServers, Handler, fake_servers
from tests.support.pki import TestPKI
from tlswatch.probe import check_target
from tlswatch.targets import parse_target

TIMEOUT = 1.5


@pytest.fixture(scope="module")
def fs() -> Iterator[FakeServers]:
    with fake_servers() as servers:
        yield servers


def after_client(answer: bytes, then: str = "stay") -> Handler:
    """Read what the client sends first (if anything within 0.3 s), answer, then stay
    connected (reading until the client leaves) or close."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.read(65536), 0.3)  # pacing, not synchronisation
        except TimeoutError:
            pass
        writer.write(answer)
        await writer.drain()
        if then == "stay":
            while await reader.read(65536):
                pass

    return handler


def greet(greeting: bytes, answer: bytes = b"") -> Handler:
    """Server speaks first; after the client's reply, send ``answer``; stay connected."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        if answer:
            await reader.read(65536)
            writer.write(answer)
            await writer.drain()
        while await reader.read(65536):
            pass

    return handler


RFB = b"RFB 003.008\n"
_RDP_CC = bytes.fromhex("030000130ed00000123400") + struct.pack("<BBHI", 2, 0, 8, 1)
_RDP_FAILURE = bytes.fromhex("030000130ed00000123400") + struct.pack("<BBHI", 3, 0, 8, 2)

CASES: dict[str, tuple[str, Handler, str, str]] = {
    # name: (scheme, handler, expected class, expected words in the message)
    "rdp-garbage": (
        "rdp",
        after_client(b"HTTP/1.0 400 Bad Request\r\n\r\n"),
        "protocol_error",
        "TPKT",
    ),
    "rdp-refusal": ("rdp", after_client(_RDP_FAILURE), "upgrade_not_offered", "SSL_NOT_ALLOWED"),
    "rdp-disconnect": (
        "rdp",
        after_client(bytes.fromhex("030000070280")[:4] + b"\x02\x80\x00"),
        "protocol_error",
        "",
    ),
    "rdp-silence": ("rdp", after_client(b""), "upgrade_timeout", "stalled"),
    "rdp-truncated": ("rdp", after_client(_RDP_CC[:10]), "upgrade_timeout", "stalled"),
    "rdp-oversized": (
        "rdp",
        after_client(b"\x03\x00\xff\xff" + b"\x00" * 64),
        "protocol_error",
        "TPKT length",
    ),
    "rdp-injection": (
        "rdp",
        after_client(_RDP_CC + b"\x16\x03\x01"),
        "protocol_error",
        "plaintext after",
    ),
    "vnc-garbage": ("vnc", greet(b"SSH-2.0-OpenSSH_9.2\r\n"), "protocol_error", "RFB"),
    "vnc-refusal": (
        "vnc",
        greet(RFB, b"\x00" + struct.pack(">I", 16) + b"Too many clients"),
        "upgrade_refused",
        "refused",
    ),
    "vnc-no-vencrypt": (
        "vnc",
        greet(RFB, b"\x01\x02"),
        "upgrade_not_offered",
        "VNC Authentication",
    ),
    "vnc-silence": ("vnc", greet(b""), "upgrade_timeout", "stalled"),
    "vnc-truncated": ("vnc", greet(RFB, b"\x03\x13"), "upgrade_timeout", "stalled"),
    "vnc-oversized": (
        "vnc",
        greet(RFB, b"\x00" + struct.pack(">I", 1 << 30)),
        "protocol_error",
        "reason",
    ),
    "nats-garbage": ("nats", greet(b"220 mail.example ESMTP\r\n"), "protocol_error", "INFO"),
    "nats-refusal": (
        "nats",
        greet(b"-ERR 'Authorization Violation'\r\n"),
        "upgrade_refused",
        "-ERR",
    ),
    "nats-silence": ("nats", greet(b""), "upgrade_timeout", "stalled"),
    "nats-truncated": ("nats", greet(b'INFO {"server_id":"x",'), "upgrade_timeout", "stalled"),
    "nats-oversized": ("nats", greet(b"INFO {" + b" " * 70_000), "protocol_error", "too long"),
    "nats-bad-json": ("nats", greet(b"INFO {nope}\r\n"), "protocol_error", "JSON"),
    "openvpn-garbage": (
        "openvpn",
        after_client(b"HTTP/1.0 400 Bad Request\r\n\r\n"),
        "protocol_error",
        "not an OpenVPN",
    ),
    "openvpn-refusal": ("openvpn", after_client(b"", then="close"), "upgrade_refused", "key"),
    "openvpn-silence": ("openvpn", after_client(b""), "upgrade_refused", "tls-auth"),
    "openvpn-truncated": (
        "openvpn",
        after_client(b"\x00\x40\x40" + b"\x01" * 20),
        "upgrade_timeout",
        "no complete",
    ),
    "openvpn-oversized": (
        "openvpn",
        after_client(b"\xff\xff" + b"\x40" * 64),
        "protocol_error",
        "out of range",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_broken_server(fs: FakeServers, name: str) -> None:
    """Each misbehaviour ends in its class, with its words, within the timeout."""
    scheme, handler, expected, words = CASES[name]
    port = fs.serve(handler)
    start = time.monotonic()
    result = await check_target(parse_target(f"{scheme}://127.0.0.1:{port}?timeout={TIMEOUT}"))
    elapsed = time.monotonic() - start
    (ep,) = result.endpoints
    assert ep.error is not None, f"{name}: expected {expected}, got a chain"
    assert ep.error.code == expected, (name, ep.error)
    assert words in ep.error.message + (ep.error.excerpt or ""), (name, ep.error)
    assert elapsed < 2 * TIMEOUT + 1.0


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("garbage", "protocol_error"),
        ("silent", "upgrade_timeout"),
        ("truncated", "upgrade_timeout"),
        ("oversized", "protocol_error"),
    ],
)
async def test_broken_tds(tds_servers: TDSServers, mode: str, expected: str) -> None:
    """The scripted TDS server's broken modes end in their class within the timeout."""
    start = time.monotonic()
    result = await check_target(parse_target(tds_servers.url(mode, timeout=str(TIMEOUT))))
    (ep,) = result.endpoints
    assert ep.error is not None and ep.error.code == expected, ep.error
    assert time.monotonic() - start < 2 * TIMEOUT + 1.0


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        if self.answer is not None and self.transport is not None:
            self.transport.sendto(self.answer, addr)


async def _udp_server(answer: bytes | None) -> tuple[asyncio.DatagramTransport, _UDP]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _UDP(answer), local_addr=("127.0.0.1", 0)
    )
    return transport, proto  # type: ignore[return-value]


async def test_openvpn_udp_silence_retransmits_boundedly() -> None:
    """Over UDP, an unanswered reset is retransmitted with back-off, a bounded number of
    times, then upgrade_refused says a tls-auth/tls-crypt key is needed."""
    transport, proto = await _udp_server(None)
    port = transport.get_extra_info("sockname")[1]
    try:
        start = time.monotonic()
        result = await check_target(parse_target(f"openvpn+udp://127.0.0.1:{port}?timeout=2"))
        elapsed = time.monotonic() - start
    finally:
        transport.close()
    (ep,) = result.endpoints
    assert ep.error is not None and ep.error.code == "upgrade_refused"
    assert "key" in ep.error.message and "transmissions" in ep.error.message
    assert 2 <= len(proto.received) <= 6
    assert all(d[0] >> 3 == 7 for d in proto.received)  # P_CONTROL_HARD_RESET_CLIENT_V2
    assert len({d[1:9] for d in proto.received}) == 1  # one session id throughout
    assert elapsed < 2.0


async def test_openvpn_udp_garbage() -> None:
    """A UDP answer that is not an OpenVPN packet is a protocol_error, at once."""
    transport, _ = await _udp_server(b"\xff" * 40)
    port = transport.get_extra_info("sockname")[1]
    try:
        result = await check_target(parse_target(f"openvpn+udp://127.0.0.1:{port}?timeout=2"))
    finally:
        transport.close()
    (ep,) = result.endpoints
    assert ep.error is not None and ep.error.code == "protocol_error"


async def test_openvpn_udp_nothing_listens() -> None:
    """ICMP port unreachable on a UDP port is connect_refused."""
    transport, _ = await _udp_server(None)
    port = transport.get_extra_info("sockname")[1]
    transport.close()
    result = await check_target(parse_target(f"openvpn+udp://127.0.0.1:{port}?timeout=2"))
    (ep,) = result.endpoints
    assert ep.error is not None and ep.error.code == "connect_refused"


async def test_nats_tls_first(fs: FakeServers, pki: TestPKI) -> None:
    """handshake_first=1: TLS right away (no INFO in plaintext) yields the chain. Scripted:
    Debian's nats-server 2.9 predates handshake_first (2.10)."""
    import ssl

    leaf = pki.issue("nats-first")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.chain_file, leaf.key_file)

    async def info_inside_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"first","tls_required":true}\r\n')
        await writer.drain()
        await reader.read(65536)

    port = fs.serve(info_inside_tls, ssl_context=ctx)
    result = await check_target(parse_target(f"nats://127.0.0.1:{port}?handshake_first=1"))
    (ep,) = result.endpoints
    assert ep.error is None, ep.error
    assert [c.sha256 for c in ep.chain] == leaf.chain_sha256
