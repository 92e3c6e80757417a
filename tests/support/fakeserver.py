"""Scripted broken servers on loopback, for the failure cases no real server shows.

Every behaviour is an ``async def handler(reader, writer)`` served on its own port by
:class:`FakeServers`, which runs one asyncio event loop in a background thread. The servers
therefore keep answering while a test blocks (a subprocess running the CLI, a synchronous
CliRunner call) as well as while an async test awaits on its own loop.

Handlers only *pace* themselves with reads that time out (the trickler) or with events the
test controls (:class:`Gate`); nothing here is a sleep used to synchronise a test.

Byte-level servers document their bytes with the RFC sections they imitate.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import ssl
import struct
import subprocess
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

#: a server-side read never takes more than this (the probe under test disconnects first)
LINE_LIMIT = 4096


class FakeServers:
    """A background event loop serving scripted handlers, each on its own loopback port."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # Handshake failures and resets are the point of these servers: don't log them.
        self.loop.set_exception_handler(lambda loop, context: None)
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._extra_sockets: list[socket.socket] = []

    def run(self, coro: Awaitable[object]) -> object:
        """Run a coroutine on the servers' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]

    def serve(
        self,
        handler: Handler,
        *,
        hosts: Sequence[str] = ("127.0.0.1",),
        ssl_context: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> int:
        """Serve ``handler`` on one port of every host in ``hosts``; return the port."""

        async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handler(reader, writer)
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass  # the probe went away or broke the connection: expected here
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()

        async def start() -> int:
            chosen = port
            for host in hosts:
                server = await asyncio.start_server(
                    wrapped,
                    host,
                    chosen,
                    ssl=ssl_context,
                    ssl_handshake_timeout=10 if ssl_context else None,
                    reuse_address=True,
                )
                self._servers.append(server)
                chosen = server.sockets[0].getsockname()[1]
            return chosen

        return int(self.run(start()))  # type: ignore[call-overload]

    def backlog_full(self) -> int:
        """A port whose listen queue is full: new connections get no SYN-ACK, so a
        connect times out (the loopback stand-in for a firewall that drops packets).

        listen(0) leaves room for one pending connection (Linux queues backlog + 1); one
        connection that is never accepted fills it, and with tcp_abort_on_overflow=0 (the
        default) the kernel then drops further SYNs instead of answering RST.
        """
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        self._extra_sockets.append(listener)
        for _ in range(2):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            self._extra_sockets.append(filler)
        return port

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for server in self._servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 2)

        with contextlib.suppress(Exception):
            self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        for s in self._extra_sockets:
            s.close()


@contextlib.contextmanager
def fake_servers() -> Iterator[FakeServers]:
    servers = FakeServers()
    try:
        yield servers
    finally:
        servers.close()


# --- generic misbehaviour -------------------------------------------------------------


async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, then close without a byte."""
    writer.close()


async def send_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send bytes that are neither a greeting nor a TLS record, then wait for the client."""
    writer.write(b"\x00\xffGARBAGE\x1b[31m not a protocol \xfe\r\n")
    await writer.drain()
    await _until_client_leaves(reader)


async def stay_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept and never send anything; read (and drop) whatever the client sends."""
    await _until_client_leaves(reader)


def trickle(payload: bytes, interval: float = 1.0) -> Handler:
    """Send ``payload`` one byte per ``interval`` seconds, until the client leaves.

    The pacing is a read with a timeout, so the handler also notices the client going away.
    """

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for i in range(len(payload)):
            writer.write(payload[i : i + 1])
            await writer.drain()
            try:
                got = await asyncio.wait_for(reader.read(LINE_LIMIT), interval)
            except TimeoutError:
                continue
            if not got:
                return

    return handler


async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send plaintext lines without end (64 KiB at a time) until the client leaves."""
    chunk = b"250-and another capability line that never ends the reply\r\n" * 1100
    while True:
        writer.write(chunk)
        await writer.drain()


#: the start of a TLS handshake record (RFC 8446 §5.1: type 22, version 0x0303, length
#: 0x4000) that never completes: trickled, it keeps a handshake waiting
TLS_RECORD_START = b"\x16\x03\x03\x40\x00" + b"\x02" * 64
SMTP_SLOW_BANNER = b"220 " + b"s" * 64


async def _until_client_leaves(reader: asyncio.StreamReader) -> None:
    while await reader.read(LINE_LIMIT):
        pass


async def _read_tls_record(reader: asyncio.StreamReader) -> bytes:
    """One TLS record (RFC 8446 §5.1: type(1) version(2) length(2) fragment)."""
    header = await reader.readexactly(5)
    (length,) = struct.unpack("!H", header[3:5])
    return header + await reader.readexactly(length)


# --- TLS-level misbehaviour -----------------------------------------------------------

#: RFC 8446 §6 / RFC 5246 §7.2: an alert record is ContentType alert (21 = 0x15), the
#: legacy record version 0x0303, a 2-byte length (2), then AlertLevel fatal (2) and
#: AlertDescription handshake_failure (40 = 0x28).
ALERT_HANDSHAKE_FAILURE = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])


async def answer_with_alert(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the ClientHello, answer with a fatal handshake_failure alert."""
    await _read_tls_record(reader)
    writer.write(ALERT_HANDSHAKE_FAILURE)
    await writer.drain()
    await _until_client_leaves(reader)


async def reset_mid_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the ClientHello, then abort the connection with a TCP RST (SO_LINGER 0)."""
    await _read_tls_record(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _handshake_message(msg_type: int, body: bytes) -> bytes:
    # RFC 5246 §7.4: HandshakeType msg_type(1), uint24 length, body.
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def _record(content_type: int, fragment: bytes) -> bytes:
    # RFC 5246 §6.2.1: ContentType(1), ProtocolVersion {3, 3} (TLS 1.2), uint16 length.
    return bytes([content_type, 3, 3]) + struct.pack("!H", len(fragment)) + fragment


#: not DER: a Certificate entry must be an X.509 Certificate SEQUENCE (0x30 ...)
MALFORMED_CERT = b"this is not a certificate, just bytes"


def malformed_certificate_flight() -> bytes:
    """A TLS 1.2 ServerHello and a Certificate message whose only entry is not DER.

    ServerHello (RFC 5246 §7.4.1.3), HandshakeType server_hello (2):
        server_version {3, 3}; random: 32 bytes; session_id: empty (length 0, so the client
        cannot take it for a resumption of its TLS 1.3 compatibility session id);
        cipher_suite {0xC0, 0x2F} TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (RFC 5289), which a
        client offering "ALL" offers; compression_method null (0);
        extensions: renegotiation_info (0xFF01) with an empty renegotiated_connection
        (RFC 5746 §3.6), so the client sees a server that supports secure renegotiation.
    Certificate (RFC 5246 §7.4.2), HandshakeType certificate (11):
        certificate_list: uint24 total length, then per entry uint24 length + ASN.1 bytes.
    Both messages go in one handshake record (ContentType 22).
    """
    renegotiation_info = b"\xff\x01" + b"\x00\x01" + b"\x00"
    server_hello = (
        b"\x03\x03"
        + os.urandom(32)
        + b"\x00"
        + b"\xc0\x2f"
        + b"\x00"
        + struct.pack("!H", len(renegotiation_info))
        + renegotiation_info
    )
    entry = len(MALFORMED_CERT).to_bytes(3, "big") + MALFORMED_CERT
    certificate = len(entry).to_bytes(3, "big") + entry
    flight = _handshake_message(2, server_hello) + _handshake_message(11, certificate)
    return _record(22, flight)


async def send_malformed_certificate(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await _read_tls_record(reader)
    writer.write(malformed_certificate_flight())
    await writer.drain()
    await _until_client_leaves(reader)


# --- STARTTLS dialogues ---------------------------------------------------------------


@dataclass(frozen=True)
class StartTLSScript:
    """How a scripted STARTTLS server behaves.

    offer:   advertise STARTTLS in the capabilities
    reply:   the server's whole answer to STARTTLS (refusal, or go-ahead + injected text)
    """

    offer: bool = True
    reply: bytes = b""


def smtp(script: StartTLSScript) -> Handler:
    """An SMTP server (RFC 5321 §4.2 replies) scripted to refuse or abuse STARTTLS."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake.test ESMTP scripted\r\n")
        await writer.drain()
        while line := await reader.readuntil(b"\n"):
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb in (b"EHLO", b"LHLO"):
                caps = [b"fake.test", b"PIPELINING", b"8BITMIME"]
                if script.offer:
                    caps.append(b"STARTTLS")
                lines = [b"250-" + c for c in caps[:-1]] + [b"250 " + caps[-1]]
                writer.write(b"\r\n".join(lines) + b"\r\n")
            elif verb == b"HELO":
                writer.write(b"250 fake.test\r\n")
            elif verb == b"STARTTLS":
                writer.write(script.reply)
                await writer.drain()
                if script.reply.startswith(b"220"):
                    await _until_client_leaves(reader)
                    return
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"502 5.5.2 command not recognised\r\n")
            await writer.drain()

    return handler


def imap(script: StartTLSScript) -> Handler:
    """An IMAP server (RFC 9051 §7.1 status responses) scripted to refuse or abuse
    STARTTLS."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        caps = b"IMAP4rev1 LOGINDISABLED" + (b" STARTTLS" if script.offer else b"")
        writer.write(b"* OK [CAPABILITY " + caps + b"] fake.test scripted\r\n")
        await writer.drain()
        while line := await reader.readuntil(b"\n"):
            tag, _, rest = line.strip().partition(b" ")
            command = rest.split(b" ", 1)[0].upper()
            if command == b"CAPABILITY":
                writer.write(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK done\r\n")
            elif command == b"STARTTLS":
                writer.write(script.reply.replace(b"{tag}", tag))
                await writer.drain()
                if b" OK" in script.reply:
                    await _until_client_leaves(reader)
                    return
            elif command == b"LOGOUT":
                writer.write(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                await writer.drain()
                return
            else:
                writer.write(tag + b" BAD unknown command\r\n")
            await writer.drain()

    return handler


#: PostgreSQL SSLRequest: Int32 length 8, Int32 code 80877103 (protocol docs §55.2.10)
POSTGRES_SSL_REQUEST = struct.pack("!II", 8, 80877103)


def postgres(answer: bytes) -> Handler:
    """A PostgreSQL server answering the SSLRequest with ``answer`` (``N``: no TLS;
    ``S`` followed by more bytes: plaintext after the go-ahead)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readexactly(8)
        if request != POSTGRES_SSL_REQUEST:
            writer.write(b"E")
        else:
            writer.write(answer)
        await writer.drain()
        await _until_client_leaves(reader)

    return handler


# --- connection counting and gating (scan tests) --------------------------------------


@dataclass
class Counter:
    """Counts simultaneous connections (all updates happen on the servers' loop thread)."""

    current: int = 0
    peak: int = 0
    total: int = 0


def hold_then_close(counter: Counter, hold: float) -> Handler:
    """Keep each connection open for ``hold`` seconds (or until the client leaves), then
    close it; count how many are open at once. Server-side pacing, not test sync."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counter.current += 1
        counter.total += 1
        counter.peak = max(counter.peak, counter.current)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_until_client_leaves(reader), hold)
        finally:
            counter.current -= 1

    return handler


@dataclass
class Gate:
    """Connections wait silently until the test opens the gate, then are closed."""

    servers: FakeServers
    event: asyncio.Event = field(init=False)
    arrived: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        async def make() -> asyncio.Event:
            return asyncio.Event()

        self.event = self.servers.run(make())  # type: ignore[assignment]

    def handler(self) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.arrived.set()
            await self.event.wait()

        return handler

    def open(self) -> None:
        self.servers.loop.call_soon_threadsafe(self.event.set)


# --- real TLS servers with unusual certificates ---------------------------------------


def _ec_cert(
    subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, padding: int = 0
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    if padding:
        # A private, non-critical extension (OID arc 1.3.6.1.4.1.55555 is unassigned test
        # space here) to make each certificate ``padding`` bytes larger.
        builder = builder.add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"),
                b"\x04\x82" + padding.to_bytes(2, "big") + b"p" * padding,
            ),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


@dataclass(frozen=True)
class TLSServerFiles:
    context: ssl.SSLContext
    chain_der: tuple[bytes, ...]

    @property
    def chain_bytes(self) -> int:
        return sum(len(d) for d in self.chain_der)


def huge_chain_server(
    directory: Path, intermediates: int = 300, padding: int = 1000
) -> TLSServerFiles:
    """A server context whose chain is a leaf plus ``intermediates`` certificates of about
    ``padding`` + 300 bytes each (several hundred KiB in all). They need not chain up: the
    point is the size of the Certificate message (OpenSSL clients cap it at 100 KiB)."""
    key = ec.generate_private_key(ec.SECP256R1())
    certs = [_ec_cert("huge.test", "intermediate 0", key)]
    certs += [
        _ec_cert(f"intermediate {i}", f"intermediate {i + 1}", key, padding)
        for i in range(intermediates)
    ]
    chain_file = directory / "huge-chain.pem"
    key_file = directory / "huge-key.pem"
    chain_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain_file, key_file)
    return TLSServerFiles(ctx, tuple(c.public_bytes(serialization.Encoding.DER) for c in certs))


def legacy_tls_server(directory: Path, openssl: str) -> TLSServerFiles:
    """A server that only speaks TLS 1.0/1.1 and presents a self-signed RSA-1024 certificate
    signed with SHA-1. cryptography refuses to sign with SHA-1, so openssl(1) makes it."""
    cert_file = directory / "legacy.crt"
    key_file = directory / "legacy.key"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:1024", "-sha1", "-nodes",
            "-subj", "/CN=legacy.test", "-days", "30",
            "-keyout", str(key_file), "-out", str(cert_file),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Security level 0 lets OpenSSL 3 use the 1024-bit key, SHA-1 and TLS 1.0/1.1 at all.
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deliberately old versions
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.load_cert_chain(cert_file, key_file)
    der = x509.load_pem_x509_certificate(cert_file.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    return TLSServerFiles(ctx, (der,))


async def tls_then_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After asyncio completed the TLS handshake: wait for the client to leave."""
    await _until_client_leaves(reader)


def ftp(reply: bytes) -> Handler:
    """An FTP server (RFC 959 §4.2 replies) answering ``AUTH TLS`` with ``reply``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake.test FTP scripted\r\n")
        await writer.drain()
        while line := await reader.readuntil(b"\n"):
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"AUTH":
                writer.write(reply)
                await writer.drain()
                if reply.startswith(b"234"):
                    await _until_client_leaves(reader)
                    return
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"530 please login\r\n")
            await writer.drain()

    return handler
