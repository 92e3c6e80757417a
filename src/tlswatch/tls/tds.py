"""MS-TDS packets, and the framer that carries the TLS handshake inside them.

Every TDS message travels in packets with an 8-byte header (MS-TDS §2.2.3.1): type (u8),
status (u8, bit 0x01 = end of message), length (u16 big-endian, header included), SPID
(u16), packet id (u8), window (u8). In TDS 7.x the TLS handshake is carried inside PRELOGIN
packets (type 0x12) in both directions (MS-TDS §2.2.6.5, §3.3.5.1); once the handshake is
done TLS records go on the wire unwrapped. TDS 8.0 (``strict``) is plain implicit TLS and
needs no framer.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlswatch.tls.framing import FramingError

HEADER = 8
TYPE_TABULAR_RESULT = 0x04  # MS-TDS §2.2.3.1.1: server responses, the PRELOGIN answer
TYPE_LOGIN7 = 0x10
TYPE_PRELOGIN = 0x12
STATUS_EOM = 0x01
#: MS-TDS §2.2.6.4: a negotiated packet size is at most 32767 bytes
MAX_PACKET = 32767
#: our own packets: the default packet size before LOGIN7 negotiates one is 4096
OUR_PACKET = 4096
#: cap on one reassembled message (a PRELOGIN answer is ~40 bytes; a TLS flight fits in
#: a few packets)
MAX_MESSAGE = 256 * 1024


@dataclass(frozen=True, slots=True)
class Packet:
    type: int
    status: int
    payload: bytes

    @property
    def eom(self) -> bool:
        return bool(self.status & STATUS_EOM)


def encode_packet(kind: int, payload: bytes, packet_id: int = 1, eom: bool = True) -> bytes:
    length = HEADER + len(payload)
    if length > MAX_PACKET:
        raise ValueError(f"TDS packet of {length} bytes")
    status = STATUS_EOM if eom else 0
    return (
        bytes([kind, status])
        + length.to_bytes(2, "big")
        + b"\x00\x00"
        + bytes([packet_id & 0xFF, 0])
        + payload
    )


def encode_message(kind: int, payload: bytes, first_id: int = 1) -> bytes:
    """A message split into packets of at most OUR_PACKET bytes, EOM on the last."""
    room = OUR_PACKET - HEADER
    chunks = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
    return b"".join(
        encode_packet(kind, chunk, first_id + n, eom=n == len(chunks) - 1)
        for n, chunk in enumerate(chunks)
    )


class PacketReader:
    """Splits a byte stream into TDS packets by their header length; bounded."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        while len(self._buf) >= HEADER:
            length = int.from_bytes(self._buf[2:4], "big")
            if length < HEADER or length > MAX_PACKET + 1:
                raise FramingError(
                    f"TDS packet header announces {length} bytes "
                    f"(valid: {HEADER}..{MAX_PACKET}): not a TDS server?",
                    bytes(self._buf[:HEADER]),
                )
            if len(self._buf) < length:
                break
            raw = bytes(self._buf[:length])
            del self._buf[:length]
            out.append(Packet(raw[0], raw[1], raw[HEADER:]))
        return out

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)


class TDSFramer:
    """TLS handshake records inside TDS PRELOGIN packets; unwrapped once it completes."""

    def __init__(self, negotiator: object = None) -> None:
        self._reader = PacketReader()
        self._next_id = 1
        self._wrapping = True

    def wrap(self, tls_bytes: bytes) -> bytes:
        if not self._wrapping:
            return tls_bytes
        out = encode_message(TYPE_PRELOGIN, tls_bytes, self._next_id)
        self._next_id = (self._next_id + (len(out) + OUR_PACKET - 1) // OUR_PACKET) & 0xFF
        return out

    def unwrap(self, data: bytes) -> bytes:
        if not self._wrapping:
            return data
        tls = bytearray()
        for packet in self._reader.feed(data):
            # Servers answer in PRELOGIN packets (SQL Server) or tabular-result packets
            # (some implementations); the payload is TLS either way.
            if packet.type not in (TYPE_PRELOGIN, TYPE_TABULAR_RESULT):
                raise FramingError(
                    f"expected the TLS handshake in a TDS PRELOGIN packet, got packet type "
                    f"0x{packet.type:02x}",
                    packet.payload[:80],
                )
            tls += packet.payload
        return bytes(tls)

    def pending_output(self) -> bytes:
        return b""

    def handshake_complete(self) -> None:
        self._wrapping = False

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None
