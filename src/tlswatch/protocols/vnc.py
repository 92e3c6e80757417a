"""VNC: RFB version and security handshake, then VeNCrypt's X509 sub-types, then TLS.

RFB (RFC 6143 §7.1): the server sends its ``ProtocolVersion`` (12 bytes, ``RFB 003.008\\n``),
the client answers with the version it speaks; from 3.7 on the server lists its security
types (u8 count, then one byte each; a count of 0 is followed by a u32-length reason
string), in 3.3 it dictates one (u32). Security type 19 is VeNCrypt (the VeNCrypt
specification, rfbproto "VeNCrypt"): the server sends its VeNCrypt version (u8 major,
u8 minor), the client answers 0.2, the server acknowledges (u8, 0 = ok), lists its
sub-types (u8 count, u32 each), the client picks one (u32) and the server accepts it
(u8, 1 = ok). TLS starts right after.

Sub-types 260-262 and 264 (X509*) use certificates; 257-259 and 263 (TLS*) are anonymous
TLS: no certificate exists to check, which is reported as such.
"""

from __future__ import annotations

import enum
import re
import struct

from tlswatch.errors import FailureClass
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Send, StateTable

SECURITY_VENCRYPT = 19
SECURITY_NAMES = {
    0: "Invalid",
    1: "None",
    2: "VNC Authentication",
    5: "RA2",
    6: "RA2ne",
    16: "Tight",
    17: "Ultra",
    18: "TLS",
    19: "VeNCrypt",
    20: "SASL",
    22: "XVP",
    30: "Apple ARD",
}
SUBTYPE_NAMES = {
    256: "Plain",
    257: "TLSNone",
    258: "TLSVnc",
    259: "TLSPlain",
    260: "X509None",
    261: "X509Vnc",
    262: "X509Plain",
    263: "TLSSASL",
    264: "X509SASL",
}
#: preference order: a certificate-bearing sub-type that needs no credentials first
X509_SUBTYPES = (260, 261, 262, 264)
ANONYMOUS_TLS_SUBTYPES = frozenset({257, 258, 259, 263})
_VERSION = re.compile(rb"^RFB (\d{3})\.(\d{3})\n$")
MAX_REASON = 4096


class State(enum.Enum):
    VERSION = "version"
    SECURITY_TYPES = "security_types"  # RFB 3.7+
    SECURITY_TYPE_33 = "security_type_33"  # RFB 3.3
    REASON = "reason"
    VENCRYPT_VERSION = "vencrypt_version"
    VENCRYPT_ACK = "vencrypt_ack"
    SUBTYPES = "subtypes"
    SUBTYPE_ACK = "subtype_ack"
    DONE = "done"


S = State
TRANSITIONS: StateTable[State] = StateTable(
    {
        S.VERSION: frozenset({S.SECURITY_TYPES, S.SECURITY_TYPE_33}),
        S.SECURITY_TYPES: frozenset({S.VENCRYPT_VERSION, S.REASON}),
        S.SECURITY_TYPE_33: frozenset({S.REASON}),
        S.VENCRYPT_VERSION: frozenset({S.VENCRYPT_ACK}),
        S.VENCRYPT_ACK: frozenset({S.SUBTYPES}),
        S.SUBTYPES: frozenset({S.SUBTYPE_ACK}),
        S.SUBTYPE_ACK: frozenset({S.DONE}),
    }
)


def _names(values: list[int], table: dict[int, str]) -> str:
    return ", ".join(table.get(v, f"type {v}") for v in values) or "none"


class VNCNegotiator(Negotiator):
    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self.state = State.VERSION
        self._buf = bytearray()
        self.info: dict[str, str] = {}

    def _move(self, dst: State) -> None:
        self.state = TRANSITIONS.move(self.state, dst)

    def _take(self, n: int) -> bytes | None:
        if len(self._buf) < n:
            return None
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        if self.done:
            return []
        if not data:
            return self.closed(f"during the RFB handshake ({self.state.value})", bytes(self._buf))
        self._buf += data
        out: list[Event] = []
        while not self.done:
            step = self._step()
            if step is None:  # need more data
                break
            out.extend(step)
        return out

    def _step(self) -> list[Event] | None:
        st = self.state
        if st is S.VERSION:
            if not self._buf.startswith(b"RFB "[: len(self._buf)]):
                return self.fail(
                    FailureClass.PROTOCOL_ERROR,
                    "server's greeting is not an RFB ProtocolVersion",
                    bytes(self._buf),
                )
            raw = self._take(12)
            if raw is None:
                return None
            m = _VERSION.match(raw)
            if not m:
                return self.fail(FailureClass.PROTOCOL_ERROR, "malformed RFB ProtocolVersion", raw)
            major, minor = int(m.group(1)), int(m.group(2))
            self.info["rfb_version"] = f"{major}.{minor}"
            # RFC 6143 §7.1.1: answer with the highest version both speak; anything
            # unknown below 3.7 is treated as 3.3.
            if (major, minor) >= (3, 8):
                ours, nxt = b"RFB 003.008\n", S.SECURITY_TYPES
            elif (major, minor) >= (3, 7):
                ours, nxt = b"RFB 003.007\n", S.SECURITY_TYPES
            else:
                ours, nxt = b"RFB 003.003\n", S.SECURITY_TYPE_33
            self._move(nxt)
            return [Send(ours)]
        if st is S.SECURITY_TYPES:
            if not self._buf:
                return None
            count = self._buf[0]
            if count == 0:
                del self._buf[:1]
                self._move(S.REASON)
                return []
            raw = self._take(1 + count)
            if raw is None:
                return None
            types = list(raw[1:])
            self.info["security_types"] = _names(types, SECURITY_NAMES)
            if SECURITY_VENCRYPT not in types:
                return self.fail(
                    FailureClass.UPGRADE_NOT_OFFERED,
                    f"server offers no VeNCrypt (security types: {self.info['security_types']})",
                )
            self._move(S.VENCRYPT_VERSION)
            return [Send(bytes([SECURITY_VENCRYPT]))]
        if st is S.SECURITY_TYPE_33:
            raw = self._take(4)
            if raw is None:
                return None
            (chosen,) = struct.unpack(">I", raw)
            if chosen == 0:
                self._move(S.REASON)
                return []
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"RFB 3.3 server dictates security type {SECURITY_NAMES.get(chosen, chosen)}; "
                "no VeNCrypt",
            )
        if st is S.REASON:
            if len(self._buf) < 4:
                return None
            size = int.from_bytes(self._buf[:4], "big")
            if size > MAX_REASON:
                return self.fail(FailureClass.PROTOCOL_ERROR, f"RFB failure reason of {size} bytes")
            raw = self._take(4 + size)
            if raw is None:
                return None
            reason = raw[4:].decode("utf-8", "replace")
            return self.fail(
                FailureClass.UPGRADE_REFUSED, "server refused the connection", reason.encode()
            )
        if st is S.VENCRYPT_VERSION:
            raw = self._take(2)
            if raw is None:
                return None
            self.info["vencrypt_version"] = f"{raw[0]}.{raw[1]}"
            if (raw[0], raw[1]) < (0, 2):
                return self.fail(
                    FailureClass.UPGRADE_NOT_OFFERED,
                    f"server speaks VeNCrypt {raw[0]}.{raw[1]} only; 0.2 is needed",
                )
            self._move(S.VENCRYPT_ACK)
            return [Send(b"\x00\x02")]
        if st is S.VENCRYPT_ACK:
            raw = self._take(1)
            if raw is None:
                return None
            if raw[0] != 0:
                return self.fail(FailureClass.UPGRADE_REFUSED, "server rejected VeNCrypt 0.2")
            self._move(S.SUBTYPES)
            return []
        if st is S.SUBTYPES:
            if not self._buf:
                return None
            count = self._buf[0]
            raw = self._take(1 + 4 * count)
            if raw is None:
                return None
            subtypes = list(struct.unpack(f">{count}I", raw[1:]))
            self.info["vencrypt_subtypes"] = _names(subtypes, SUBTYPE_NAMES)
            chosen = next((s for s in X509_SUBTYPES if s in subtypes), None)
            if chosen is None:
                if ANONYMOUS_TLS_SUBTYPES.intersection(subtypes):
                    return self.fail(
                        FailureClass.UPGRADE_NOT_OFFERED,
                        "no certificate: the server offers only anonymous TLS VeNCrypt "
                        f"sub-types ({self.info['vencrypt_subtypes']}), which use no "
                        "certificate at all",
                    )
                return self.fail(
                    FailureClass.UPGRADE_NOT_OFFERED,
                    f"server offers no TLS VeNCrypt sub-type ({self.info['vencrypt_subtypes']})",
                )
            self.info["vencrypt_subtype"] = SUBTYPE_NAMES[chosen]
            self._move(S.SUBTYPE_ACK)
            return [Send(struct.pack(">I", chosen))]
        if st is S.SUBTYPE_ACK:
            raw = self._take(1)
            if raw is None:
                return None
            if raw[0] != 1:
                return self.fail(
                    FailureClass.UPGRADE_REFUSED,
                    f"server rejected VeNCrypt sub-type {self.info['vencrypt_subtype']}",
                )
            self._move(S.DONE)
            return self.ready(bytes(self._buf), self.info)
        raise AssertionError(st)  # pragma: no cover
