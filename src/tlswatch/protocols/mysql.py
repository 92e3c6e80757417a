"""MySQL / MariaDB TLS upgrade (MySQL client/server protocol, "Protocol::HandshakeV10" and
"Protocol::SSLRequest"; MariaDB "Connection" docs): the server speaks first.

Every message is a packet: a 3-byte little-endian payload length, a 1-byte sequence id, the
payload. The server's first packet (sequence 0) is either the initial handshake (protocol
version 10) or an ERR packet (0xFF: "Host ... is blocked", "Too many connections"). If its
capability flags carry CLIENT_SSL (0x0800) we answer with the SSLRequest packet (sequence 1):
capability flags including CLIENT_SSL, max packet size, character set, 23 zero bytes. TLS
starts right after it; the server sends nothing until our ClientHello, so any byte after the
greeting is plaintext that must not reach TLS.

    greeting --v10 with CLIENT_SSL--> done (Send SSLRequest, Ready)
             --ERR / no CLIENT_SSL / garbage / EOF--> done (Failed)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Ready, Send, StateTable
from tlswatch.protocols.sniff import tls_hint

HEADER = 4  # 3-byte payload length + sequence id
#: a real greeting is about 100 bytes; this bounds what we buffer for it
MAX_GREETING = 16 * 1024

# Capability flags ("Capability Flags" in the protocol docs)
CLIENT_LONG_PASSWORD = 0x00000001
CLIENT_PROTOCOL_41 = 0x00000200
CLIENT_SSL = 0x00000800
CLIENT_SECURE_CONNECTION = 0x00008000
CLIENT_PLUGIN_AUTH = 0x00080000
#: what our SSLRequest announces (intersected with the server's flags, plus CLIENT_SSL)
CLIENT_FLAGS = (
    CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH
)
MAX_PACKET = 16 * 1024 * 1024
DEFAULT_CHARSET = 33  # utf8_general_ci, for servers whose greeting omits one
#: MariaDB prefixes its version so that old replication clients accept it (MDEV-4088)
MARIADB_PREFIX = "5.5.5-"


@dataclass(frozen=True, slots=True)
class Greeting:
    """The facts of a HandshakeV10 packet we use."""

    protocol_version: int
    server_version: str
    connection_id: int
    capabilities: int
    charset: int | None = None
    status: int | None = None
    auth_plugin: str | None = None


class GreetingError(ValueError):
    """The greeting payload is malformed."""


def parse_greeting(payload: bytes) -> Greeting:
    """Parse a protocol-10 initial handshake payload (HandshakeV10)."""
    if not payload or payload[0] != 10:
        raise GreetingError("not a protocol version 10 handshake")
    end = payload.find(b"\0", 1)
    if end < 0:
        raise GreetingError("server version is not NUL-terminated")
    version = payload[1:end].decode("utf-8", "replace")
    pos = end + 1
    # connection id (4), auth-plugin-data-part-1 (8), filler (1), capability flags lower (2)
    if len(payload) < pos + 15:
        raise GreetingError("greeting ends before its capability flags")
    (connection_id,) = struct.unpack_from("<I", payload, pos)
    pos += 4 + 8 + 1
    (caps,) = struct.unpack_from("<H", payload, pos)
    pos += 2
    charset = status = None
    plugin = None
    # Older servers stop here; newer ones add charset (1), status (2), flags upper (2),
    # auth data length (1), 10 reserved bytes, auth-plugin-data-part-2, plugin name.
    if len(payload) >= pos + 5:
        charset = payload[pos]
        (status, upper) = struct.unpack_from("<HH", payload, pos + 1)
        caps |= upper << 16
        pos += 5
        if caps & CLIENT_PLUGIN_AUTH and len(payload) >= pos + 11:
            auth_len = payload[pos]
            pos += 11 + max(13, auth_len - 8)
            if pos < len(payload):
                name_end = payload.find(b"\0", pos)
                name = payload[pos : name_end if name_end >= 0 else len(payload)]
                plugin = excerpt(name, 64)
    return Greeting(10, version, connection_id, caps, charset, status, plugin)


def parse_err(payload: bytes) -> tuple[int, str]:
    """Error code and message of an ERR packet (0xFF, code, ['#' sqlstate], message)."""
    if len(payload) < 3:
        return 0, ""
    (code,) = struct.unpack_from("<H", payload, 1)
    rest = payload[3:]
    if rest[:1] == b"#" and len(rest) >= 6:
        rest = rest[6:]
    return code, excerpt(rest, 200)


def ssl_request(greeting: Greeting) -> bytes:
    """The SSLRequest packet answering ``greeting``, sequence id 1."""
    charset = greeting.charset if greeting.charset is not None else DEFAULT_CHARSET
    flags = (CLIENT_FLAGS & greeting.capabilities) | CLIENT_SSL
    if greeting.capabilities & CLIENT_PROTOCOL_41:
        # Protocol::SSLRequest: flags (4), max packet (4), charset (1), 23 zero bytes.
        flags |= CLIENT_PROTOCOL_41
        payload = struct.pack("<IIB23x", flags, MAX_PACKET, charset)
    else:
        # Pre-4.1 servers: Protocol::HandshakeResponse320 truncated after flags (2) and
        # max packet (3) is their SSL request.
        payload = struct.pack("<H", flags & 0xFFFF) + MAX_PACKET.to_bytes(4, "little")[:3]
    return len(payload).to_bytes(3, "little") + b"\x01" + payload


class _State(enum.Enum):
    GREETING = "greeting"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable({_State.GREETING: frozenset({_State.DONE})})


class MySQLNegotiator(Negotiator):
    """Client side of the MySQL/MariaDB TLS upgrade."""

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._state = _State.GREETING
        self._buf = bytearray()

    def _move(self, dst: _State) -> None:
        self._state = _TABLE.move(self._state, dst)

    def _finish(
        self, code: FailureClass, message: str, evidence: bytes | None = None
    ) -> list[Event]:
        self._move(_State.DONE)
        return self.fail(code, message, evidence)

    def receive_data(self, data: bytes) -> list[Event]:
        if self._state is not _State.GREETING:
            return []
        if not data:
            if self._buf:
                self._move(_State.DONE)
                return self.closed("in the middle of its greeting packet", bytes(self._buf))
            self._move(_State.DONE)
            return self.closed("without sending a MySQL greeting")
        self._buf += data
        if len(self._buf) < HEADER:
            return []
        length = int.from_bytes(self._buf[:3], "little")
        sequence = self._buf[3]
        if length == 0 or length > MAX_GREETING or sequence != 0:
            return self._finish(
                FailureClass.PROTOCOL_ERROR,
                "not a MySQL greeting packet"
                + (f" (payload of {length} bytes)" if length > MAX_GREETING else "")
                + tls_hint(bytes(self._buf), "tls://"),
                bytes(self._buf),
            )
        if len(self._buf) < HEADER + length:
            return []
        payload = bytes(self._buf[HEADER : HEADER + length])
        trailing = bytes(self._buf[HEADER + length :])
        return self._on_greeting(payload, trailing)

    def _on_greeting(self, payload: bytes, trailing: bytes) -> list[Event]:
        kind = payload[0]
        if kind == 0xFF:
            code, message = parse_err(payload)
            return self._finish(
                FailureClass.UPGRADE_REFUSED,
                f"server refused the connection with error {code}"
                + (f": {message}" if message else ""),
            )
        if kind == 9:  # protocol version 9: MySQL before 3.21, no TLS at all
            return self._finish(
                FailureClass.UPGRADE_NOT_OFFERED,
                "server speaks MySQL protocol version 9, which has no TLS",
            )
        try:
            greeting = parse_greeting(payload)
        except GreetingError as exc:
            return self._finish(
                FailureClass.PROTOCOL_ERROR, f"malformed MySQL greeting: {exc}", payload
            )
        version = greeting.server_version.removeprefix(MARIADB_PREFIX)
        info = {
            "server_version": excerpt(version.encode("utf-8", "replace"), 100),
            "connection_id": str(greeting.connection_id),
            "capabilities": f"0x{greeting.capabilities:08x}",
        }
        if greeting.auth_plugin:
            info["auth_plugin"] = greeting.auth_plugin
        if not greeting.capabilities & CLIENT_SSL:
            return self._finish(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server {info['server_version']} does not offer TLS "
                "(CLIENT_SSL is not in its capability flags: started without TLS "
                "certificates, or with skip-ssl)",
            )
        self._move(_State.DONE)
        events = self.ready(trailing, info)
        if isinstance(events[0], Ready):
            return [Send(ssl_request(greeting)), *events]
        return events


__all__ = ["Greeting", "MySQLNegotiator", "parse_err", "parse_greeting", "ssl_request"]
