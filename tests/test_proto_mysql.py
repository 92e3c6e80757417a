"""The MySQL/MariaDB TLS upgrade negotiator: greeting packet, capability flags, SSLRequest."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.transcript import CTX, FEEDINGS, drive, drive_chunks, failure_of, split_at
from tlswatch.protocols.base import Ready
from tlswatch.protocols.mysql import (
    CLIENT_PROTOCOL_41,
    CLIENT_SSL,
    MySQLNegotiator,
    parse_greeting,
)

# Greetings captured from the test's MariaDB 10.11 instances (tests/servers/mariadb.py):
# with TLS (capability flags 0x81fffffe) and started with --skip-ssl (0x81fff7fe).
MARIADB_TLS = bytes.fromhex(
    "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100030000006d"
    "762b6e6944576800feff080200ff81150000000000001d00000026247d6b246d7b447e6e2e36006d797371"
    "6c5f6e61746976655f70617373776f726400"
)
MARIADB_NO_TLS = bytes.fromhex(
    "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000300000047"
    "743238646e7e4f00fef7080200ff81150000000000001d0000004e772e7c4b3f3b4a3f40634f006d797371"
    "6c5f6e61746976655f70617373776f726400"
)


def packet(payload: bytes, sequence: int = 0) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([sequence]) + payload


def greeting_v10(
    version: bytes = b"8.0.36",
    caps: int = 0xFFFFFFFF,
    charset: int = 255,
    plugin: bytes = b"caching_sha2_password",
    extended: bool = True,
) -> bytes:
    """A HandshakeV10 payload as MySQL 8 sends it (or, extended=False, as 4.0 did)."""
    head = b"\x0a" + version + b"\x00" + struct.pack("<I", 42) + b"12345678" + b"\x00"
    head += struct.pack("<H", caps & 0xFFFF)
    if not extended:
        return head
    tail = bytes([charset]) + struct.pack("<HH", 2, caps >> 16) + bytes([21]) + bytes(10)
    return head + tail + b"abcdefghijkl\x00" + plugin + b"\x00"


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_mariadb_greeting_gets_ssl_request_and_ready(feeding: str) -> None:
    """MariaDB's greeting with CLIENT_SSL: we send the 32-byte SSLRequest (sequence 1:
    CLIENT_SSL and CLIENT_PROTOCOL_41, 16 MiB max packet, the server's charset, 23 zero
    bytes) and are ready; the version (no 5.5.5- prefix) is in the info."""
    out = drive(MySQLNegotiator, [MARIADB_TLS], feeding)
    (request,) = out.sent
    assert request[:4] == b"\x20\x00\x00\x01"
    flags, max_packet, charset = struct.unpack_from("<IIB", request, 4)
    assert flags & CLIENT_SSL and flags & CLIENT_PROTOCOL_41
    assert (max_packet, charset, request[13:]) == (16 * 1024 * 1024, 8, bytes(23))
    assert out.final == Ready(
        {
            "server_version": "10.11.19-MariaDB-0+deb12u1",
            "connection_id": "3",
            "capabilities": "0x81fffffe",
            "auth_plugin": "mysql_native_password",
        }
    )


@pytest.mark.parametrize("feeding", FEEDINGS)
def test_mariadb_skip_ssl_is_not_offered(feeding: str) -> None:
    """MariaDB --skip-ssl: no CLIENT_SSL, so upgrade_not_offered, naming the server."""
    out = drive(MySQLNegotiator, [MARIADB_NO_TLS], feeding)
    assert out.sent == []
    code, message = failure_of(out)
    assert code == "upgrade_not_offered"
    assert message.startswith("server 10.11.19-MariaDB-0+deb12u1 does not offer TLS")


def test_mysql8_greeting() -> None:
    """A MySQL 8 greeting (charset 255, caching_sha2_password) gets an SSLRequest echoing
    its charset."""
    out = drive(MySQLNegotiator, [packet(greeting_v10())])
    (request,) = out.sent
    assert request[12] == 255
    assert isinstance(out.final, Ready)
    assert out.final.info["server_version"] == "8.0.36"
    assert out.final.info["auth_plugin"] == "caching_sha2_password"


def test_pre_41_server_gets_the_short_ssl_request() -> None:
    """A 4.0-era greeting (no CLIENT_PROTOCOL_41, ends after the flags) gets the 5-byte
    HandshakeResponse320 form of the SSL request."""
    caps = CLIENT_SSL | 0x0001
    out = drive(MySQLNegotiator, [packet(greeting_v10(b"4.0.27", caps, extended=False))])
    (request,) = out.sent
    assert request[:4] == b"\x05\x00\x00\x01"
    assert struct.unpack_from("<H", request, 4)[0] & CLIENT_SSL
    assert request[6:] == b"\x00\x00\x00"
    assert isinstance(out.final, Ready)


@pytest.mark.parametrize("feeding", FEEDINGS)
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            b"\xff\x6a\x04Host '192.0.2.7' is not allowed to connect to this MariaDB server",
            "server refused the connection with error 1130: "
            "Host '192.0.2.7' is not allowed to connect to this MariaDB server",
        ),
        (
            b"\xff\x10\x04#08004Too many connections",
            "server refused the connection with error 1040: Too many connections",
        ),
        (b"\xff", "server refused the connection with error 0"),
    ],
)
def test_err_greeting_is_refused(payload: bytes, message: str, feeding: str) -> None:
    """An ERR packet instead of a greeting: upgrade_refused with its code and message."""
    out = drive(MySQLNegotiator, [packet(payload)], feeding)
    assert out.sent == []
    assert failure_of(out) == ("upgrade_refused", message)


def test_protocol_9_has_no_tls() -> None:
    """Protocol version 9 (MySQL < 3.21) cannot do TLS: upgrade_not_offered."""
    out = drive(MySQLNegotiator, [packet(b"\x093.20.32\x00" + bytes(12))])
    assert failure_of(out)[0] == "upgrade_not_offered"


def test_bytes_after_the_greeting_are_injection() -> None:
    """Bytes after the greeting (the server must wait for us) are injected plaintext:
    protocol_error, and no SSLRequest is sent."""
    out = drive(MySQLNegotiator, [MARIADB_TLS + b"\x01\x00\x00\x01\x00"])
    assert out.sent == []
    code, message = failure_of(out)
    assert code == "protocol_error" and "injection" in message


@pytest.mark.parametrize("feeding", FEEDINGS)
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"SSH-2.0-OpenSSH_9.2p1\r\n", "not a MySQL greeting packet (payload of"),
        (b"\x0a\x00\x00\x05" + bytes(10), "not a MySQL greeting packet"),
        (b"\x00\x00\x00\x00", "not a MySQL greeting packet"),
        (b"\xff\xff\xff\x00", "not a MySQL greeting packet (payload of 16777215 bytes)"),
        (packet(b"\x0a5.7.44"), "malformed MySQL greeting: server version is not NUL"),
        (packet(b"\x0a5.7\x00\x01\x02"), "malformed MySQL greeting: greeting ends before"),
        (packet(b"\x0bweird"), "malformed MySQL greeting: not a protocol version 10"),
    ],
)
def test_garbage_and_malformed_greetings(data: bytes, expected: str, feeding: str) -> None:
    """Bad framing fails from the 4-byte header alone (oversize included); a malformed
    payload fails once complete; each with a precise message."""
    code, message = failure_of(drive(MySQLNegotiator, [data], feeding))
    assert code == "protocol_error"
    assert message.startswith(expected)


def test_tls_alert_suggests_tls() -> None:
    """A TLS record where the greeting should be says the port expects TLS."""
    code, message = failure_of(drive(MySQLNegotiator, [b"\x15\x03\x03\x00\x02\x02\x46"]))
    assert code == "protocol_error" and "expects TLS right away" in message


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ([], "server closed the connection without sending a MySQL greeting"),
        ([MARIADB_TLS[:2]], "server closed the connection in the middle of its greeting packet"),
        ([MARIADB_TLS[:50]], "server closed the connection in the middle of its greeting packet"),
    ],
)
def test_eof_in_each_state(server: list[bytes], message: str) -> None:
    """End of stream before or inside the greeting: closed, saying where."""
    assert failure_of(drive(MySQLNegotiator, server, eof=True)) == ("closed", message)


def test_input_after_the_verdict_is_ignored() -> None:
    """Once done, the negotiator emits nothing more."""
    neg = MySQLNegotiator(CTX)
    assert isinstance(neg.receive_data(MARIADB_TLS)[-1], Ready)
    assert neg.receive_data(b"x") == []
    assert neg.receive_data(b"") == []


def test_parse_greeting_facts() -> None:
    """parse_greeting reads version, connection id, both flag halves, charset, status."""
    g = parse_greeting(MARIADB_TLS[4:])
    assert (g.protocol_version, g.connection_id, g.capabilities) == (10, 3, 0x81FFFFFE)
    assert (g.charset, g.status, g.server_version) == (8, 2, "5.5.5-10.11.19-MariaDB-0+deb12u1")


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    """Any bytes, cut anyhow, then end of stream: exactly one verdict, never an exception."""
    out = drive_chunks(MySQLNegotiator, chunks)
    assert out.final is not None and out.extra == []


@given(st.binary(max_size=120))
def test_arbitrary_greeting_payloads_never_raise(payload: bytes) -> None:
    """Any payload in a well-framed packet yields a verdict, never an exception."""
    out = drive(MySQLNegotiator, [packet(b"\x0a" + payload)])
    assert out.final is not None and out.extra == []


@given(
    st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\x00", b"x")),
    st.integers(min_value=0, max_value=0xFFFFFFFF),
    st.integers(min_value=0, max_value=255),
    st.lists(st.integers(min_value=1, max_value=200), max_size=10),
)
def test_chunking_does_not_change_the_outcome(
    version: bytes, caps: int, charset: int, cuts: list[int]
) -> None:
    """A greeting cut anywhere gives the same SSLRequest and verdict as fed whole."""
    data = packet(greeting_v10(version, caps, charset))
    whole = drive(MySQLNegotiator, [data])
    cut = drive_chunks(MySQLNegotiator, split_at(data, cuts), eof=False)
    assert (cut.sent, cut.final) == (whole.sent, whole.final)
    assert whole.final is not None
