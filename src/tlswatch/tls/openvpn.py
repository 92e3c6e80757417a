"""The OpenVPN control channel: packets, tls-auth, the reliability layer, and the framer.

OpenVPN (2.x, src/openvpn/ssl_pkt.h, reliable.h, ssl.c) carries its TLS session inside
*control packets* with a reliability layer of its own, over UDP or over TCP:

    packet      = opcode<<3 | key_id (u8), session_id (8 bytes),
                  [tls-auth: HMAC (digest size), replay packet_id (u32), net_time (u32)],
                  ack count (u8), acked packet ids (u32 each),
                  [remote session_id (8 bytes), present when ack count > 0],
                  [message packet_id (u32), absent in P_ACK_V1],
                  payload (TLS bytes in P_CONTROL_V1)
    over TCP    each packet is prefixed by its length (u16 big-endian); the driver's datagram
                transport presents UDP datagrams the same way, so one codec serves both.

The client opens with P_CONTROL_HARD_RESET_CLIENT_V2 (message packet id 0); the server
answers P_CONTROL_HARD_RESET_SERVER_V2 with its session id, then TLS records travel in
P_CONTROL_V1 packets. Every control packet is acknowledged (piggybacked on the next packet,
or in P_ACK_V1); unacknowledged packets are retransmitted with exponential back-off, up to a
bound (over UDP; TCP delivers or fails by itself).

tls-auth (``--tls-auth``): an HMAC over replay packet_id | net_time | opcode | session_id |
the rest of the packet, computed over that order and sent after the session id on the wire.
The key file holds 2 × (64-byte cipher key, 64-byte HMAC key); with a key direction the
client signs with the second HMAC key and checks with the first (direction 1) or the other
way round (direction 0); without one, both ways use the first.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from tlswatch.tls.framing import FramingError

P_CONTROL_HARD_RESET_CLIENT_V1 = 1
P_CONTROL_HARD_RESET_SERVER_V1 = 2
P_CONTROL_SOFT_RESET_V1 = 3
P_CONTROL_V1 = 4
P_ACK_V1 = 5
P_DATA_V1 = 6
P_CONTROL_HARD_RESET_CLIENT_V2 = 7
P_CONTROL_HARD_RESET_SERVER_V2 = 8
P_DATA_V2 = 9
P_CONTROL_HARD_RESET_CLIENT_V3 = 10
P_CONTROL_WKC_V1 = 11
OPCODE_NAMES = {
    1: "P_CONTROL_HARD_RESET_CLIENT_V1",
    2: "P_CONTROL_HARD_RESET_SERVER_V1",
    3: "P_CONTROL_SOFT_RESET_V1",
    4: "P_CONTROL_V1",
    5: "P_ACK_V1",
    6: "P_DATA_V1",
    7: "P_CONTROL_HARD_RESET_CLIENT_V2",
    8: "P_CONTROL_HARD_RESET_SERVER_V2",
    9: "P_DATA_V2",
    10: "P_CONTROL_HARD_RESET_CLIENT_V3",
    11: "P_CONTROL_WKC_V1",
}
_DATA_OPCODES = frozenset({P_DATA_V1, P_DATA_V2})

SESSION_ID_LEN = 8
#: a control packet is at most tls-mtu (≤ 2048) plus headers; larger is not OpenVPN
MAX_PACKET = 4096
#: acks carried in one packet (RELIABLE_ACK_SIZE)
MAX_ACKS = 8
#: our packets in flight before we wait for acks (the server's receive window is larger)
SEND_WINDOW = 4
#: server packets held while an earlier one is missing (UDP reordering), beyond: dropped
REORDER_WINDOW = 16
#: TLS bytes per P_CONTROL_V1 packet (OpenVPN 2.6 tls-mtu default 1250 minus headers)
MAX_PAYLOAD = 1100
INITIAL_RTO = 1.0
MAX_SENDS = 5  # first transmission + 4 retransmissions

STATIC_KEY_BYTES = 256
_KEY_BLOCK = re.compile(
    r"-----BEGIN OpenVPN Static key V1-----(.*?)-----END OpenVPN Static key V1-----", re.S
)


def parse_static_key(text: str) -> bytes:
    """The 256 bytes of an ``OpenVPN Static key V1`` file; ValueError says what is wrong."""
    m = _KEY_BLOCK.search(text)
    if not m:
        raise ValueError("not an OpenVPN static key file (no 'OpenVPN Static key V1' block)")
    hexdigits = "".join(
        line.strip() for line in m.group(1).splitlines() if not line.strip().startswith("#")
    )
    try:
        key = bytes.fromhex(hexdigits)
    except ValueError:
        raise ValueError("OpenVPN static key block is not hexadecimal") from None
    if len(key) != STATIC_KEY_BYTES:
        raise ValueError(f"OpenVPN static key has {len(key)} bytes, expected 256")
    return key


class TLSAuth:
    """tls-auth HMAC for control packets, one replay counter for what we send."""

    def __init__(
        self,
        key: bytes,
        direction: int | None,
        digest: str = "SHA1",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            self._hash = getattr(hashlib, digest.lower().replace("-", ""))
        except AttributeError:
            raise ValueError(f"unknown tls-auth digest {digest!r}") from None
        self.size = self._hash().digest_size
        out_slot, in_slot = {None: (0, 0), 0: (0, 1), 1: (1, 0)}[direction]
        # Each 128-byte half of the key is (cipher key, HMAC key); HMAC keys are the
        # digest's size (OpenVPN crypto.c key_direction_state_init).
        self._out = key[out_slot * 128 + 64 : out_slot * 128 + 64 + self.size]
        self._in = key[in_slot * 128 + 64 : in_slot * 128 + 64 + self.size]
        self._replay_id = 0
        self._wall = wall_clock

    def _mac(self, key: bytes, replay: bytes, head: bytes, rest: bytes) -> bytes:
        return hmac.new(key, replay + head + rest, self._hash).digest()

    def sign(self, head: bytes, rest: bytes) -> bytes:
        self._replay_id += 1
        replay = struct.pack(">II", self._replay_id, int(self._wall()) & 0xFFFFFFFF)
        return head + self._mac(self._out, replay, head, rest) + replay + rest

    def verify(self, packet: bytes) -> bytes:
        """The packet without HMAC and replay fields; FramingError if the HMAC is wrong."""
        head_len = 1 + SESSION_ID_LEN
        if len(packet) < head_len + self.size + 8:
            raise FramingError("control packet too short for its tls-auth HMAC", packet[:80])
        head = packet[:head_len]
        mac = packet[head_len : head_len + self.size]
        replay = packet[head_len + self.size : head_len + self.size + 8]
        rest = packet[head_len + self.size + 8 :]
        if not hmac.compare_digest(mac, self._mac(self._in, replay, head, rest)):
            raise FramingError(
                "server's control packet fails the tls-auth HMAC check: the key or "
                "key_direction does not match the server's"
            )
        return head + rest


@dataclass(frozen=True, slots=True)
class ControlPacket:
    opcode: int
    key_id: int
    session_id: bytes
    acks: tuple[int, ...] = ()
    remote_session_id: bytes | None = None
    packet_id: int | None = None
    payload: bytes = b""

    @property
    def name(self) -> str:
        return OPCODE_NAMES.get(self.opcode, f"opcode {self.opcode}")


def encode_packet(p: ControlPacket, auth: TLSAuth | None = None) -> bytes:
    """One control packet, without the stream length prefix."""
    head = bytes([(p.opcode << 3) | p.key_id]) + p.session_id
    rest = bytearray([len(p.acks)])
    for ack in p.acks:
        rest += struct.pack(">I", ack)
    if p.acks:
        assert p.remote_session_id is not None
        rest += p.remote_session_id
    if p.packet_id is not None:
        rest += struct.pack(">I", p.packet_id)
    rest += p.payload
    if auth is not None:
        return auth.sign(head, bytes(rest))
    return head + bytes(rest)


def decode_packet(raw: bytes, auth: TLSAuth | None = None) -> ControlPacket:
    """Parse one control packet (FramingError on anything malformed)."""
    if not raw:
        raise FramingError("empty OpenVPN packet")
    opcode, key_id = raw[0] >> 3, raw[0] & 0x07
    if opcode not in OPCODE_NAMES:
        raise FramingError(f"unknown OpenVPN opcode {opcode}: not an OpenVPN server?", raw[:80])
    if opcode in _DATA_OPCODES:
        return ControlPacket(opcode, key_id, b"")
    if auth is not None:
        raw = auth.verify(raw)
    pos = 1 + SESSION_ID_LEN
    if len(raw) < pos + 1:
        raise FramingError("truncated OpenVPN control packet", raw[:80])
    session_id = raw[1:pos]
    count = raw[pos]
    pos += 1
    if count > MAX_ACKS:
        raise FramingError(f"control packet acknowledges {count} packets (at most 8)", raw[:80])
    need = pos + 4 * count + (SESSION_ID_LEN if count else 0)
    if len(raw) < need:
        raise FramingError("truncated ack list in OpenVPN control packet", raw[:80])
    acks = struct.unpack(f">{count}I", raw[pos : pos + 4 * count])
    pos += 4 * count
    remote = None
    if count:
        remote = raw[pos : pos + SESSION_ID_LEN]
        pos += SESSION_ID_LEN
    packet_id = None
    if opcode != P_ACK_V1:
        if len(raw) < pos + 4:
            raise FramingError("OpenVPN control packet without its packet id", raw[:80])
        (packet_id,) = struct.unpack(">I", raw[pos : pos + 4])
        pos += 4
    return ControlPacket(opcode, key_id, session_id, acks, remote, packet_id, raw[pos:])


@dataclass
class _Outgoing:
    opcode: int
    payload: bytes
    packet_id: int
    due: float
    sends: int = 1
    rto: float = INITIAL_RTO


class ControlChannel:
    """Client side of the control channel's reliability layer, sans-IO.

    ``send()`` queues a control message, ``receive()`` takes transport bytes and returns
    the server's control messages in packet-id order, ``output()`` returns transport bytes
    to write (new packets, retransmissions, acks). ``next_timer()``/``handle_timer()``
    drive retransmission when ``retransmit`` is on (UDP).
    """

    def __init__(
        self,
        auth: TLSAuth | None = None,
        *,
        retransmit: bool = False,
        session_id: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        initial_rto: float = INITIAL_RTO,
        max_sends: int = MAX_SENDS,
    ) -> None:
        self.session_id = session_id or os.urandom(SESSION_ID_LEN)
        self.remote_session_id: bytes | None = None
        self.auth = auth
        self.retransmit = retransmit
        self._clock = clock
        self._rto = initial_rto
        self.max_sends = max_sends
        self._next_id = 0
        self._queue: list[tuple[int, bytes]] = []
        self._unacked: dict[int, _Outgoing] = {}
        self._expected = 0
        self._held: dict[int, ControlPacket] = {}
        self._acks: list[int] = []
        self._in = bytearray()
        self._out = bytearray()
        self.packets_received = 0
        self.bytes_received = 0

    # -- sending -------------------------------------------------------------------------
    def send(self, opcode: int, payload: bytes = b"") -> None:
        self._queue.append((opcode, payload))
        self._pump()

    def send_tls(self, tls: bytes) -> None:
        for i in range(0, len(tls), MAX_PAYLOAD):
            self._queue.append((P_CONTROL_V1, tls[i : i + MAX_PAYLOAD]))
        self._pump()

    def _take_acks(self) -> tuple[int, ...]:
        if self.remote_session_id is None:
            return ()
        acks, self._acks = tuple(self._acks[:MAX_ACKS]), self._acks[MAX_ACKS:]
        return acks

    def _emit(self, opcode: int, payload: bytes, packet_id: int | None) -> None:
        acks = self._take_acks()
        packet = ControlPacket(
            opcode,
            0,
            self.session_id,
            acks,
            self.remote_session_id if acks else None,
            packet_id,
            payload,
        )
        raw = encode_packet(packet, self.auth)
        self._out += len(raw).to_bytes(2, "big") + raw

    def _pump(self) -> None:
        while self._queue and len(self._unacked) < SEND_WINDOW:
            opcode, payload = self._queue.pop(0)
            pid = self._next_id
            self._next_id += 1
            self._unacked[pid] = _Outgoing(opcode, payload, pid, self._clock() + self._rto)
            self._emit(opcode, payload, pid)

    def output(self) -> bytes:
        """Transport bytes to write now; an explicit P_ACK_V1 if acks are still owed."""
        self._pump()
        while self._acks and self.remote_session_id is not None:
            self._emit(P_ACK_V1, b"", None)
        out, self._out = bytes(self._out), bytearray()
        return out

    # -- timers --------------------------------------------------------------------------
    def next_timer(self) -> float | None:
        if not self.retransmit or not self._unacked:
            return None
        return min(o.due for o in self._unacked.values())

    def handle_timer(self, now: float) -> None:
        """Retransmit what is due; FramingError(upgrade_refused) when the bound is reached."""
        for o in sorted(self._unacked.values(), key=lambda o: o.packet_id):
            if o.due > now:
                continue
            if o.sends >= self.max_sends:
                raise FramingError(
                    f"server acknowledged no {OPCODE_NAMES[o.opcode]} after {o.sends} "
                    "transmissions",
                    code="upgrade_refused",
                )
            o.sends += 1
            o.rto *= 2
            o.due = now + o.rto
            self._emit(o.opcode, o.payload, o.packet_id)

    @property
    def sends_of_first(self) -> int:
        first = self._unacked.get(0)
        return first.sends if first else 0

    # -- receiving -----------------------------------------------------------------------
    def receive(self, data: bytes) -> list[ControlPacket]:
        """Transport bytes in; the server's control messages out, in order."""
        self._in += data
        self.bytes_received += len(data)
        delivered: list[ControlPacket] = []
        while len(self._in) >= 2:
            size = int.from_bytes(self._in[:2], "big")
            if size > MAX_PACKET or size < 1 + SESSION_ID_LEN + 1:
                raise FramingError(
                    f"OpenVPN packet length {size} is out of range (10..{MAX_PACKET}): "
                    "not an OpenVPN server?",
                    bytes(self._in[:80]),
                )
            if len(self._in) < 2 + size:
                break
            raw = bytes(self._in[2 : 2 + size])
            del self._in[: 2 + size]
            delivered.extend(self._packet(decode_packet(raw, self.auth)))
        return delivered

    def _packet(self, p: ControlPacket) -> list[ControlPacket]:
        if p.opcode in _DATA_OPCODES:
            return []  # no data channel yet; a stray data packet carries nothing for us
        self.packets_received += 1
        if self.remote_session_id is None:
            if p.opcode != P_CONTROL_HARD_RESET_SERVER_V2:
                raise FramingError(
                    f"server answered the reset with {p.name}, expected "
                    "P_CONTROL_HARD_RESET_SERVER_V2",
                    encode_packet(p)[:80],
                )
            self.remote_session_id = p.session_id
        elif p.session_id != self.remote_session_id:
            raise FramingError("server changed its OpenVPN session id mid-handshake")
        if p.acks:
            if p.remote_session_id != self.session_id:
                raise FramingError("server acknowledged packets of another session")
            for ack in p.acks:
                self._unacked.pop(ack, None)
        if p.opcode == P_ACK_V1:
            return []
        if p.opcode not in (P_CONTROL_V1, P_CONTROL_HARD_RESET_SERVER_V2):
            raise FramingError(f"unexpected {p.name} during the TLS handshake")
        assert p.packet_id is not None
        # Acknowledge every control packet, duplicates too: our ack may have been lost.
        if p.packet_id not in self._acks:
            self._acks.append(p.packet_id)
        if p.packet_id < self._expected or p.packet_id - self._expected >= REORDER_WINDOW:
            return []
        self._held[p.packet_id] = p
        out = []
        while self._expected in self._held:
            out.append(self._held.pop(self._expected))
            self._expected += 1
        return out


class OpenVPNFramer:
    """TLS records in P_CONTROL_V1 packets of the negotiator's control channel."""

    def __init__(self, negotiator: object) -> None:
        channel = getattr(negotiator, "channel", None)
        if not isinstance(channel, ControlChannel):
            raise TypeError("OpenVPNFramer needs the OpenVPN negotiator's control channel")
        self.channel = channel

    def wrap(self, tls_bytes: bytes) -> bytes:
        self.channel.send_tls(tls_bytes)
        return b""  # everything goes out through pending_output(), acks included

    def unwrap(self, data: bytes) -> bytes:
        tls = bytearray()
        for p in self.channel.receive(data):
            if p.opcode != P_CONTROL_V1:
                raise FramingError(f"unexpected {p.name} during the TLS handshake")
            tls += p.payload
        return bytes(tls)

    def pending_output(self) -> bytes:
        return self.channel.output()

    def handshake_complete(self) -> None:
        return None

    def next_timer(self) -> float | None:
        return self.channel.next_timer()

    def handle_timer(self, now: float) -> None:
        self.channel.handle_timer(now)
