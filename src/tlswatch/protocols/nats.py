"""NATS: the server's INFO, then TLS (NATS client protocol, "INFO" and "TLS" sections).

The server speaks first with one line ``INFO {json}\\r\\n``. When the JSON says
``tls_required`` (or ``tls_available``) a client starts the TLS handshake right after INFO,
without sending anything in plaintext. A server configured with ``handshake_first`` (NATS 2.10+)
sends nothing until the client's ClientHello: that is the registry's ``handshake_first=1``
variant (implicit TLS), and auto:// finds it by the silence.
"""

from __future__ import annotations

import enum
import json

from tlswatch.errors import FailureClass
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, StateTable
from tlswatch.protocols.lines import LineBuffer, LineTooLong

#: nats-server's max_control_line default is 4 KiB, INFO lists of cluster URLs can be longer
MAX_INFO = 64 * 1024


class State(enum.Enum):
    INFO = "info"
    DONE = "done"


TRANSITIONS: StateTable[State] = StateTable({State.INFO: frozenset({State.DONE})})


def _truthy(value: object) -> bool:
    return value is True


class NATSNegotiator(Negotiator):
    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self.state = State.INFO
        self._lines = LineBuffer(max_line=MAX_INFO)

    def receive_data(self, data: bytes) -> list[Event]:
        if self.done:
            return []
        if not data:
            return self.closed("before sending its INFO", self._lines.pending)
        try:
            lines = self._lines.feed(data)
        except LineTooLong as exc:
            return self.fail(FailureClass.PROTOCOL_ERROR, "INFO line too long", exc.tail)
        if not lines:
            return []
        first, rest = lines[0], lines[1:]
        trailing = b"".join(line + b"\r\n" for line in rest) + self._lines.pending
        self.state = TRANSITIONS.move(self.state, State.DONE)
        op, _, payload = first.partition(b" ")
        if op.upper() == b"-ERR":
            return self.fail(
                FailureClass.UPGRADE_REFUSED, "server refused the connection with -ERR", first
            )
        if op.upper() != b"INFO":
            return self.fail(
                FailureClass.PROTOCOL_ERROR, "server's first line is not a NATS INFO", first
            )
        try:
            info = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return self.fail(FailureClass.PROTOCOL_ERROR, "NATS INFO is not valid JSON", first)
        if not isinstance(info, dict):
            return self.fail(FailureClass.PROTOCOL_ERROR, "NATS INFO is not a JSON object", first)
        facts = {
            k: str(info[k])
            for k in ("server_id", "server_name", "version", "proto")
            if isinstance(info.get(k), str | int)
        }
        required = _truthy(info.get("tls_required"))
        available = _truthy(info.get("tls_available"))
        if not (required or available):
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                "server's INFO offers no TLS (neither tls_required nor tls_available)",
            )
        facts["tls"] = "required" if required else "available"
        return self.ready(trailing, facts)
