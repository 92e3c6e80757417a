"""A scripted MS-TDS server on loopback (Debian has no SQL Server).

It speaks real TDS 7.4 + TLS: PRELOGIN answered with ENCRYPT_ON (MS-TDS §2.2.6.5), the TLS
handshake inside PRELOGIN packets (§3.3.5.1), then raw TLS carrying LOGIN7, answered with
an ERROR token and DONE (§2.2.7.10, §2.2.7.6). The session fixture proves the script right
by connecting FreeTDS' ``tsql`` with ``encryption = require`` and the test root as its CA
*before* any probe uses the server: tsql must complete the TLS handshake, send LOGIN7 over
TLS (the script decrypts the user name) and print the script's error message (which it
can only read over TLS).

Other modes on their own ports: ``strict`` (TDS 8.0: TLS first with ALPN tds/8.0),
``not_sup`` (ENCRYPT_NOT_SUP), ``error`` (an ERROR token instead of PRELOGIN), and the
broken servers ``garbage``, ``silent``, ``truncated``, ``oversized``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.fakeserver import FakeServers, fake_servers
from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import require_binary

TYPE_TABULAR, TYPE_LOGIN7, TYPE_PRELOGIN = 0x04, 0x10, 0x12
ERROR_MESSAGE = "tlswatch scripted TDS server: LOGIN7 received over TLS"


def packet(kind: int, payload: bytes, last: bool = True) -> bytes:
    # MS-TDS §2.2.3.1: type, status (0x01 EOM), length (BE, header included), SPID,
    # packet id, window
    return struct.pack(">BBHHBB", kind, 1 if last else 0, 8 + len(payload), 0, 1, 0) + payload


def message(kind: int, payload: bytes) -> bytes:
    room = 4096 - 8
    chunks = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
    return b"".join(packet(kind, c, i == len(chunks) - 1) for i, c in enumerate(chunks))


def prelogin_answer(encryption: int) -> bytes:
    # VERSION 16.0.1000 (SQL Server 2022 style), ENCRYPTION, INSTOPT, THREADID, MARS
    opts = [
        (0, bytes([16, 0, 0x03, 0xE8, 0, 0])),
        (1, bytes([encryption])),
        (2, b"\x00"),
        (3, b""),
        (4, b"\x00"),
    ]
    off = 5 * len(opts) + 1
    head, body = b"", b""
    for token, value in opts:
        head += struct.pack(">BHH", token, off + len(body), len(value))
        body += value
    return head + b"\xff" + body


def error_token(text: str, number: int = 18456) -> bytes:
    msg = text.encode("utf-16-le")
    server = "tlswatch".encode("utf-16-le")
    body = (
        struct.pack("<iBB", number, 1, 14)
        + struct.pack("<H", len(text))
        + msg
        + bytes([len("tlswatch")])
        + server
        + b"\x00"
        + struct.pack("<i", 1)
    )
    done = b"\xfd" + struct.pack("<HHQ", 0x0002, 0, 0)  # DONE_ERROR
    return b"\xaa" + struct.pack("<H", len(body)) + body + done


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(8)
    if head[0] not in (TYPE_PRELOGIN, TYPE_LOGIN7):
        return head[0], b""  # not TDS: the caller hangs up, as SQL Server does
    length = struct.unpack(">H", head[2:4])[0]
    return head[0], await reader.readexactly(length - 8)


@dataclass
class TDSServers:
    ports: dict[str, int]
    leaf: IssuedLeaf
    logins: list[str] = field(default_factory=list)
    tsql_output: str = ""

    def url(self, mode: str = "tds", **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"mssql://127.0.0.1:{self.ports[mode]}" + (f"?{query}" if query else "")


def _server_context(leaf: IssuedLeaf, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(leaf.chain_file, leaf.key_file)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    else:
        # TDS 7.x servers speak TLS 1.2 at most; no session tickets after the handshake
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _tds_handler(ctx: ssl.SSLContext, logins: list[str], encryption: int = 1):  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind, _ = await read_packet(reader)
        if kind != TYPE_PRELOGIN:
            return
        writer.write(packet(TYPE_TABULAR, prelogin_answer(encryption)))
        await writer.drain()
        if encryption == 2:
            await reader.read(1)
            return
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_side=True)
        while True:  # the handshake, wrapped in PRELOGIN packets
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            out = outgoing.read()
            if out:
                writer.write(message(TYPE_PRELOGIN, out))
                await writer.drain()
            if done:
                break
            _, payload = await read_packet(reader)
            incoming.write(payload)
        plain = b""  # raw TLS from here on: LOGIN7 inside
        while len(plain) < 8 or len(plain) < struct.unpack(">H", plain[2:4])[0]:
            try:
                chunk = tls.read(65536)
            except ssl.SSLWantReadError:
                chunk = None
            if chunk == b"":
                return  # close_notify: the client (a probe) is done
            if chunk:
                plain += chunk
                continue
            data = await reader.read(65536)
            if not data:
                return
            incoming.write(data)
        if plain[0] == TYPE_LOGIN7:
            body = plain[8:]
            offset, chars = struct.unpack("<HH", body[40:44])
            logins.append(body[offset : offset + 2 * chars].decode("utf-16-le"))
        tls.write(packet(TYPE_TABULAR, error_token(ERROR_MESSAGE)))
        writer.write(outgoing.read())
        await writer.drain()

    return handler


async def _strict(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)  # TDS 8.0: the PRELOGIN comes inside TLS; the probe leaves


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    await writer.drain()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(65536):
        pass


async def _truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    whole = packet(TYPE_TABULAR, prelogin_answer(1))
    writer.write(whole[:12])  # header promises more; nothing follows
    await writer.drain()
    while await reader.read(65536):
        pass


async def _oversized(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(struct.pack(">BBHHBB", TYPE_TABULAR, 1, 0xFFFF, 0, 1, 0) + b"\x00" * 100)
    await writer.drain()
    while await reader.read(65536):
        pass


async def _error(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(packet(TYPE_TABULAR, error_token("Login is disabled on this server")))
    await writer.drain()


def _prove_with_tsql(servers: TDSServers, pki: TestPKI, work: os.PathLike[str]) -> str:
    tsql = require_binary("/usr/bin/tsql")
    conf = os.path.join(work, "freetds.conf")
    with open(conf, "w") as f:
        f.write(
            f"[tlswatch]\n\thost = 127.0.0.1\n\tport = {servers.ports['tds']}\n"
            f"\ttds version = 7.4\n\tencryption = require\n\tca file = {pki.root_file}\n"
        )
    proc = subprocess.run(
        [tsql, "-S", "tlswatch", "-U", "tlswatch_probe", "-P", "not-a-secret"],
        input=b"quit\n",
        capture_output=True,
        timeout=30,
        check=False,  # tsql exits non-zero: the script refuses the login on purpose
        env={**os.environ, "FREETDSCONF": conf, "TDSDUMP": ""},
    )
    return (proc.stdout + proc.stderr).decode(errors="replace")


@pytest.fixture(scope="session")
def tds_servers(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TDSServers]:
    leaf = pki.issue("mssql")
    work = tmp_path_factory.mktemp("tds")
    ctx = _server_context(leaf)
    logins: list[str] = []
    with fake_servers() as fs:
        ports = _serve_all(fs, ctx, _server_context(leaf, ["tds/8.0"]), logins)
        servers = TDSServers(ports, leaf, logins)
        servers.tsql_output = _prove_with_tsql(servers, pki, work)
        if ERROR_MESSAGE not in servers.tsql_output or logins != ["tlswatch_probe"]:
            pytest.fail(
                "the scripted TDS server failed FreeTDS' tsql proof "
                f"(logins seen: {logins}):\n{servers.tsql_output}",
                pytrace=False,
            )
        yield servers


def _serve_all(
    fs: FakeServers, ctx: ssl.SSLContext, strict: ssl.SSLContext, logins: list[str]
) -> dict[str, int]:
    return {
        "tds": fs.serve(_tds_handler(ctx, logins)),
        "not_sup": fs.serve(_tds_handler(ctx, logins, encryption=2)),
        "strict": fs.serve(_strict, ssl_context=strict),
        "error": fs.serve(_error),
        "garbage": fs.serve(_garbage),
        "silent": fs.serve(_silent),
        "truncated": fs.serve(_truncated),
        "oversized": fs.serve(_oversized),
    }
