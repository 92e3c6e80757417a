"""Microsoft SQL Server: TDS PRELOGIN with the ENCRYPTION option, then TLS inside TDS.

The client sends a PRELOGIN message (MS-TDS §2.2.6.5): option tokens (u8 token, u16 offset,
u16 length, all big-endian; 0xFF ends the list) followed by the option data. The server
answers with its own PRELOGIN in a tabular-result packet (type 0x04). Its ENCRYPTION byte
decides (§2.2.6.5, table of ENCRYPT_* values): ENCRYPT_NOT_SUP means the server has no TLS;
anything else means the TLS handshake follows, carried inside PRELOGIN packets by
:class:`tlswatch.tls.tds.TDSFramer` (§3.3.5.1). ``strict=1`` (TDS 8.0) is implicit TLS with
ALPN ``tds/8.0`` and does not use this negotiator.
"""

from __future__ import annotations

import enum
import struct

from tlswatch.errors import FailureClass
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Send, StateTable
from tlswatch.tls.framing import FramingError
from tlswatch.tls.tds import (
    MAX_MESSAGE,
    TYPE_PRELOGIN,
    TYPE_TABULAR_RESULT,
    PacketReader,
    encode_message,
)

# PRELOGIN option tokens (MS-TDS §2.2.6.5)
OPT_VERSION = 0x00
OPT_ENCRYPTION = 0x01
OPT_INSTOPT = 0x02
OPT_THREADID = 0x03
OPT_MARS = 0x04
OPT_TERMINATOR = 0xFF
# ENCRYPTION values
ENCRYPT_OFF = 0x00
ENCRYPT_ON = 0x01
ENCRYPT_NOT_SUP = 0x02
ENCRYPT_REQ = 0x03
ENCRYPT_NAMES = {0: "ENCRYPT_OFF", 1: "ENCRYPT_ON", 2: "ENCRYPT_NOT_SUP", 3: "ENCRYPT_REQ"}
ENCRYPT_CLIENT_CERT = 0x80  # flag bit on top of the values above
TOKEN_ERROR = 0xAA  # MS-TDS §2.2.7.10


def prelogin_request(encryption: int = ENCRYPT_ON) -> bytes:
    """Our PRELOGIN: version 0.0.0, ENCRYPT_ON, no instance, no thread id, no MARS."""
    options = [
        (OPT_VERSION, b"\x00\x00\x00\x00\x00\x00"),  # UL_VERSION + US_SUBBUILD
        (OPT_ENCRYPTION, bytes([encryption])),
        (OPT_INSTOPT, b"\x00"),  # empty, NUL-terminated instance name
        (OPT_THREADID, b"\x00\x00\x00\x00"),
        (OPT_MARS, b"\x00"),
    ]
    offset = 5 * len(options) + 1
    head, body = bytearray(), bytearray()
    for token, value in options:
        head += struct.pack(">BHH", token, offset + len(body), len(value))
        body += value
    head.append(OPT_TERMINATOR)
    return encode_message(TYPE_PRELOGIN, bytes(head + body))


def parse_prelogin(payload: bytes) -> dict[int, bytes]:
    """Option token → data; ValueError on a malformed list."""
    options: dict[int, bytes] = {}
    pos = 0
    while True:
        if pos >= len(payload):
            raise ValueError("PRELOGIN option list has no terminator")
        token = payload[pos]
        if token == OPT_TERMINATOR:
            return options
        if pos + 5 > len(payload):
            raise ValueError("truncated PRELOGIN option token")
        _, offset, length = struct.unpack(">BHH", payload[pos : pos + 5])
        if offset + length > len(payload):
            raise ValueError(f"PRELOGIN option 0x{token:02x} points past the message")
        options[token] = payload[offset : offset + length]
        pos += 5


def _error_text(payload: bytes) -> str | None:
    """The message of an ERROR token (§2.2.7.10) a server sent instead of PRELOGIN."""
    if len(payload) < 11 or payload[0] != TOKEN_ERROR:
        return None
    chars = int.from_bytes(payload[9:11], "little")
    return payload[11 : 11 + 2 * chars].decode("utf-16-le", "replace")


class State(enum.Enum):
    PRELOGIN = "prelogin"
    DONE = "done"


TRANSITIONS: StateTable[State] = StateTable({State.PRELOGIN: frozenset({State.DONE})})


class MSSQLNegotiator(Negotiator):
    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self.state = State.PRELOGIN
        self._reader = PacketReader()
        self._message = bytearray()

    def initiate(self) -> list[Event]:
        return [Send(prelogin_request())]

    def receive_data(self, data: bytes) -> list[Event]:
        if self.done:
            return []
        if not data:
            return self.closed("before answering PRELOGIN", bytes(self._message))
        head = self._reader.pending + data
        if not self._message and head[0] != TYPE_TABULAR_RESULT:
            # MS-TDS §2.2.6.5: the answer to PRELOGIN is a tabular-result packet; say so at
            # the first byte rather than wait for a "length" that is really text.
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"server's answer to PRELOGIN is not a TDS tabular-result packet (type "
                f"0x{head[0]:02x}): not a TDS server?",
                head,
            )
        try:
            packets = self._reader.feed(data)
        except FramingError as exc:
            return self.fail(FailureClass.PROTOCOL_ERROR, str(exc), exc.evidence)
        for n, packet in enumerate(packets):
            if packet.type != TYPE_TABULAR_RESULT:
                return self.fail(
                    FailureClass.PROTOCOL_ERROR,
                    f"expected the PRELOGIN answer in a tabular-result packet (0x04), got "
                    f"packet type 0x{packet.type:02x}",
                    packet.payload,
                )
            self._message += packet.payload
            if len(self._message) > MAX_MESSAGE:
                return self.fail(
                    FailureClass.PROTOCOL_ERROR,
                    f"PRELOGIN answer exceeds {MAX_MESSAGE} bytes",
                    bytes(self._message[:80]),
                )
            if packet.eom:
                rest = b"".join(p.payload for p in packets[n + 1 :]) + self._reader.pending
                return self._answer(bytes(self._message), rest)
        return []

    def _answer(self, message: bytes, trailing: bytes) -> list[Event]:
        self.state = TRANSITIONS.move(self.state, State.DONE)
        error = _error_text(message)
        if error is not None:
            return self.fail(
                FailureClass.UPGRADE_REFUSED,
                "server answered PRELOGIN with an error",
                error.encode("utf-8", "replace"),
            )
        try:
            options = parse_prelogin(message)
        except ValueError as exc:
            return self.fail(
                FailureClass.PROTOCOL_ERROR, f"malformed PRELOGIN answer: {exc}", message
            )
        enc = options.get(OPT_ENCRYPTION)
        if not enc:
            return self.fail(
                FailureClass.PROTOCOL_ERROR, "PRELOGIN answer has no ENCRYPTION option", message
            )
        value = enc[0] & ~ENCRYPT_CLIENT_CERT
        info = {"encryption": ENCRYPT_NAMES.get(value, f"0x{enc[0]:02x}")}
        version = options.get(OPT_VERSION, b"")
        if len(version) >= 4:
            info["server_version"] = (
                f"{version[0]}.{version[1]}.{int.from_bytes(version[2:4], 'big')}"
            )
        if value == ENCRYPT_NOT_SUP:
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                "server answered ENCRYPT_NOT_SUP: it has no TLS (no certificate configured "
                "or encryption disabled)",
            )
        if value not in ENCRYPT_NAMES:
            return self.fail(
                FailureClass.PROTOCOL_ERROR, f"unknown ENCRYPTION value 0x{enc[0]:02x}", message
            )
        return self.ready(trailing, info)
