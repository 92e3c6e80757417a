"""PostgreSQL SSLRequest (protocol docs §55.2.10 "SSL Session Encryption"): the client
speaks first.

We send the 8-byte SSLRequest (Int32 length 8, Int32 code 80877103, §55.7 "Message
Formats") and the server answers with one byte: ``S`` go ahead, ``N`` no TLS here
(``ssl=off``). Servers older than 7.x, or ones refusing for another reason, send an
ErrorResponse (``E``) instead. The answer is a single byte, so anything after the ``S``
and before our ClientHello is plaintext injected by a man in the middle (CVE-2021-23222):
it must never reach TLS.

``postgres://...?direct=1`` (PostgreSQL 17 direct TLS) is not handled here: the registry
maps it to implicit TLS with ALPN ``postgresql``.

    start --initiate--> await_answer --S--> done (Ready)
                                     --N/E/other/EOF--> done (Failed)
"""

from __future__ import annotations

import enum
import struct

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Send, StateTable
from tlswatch.protocols.sniff import tls_hint

SSL_REQUEST_CODE = 80877103  # (1234 << 16) | 5679, §55.7 SSLRequest
SSL_REQUEST = struct.pack("!ii", 8, SSL_REQUEST_CODE)
#: an ErrorResponse to SSLRequest is short; a larger "length" is not one (§55.7)
MAX_ERROR_LENGTH = 8192

#: ErrorResponse field codes worth showing (§55.8 "Error and Notice Message Fields")
_FIELDS = {ord("S"): "severity", ord("C"): "sqlstate", ord("M"): "message"}


class _State(enum.Enum):
    START = "start"
    AWAIT_ANSWER = "await_answer"
    AWAIT_ERROR = "await_error"  # the rest of an ErrorResponse after its 'E'
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.START: frozenset({_State.AWAIT_ANSWER}),
        _State.AWAIT_ANSWER: frozenset({_State.AWAIT_ERROR, _State.DONE}),
        _State.AWAIT_ERROR: frozenset({_State.DONE}),
    }
)


class PostgresNegotiator(Negotiator):
    """Client side of the PostgreSQL SSLRequest."""

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._state = _State.START
        self._buf = bytearray()

    def _move(self, dst: _State) -> None:
        self._state = _TABLE.move(self._state, dst)

    def initiate(self) -> list[Event]:
        self._move(_State.AWAIT_ANSWER)
        return [Send(SSL_REQUEST)]

    def receive_data(self, data: bytes) -> list[Event]:
        if self._state not in (_State.AWAIT_ANSWER, _State.AWAIT_ERROR):
            return []
        if not data:
            return self._eof()
        self._buf += data
        if self._state is _State.AWAIT_ANSWER:
            return self._on_answer()
        return self._on_error()

    def _eof(self) -> list[Event]:
        state = self._state
        self._move(_State.DONE)
        if state is _State.AWAIT_ERROR:
            return self.closed("in the middle of its ErrorResponse to SSLRequest", bytes(self._buf))
        return self.closed("without answering the SSLRequest (not a PostgreSQL server?)")

    def _on_answer(self) -> list[Event]:
        answer = self._buf[0]
        if answer == ord("S"):
            self._move(_State.DONE)
            return self.ready(bytes(self._buf[1:]), {"sslrequest": "S"})
        if answer == ord("N"):
            self._move(_State.DONE)
            return self.fail(
                FailureClass.UPGRADE_REFUSED,
                "server does not accept TLS (ssl=off): it answered N to SSLRequest",
            )
        if answer == ord("E"):
            self._move(_State.AWAIT_ERROR)
            return self._on_error()
        self._move(_State.DONE)
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            "not a PostgreSQL answer to SSLRequest (expected S, N or an ErrorResponse)"
            + tls_hint(bytes(self._buf), "postgres://…?direct=1"),
            bytes(self._buf),
        )

    def _on_error(self) -> list[Event]:
        """An ErrorResponse (§55.7): 'E', Int32 length, fields of (Byte1 code, String)
        ended by a zero byte. Pre-7.4 servers sent 'E' and one NUL-terminated string
        instead (protocol 2.0); a length field that is implausibly large is read as that."""
        buf = self._buf
        if len(buf) < 5:
            return []
        (length,) = struct.unpack_from("!i", buf, 1)
        if 4 <= length <= MAX_ERROR_LENGTH:
            if len(buf) < 1 + length:
                return []
            text = _error_fields(bytes(buf[5 : 1 + length]))
        else:
            end = buf.find(b"\0", 1)
            if end < 0:
                if len(buf) > MAX_ERROR_LENGTH:
                    self._move(_State.DONE)
                    return self.fail(
                        FailureClass.PROTOCOL_ERROR,
                        f"ErrorResponse to SSLRequest longer than {MAX_ERROR_LENGTH} bytes",
                        bytes(buf),
                    )
                return []
            text = excerpt(bytes(buf[1:end]), 200)
        self._move(_State.DONE)
        # The text comes from a server not yet authenticated (CVE-2024-10977): show it,
        # escaped, as what the server claimed, never as our own diagnosis.
        return self.fail(
            FailureClass.UPGRADE_REFUSED,
            f"server refused SSLRequest with an error (unauthenticated server text): {text}",
        )


def _error_fields(body: bytes) -> str:
    found: dict[str, str] = {}
    for field in body.split(b"\0"):
        if field and field[0] in _FIELDS:
            found.setdefault(_FIELDS[field[0]], excerpt(field[1:], 200))
    if not found:
        return excerpt(body, 200)
    parts = [found.get("severity", ""), found.get("message", "")]
    text = ": ".join(p for p in parts if p)
    if "sqlstate" in found:
        text += f" (SQLSTATE {found['sqlstate']})"
    return text


__all__ = ["SSL_REQUEST", "PostgresNegotiator"]
