"""RDP: X.224 Connection Request with an RDP_NEG_REQ asking for TLS (MS-RDPBCGR §1.3.1.1).

Client → server: TPKT (RFC 1006 §6: version 3, reserved, 16-bit big-endian length) carrying
an X.224 Connection Request TPDU (ISO 8073 §13.3, code 0xE0) whose variable part is the
RDP_NEG_REQ (MS-RDPBCGR §2.2.1.1.1) with requestedProtocols = PROTOCOL_SSL | PROTOCOL_HYBRID.

Server → client: TPKT + X.224 Connection Confirm (code 0xD0) carrying RDP_NEG_RSP
(§2.2.1.2.1, the selected protocol) or RDP_NEG_FAILURE (§2.2.1.2.2, a failure code). Every
protocol but Standard RDP Security starts with a TLS handshake right after the confirm
(CredSSP and RDSTLS run inside TLS), so that is where the certificate comes from.
"""

from __future__ import annotations

import enum
import struct

from tlswatch.errors import FailureClass
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Send, StateTable

TPKT_VERSION = 3
TPKT_HEADER = 4
#: a Connection Confirm is 19 bytes; anything near this cap is not one
MAX_TPKT = 1024
X224_CR = 0xE0
X224_CC = 0xD0
X224_DR = 0x80
TYPE_RDP_NEG_REQ = 0x01
TYPE_RDP_NEG_RSP = 0x02
TYPE_RDP_NEG_FAILURE = 0x03

# requestedProtocols / selectedProtocol flags (MS-RDPBCGR §2.2.1.1.1)
PROTOCOL_RDP = 0x0
PROTOCOL_SSL = 0x1
PROTOCOL_HYBRID = 0x2
PROTOCOL_RDSTLS = 0x4
PROTOCOL_HYBRID_EX = 0x8
PROTOCOL_NAMES = {
    PROTOCOL_RDP: "Standard RDP Security",
    PROTOCOL_SSL: "TLS",
    PROTOCOL_HYBRID: "CredSSP",
    PROTOCOL_RDSTLS: "RDSTLS",
    PROTOCOL_HYBRID_EX: "CredSSP with Early User Authorization",
}

# RDP_NEG_FAILURE failureCode (MS-RDPBCGR §2.2.1.2.2): class and explanation
FAILURE_CODES: dict[int, tuple[FailureClass, str]] = {
    1: (FailureClass.UPGRADE_REFUSED, "SSL_REQUIRED_BY_SERVER"),
    2: (
        FailureClass.UPGRADE_NOT_OFFERED,
        "SSL_NOT_ALLOWED_BY_SERVER: the server only allows Standard RDP Security",
    ),
    3: (
        FailureClass.UPGRADE_NOT_OFFERED,
        "SSL_CERT_NOT_ON_SERVER: the server has no certificate for TLS",
    ),
    4: (FailureClass.UPGRADE_REFUSED, "INCONSISTENT_FLAGS"),
    5: (FailureClass.UPGRADE_REFUSED, "HYBRID_REQUIRED_BY_SERVER"),
    6: (FailureClass.UPGRADE_REFUSED, "SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER"),
}


def connection_request(requested: int = PROTOCOL_SSL | PROTOCOL_HYBRID) -> bytes:
    """TPKT + X.224 CR TPDU + RDP_NEG_REQ (no cookie: it is optional, §2.2.1.1)."""
    neg_req = struct.pack("<BBHI", TYPE_RDP_NEG_REQ, 0, 8, requested)
    # LI counts the TPDU header after itself: code, DST-REF, SRC-REF, class = 6 bytes.
    tpdu = struct.pack(">BBHHB", 6 + len(neg_req), X224_CR, 0, 0, 0) + neg_req
    return struct.pack(">BBH", TPKT_VERSION, 0, TPKT_HEADER + len(tpdu)) + tpdu


class State(enum.Enum):
    CONFIRM = "confirm"
    DONE = "done"


TRANSITIONS: StateTable[State] = StateTable({State.CONFIRM: frozenset({State.DONE})})


class RDPNegotiator(Negotiator):
    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self.state = State.CONFIRM
        self._buf = bytearray()

    def initiate(self) -> list[Event]:
        return [Send(connection_request())]

    def receive_data(self, data: bytes) -> list[Event]:
        if self.done:
            return []
        if not data:
            return self.closed("before confirming the RDP connection", bytes(self._buf))
        self._buf += data
        if self._buf[0] != TPKT_VERSION:
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                "server's answer is not a TPKT packet (RFC 1006): not an RDP server?",
                bytes(self._buf),
            )
        if len(self._buf) < TPKT_HEADER:
            return []
        length = int.from_bytes(self._buf[2:4], "big")
        if length < TPKT_HEADER + 3 or length > MAX_TPKT:
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"TPKT length {length} is not a plausible X.224 Connection Confirm",
                bytes(self._buf),
            )
        if len(self._buf) < length:
            return []
        packet = bytes(self._buf[:length])
        trailing = bytes(self._buf[length:])
        self.state = TRANSITIONS.move(self.state, State.DONE)
        return self._confirm(packet, trailing)

    def _confirm(self, packet: bytes, trailing: bytes) -> list[Event]:
        tpdu = packet[TPKT_HEADER:]
        li = tpdu[0]
        if li + 1 > len(tpdu) or li < 6:
            return self.fail(
                FailureClass.PROTOCOL_ERROR, f"X.224 length indicator {li} is invalid", packet
            )
        code = tpdu[1] & 0xF0
        if code == X224_DR:
            return self.fail(
                FailureClass.UPGRADE_REFUSED,
                "server answered with an X.224 Disconnect Request",
                packet,
            )
        if code != X224_CC:
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"expected an X.224 Connection Confirm (0xD0), got TPDU code 0x{tpdu[1]:02x}",
                packet,
            )
        neg = tpdu[7 : li + 1]
        if not neg:
            # No negotiation data: a server from before RDP 5.2 speaks only Standard RDP
            # Security (MS-RDPBCGR §3.3.5.3.1).
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                "server's Connection Confirm has no RDP_NEG_RSP: it only speaks "
                "Standard RDP Security (no TLS)",
            )
        if len(neg) < 8:
            return self.fail(
                FailureClass.PROTOCOL_ERROR, "truncated RDP negotiation structure", packet
            )
        kind, flags, size, value = struct.unpack("<BBHI", neg[:8])
        if size != 8:
            return self.fail(
                FailureClass.PROTOCOL_ERROR, f"RDP negotiation structure of length {size}", packet
            )
        if kind == TYPE_RDP_NEG_FAILURE:
            cls, why = FAILURE_CODES.get(
                value, (FailureClass.UPGRADE_REFUSED, f"unknown failure code {value}")
            )
            return self.fail(cls, f"server refused TLS with RDP_NEG_FAILURE {why}")
        if kind != TYPE_RDP_NEG_RSP:
            return self.fail(
                FailureClass.PROTOCOL_ERROR, f"unknown RDP negotiation type {kind}", packet
            )
        if value == PROTOCOL_RDP:
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                "server selected Standard RDP Security: it does not offer TLS",
            )
        name = PROTOCOL_NAMES.get(value)
        if name is None:
            return self.fail(
                FailureClass.PROTOCOL_ERROR, f"server selected unknown protocol 0x{value:x}"
            )
        return self.ready(trailing, {"selected_protocol": name, "flags": f"0x{flags:02x}"})
