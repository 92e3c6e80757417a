"""POP3 STLS (RFC 2595 §4 on RFC 1939, capabilities by CAPA, RFC 2449): the server speaks
first.

Responses are one status line, ``+OK text`` or ``-ERR text`` (RFC 1939 §3); CAPA answers
``+OK`` then a multi-line list ended by a line holding a single ``.``, lines starting with
``.`` being dot-stuffed (RFC 1939 §3, RFC 2449 §5). The dialogue, one state table:

    greeting   +OK -> CAPA;  -ERR -> upgrade_refused
    capa       +OK + list with STLS -> STLS;  list without STLS -> upgrade_not_offered
               -ERR: a pre-RFC 2449 server without CAPA. RFC 2595 §4 defines STLS only as
               a CAPA capability, but a server may still know the command, so we send STLS
               anyway (one round trip) and read a -ERR to it as "not offered", not "refused"
    stls       +OK -> Ready;  -ERR -> upgrade_refused (upgrade_not_offered after a blind STLS)

Anything the server sends after the +OK to STLS is plaintext injected ahead of TLS (RFC 2595
§8, CVE-2011-0411): ``ready()`` turns it into a protocol_error.
"""

from __future__ import annotations

import enum

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols.base import Event, NegotiatorContext, Send, StateTable, TableNegotiator
from tlswatch.protocols.lines import LineBuffer, LineTooLong

CAPA = b"CAPA\r\n"  # RFC 2449 §5
STLS = b"STLS\r\n"  # RFC 2595 §4
#: RFC 2449 §4: a response line is at most 512 octets; allow some slack, stay bounded
MAX_LINE = 4096
#: a capability list is a dozen lines; anything longer is not worth waiting for
MAX_CAPA_LINES = 500


class ResponseError(Exception):
    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


def status(line: bytes) -> tuple[bool, str]:
    """(positive, text) of a ``+OK``/``-ERR`` status line (RFC 1939 §3); the indicators
    are matched case-insensitively, as deployed clients do."""
    upper = line[:4].upper()
    if upper[:3] == b"+OK" and line[3:4] in (b"", b" "):
        return True, line[4:].decode("utf-8", "replace")
    if upper == b"-ERR" and line[4:5] in (b"", b" "):
        return False, line[5:].decode("utf-8", "replace")
    raise ResponseError("not a POP3 status line (RFC 1939 §3: +OK or -ERR)", line[:200])


def _could_start_status(head: bytes) -> bool:
    """Whether ``head`` may begin ``+OK`` or ``-ERR``."""
    upper = head[:4].upper()
    return b"+OK".startswith(upper[:3]) or b"-ERR".startswith(upper)


def _shown(positive: bool, text: str) -> str:
    word = "+OK" if positive else "-ERR"
    return f"{word} {excerpt(text.encode('utf-8', 'replace'), 200)}".rstrip()


class _State(enum.Enum):
    GREETING = "greeting"
    CAPA_SENT = "capa_sent"
    CAPA_LIST = "capa_list"
    STLS_SENT = "stls_sent"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.GREETING: frozenset({_State.CAPA_SENT, _State.DONE}),
        _State.CAPA_SENT: frozenset({_State.CAPA_LIST, _State.STLS_SENT, _State.DONE}),
        _State.CAPA_LIST: frozenset({_State.STLS_SENT, _State.DONE}),
        _State.STLS_SENT: frozenset({_State.DONE}),
    }
)


class POP3Negotiator(TableNegotiator):
    """Client side of POP3 STLS."""

    table = _TABLE
    initial = _State.GREETING
    finished = _State.DONE
    _state: _State

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._lines = LineBuffer(MAX_LINE)
        self._caps: list[str] = []
        self._blind = False  # STLS sent although CAPA failed
        self._info: dict[str, str] = {}

    def _feed(self, data: bytes) -> list[Event]:
        try:
            self._lines.push(data)
            events: list[Event] = []
            while not self.done:
                if self._state is not _State.CAPA_LIST:
                    head = self._lines.pending[:4]
                    if not _could_start_status(head):
                        raise ResponseError(
                            "not a POP3 status line (RFC 1939 §3: +OK or -ERR)",
                            self._lines.pending[:200],
                        )
                line = self._lines.next_line()
                if line is None:
                    break
                events += self._on_line(line)
            return events
        except LineTooLong as exc:
            return self._protocol_error(f"line longer than {MAX_LINE} bytes", exc.tail)
        except ResponseError as exc:
            return self._protocol_error(str(exc), exc.evidence)

    def _protocol_error(self, message: str, evidence: bytes) -> list[Event]:
        waiting = {
            _State.GREETING: "the POP3 greeting",
            _State.CAPA_SENT: "the CAPA response",
            _State.CAPA_LIST: "the end of the CAPA list",
        }.get(self._state, "the STLS response")
        self._move(_State.DONE)
        return self.framing_error(message, evidence, waiting, "pop3s://")

    def _eof(self) -> list[Event]:
        state = self._state
        self._move(_State.DONE)
        partial = self._lines.pending
        if state is _State.GREETING:
            if partial:
                return self.closed("in the middle of its greeting", partial)
            return self.closed("before sending its POP3 greeting")
        if state in (_State.CAPA_SENT, _State.CAPA_LIST):
            return self.closed("without completing its CAPA response", partial)
        return self.closed("without answering STLS", partial)

    def _on_line(self, line: bytes) -> list[Event]:
        if self._state is _State.CAPA_LIST:
            return self._on_capa_line(line)
        positive, text = status(line)
        if self._state is _State.GREETING:
            if not positive:
                self._move(_State.DONE)
                return self.fail(
                    FailureClass.UPGRADE_REFUSED,
                    f"server refused the POP3 session: {_shown(positive, text)}",
                )
            self._info["banner"] = excerpt(text.encode("utf-8", "replace"), 200)
            self._move(_State.CAPA_SENT)
            return [Send(CAPA)]
        if self._state is _State.CAPA_SENT:
            if positive:
                self._move(_State.CAPA_LIST)
                return []
            # RFC 2449 §5: -ERR means no CAPA; try STLS blind (module docstring)
            self._blind = True
            self._info["capabilities"] = "(CAPA not supported)"
            self._move(_State.STLS_SENT)
            return [Send(STLS)]
        return self._on_stls(positive, text)

    def _on_capa_line(self, line: bytes) -> list[Event]:
        if line == b".":
            self._info["capabilities"] = " ".join(self._caps)
            if "STLS" in self._caps:
                self._move(_State.STLS_SENT)
                return [Send(STLS)]
            self._move(_State.DONE)
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                "server does not offer STLS: its capabilities are "
                + (self._info["capabilities"] or "(none)"),
            )
        if len(self._caps) >= MAX_CAPA_LINES:
            raise ResponseError(f"CAPA list longer than {MAX_CAPA_LINES} lines", line[:200])
        if line.startswith(b"."):  # RFC 1939 §3: dot-stuffing
            line = line[1:]
        # RFC 2449 §6: capability names are case-insensitive; keep the name, drop arguments
        name = line.split(b" ", 1)[0].decode("utf-8", "replace").upper()
        if name:
            self._caps.append(name)
        return []

    def _on_stls(self, positive: bool, text: str) -> list[Event]:
        self._move(_State.DONE)
        shown = _shown(positive, text)
        if positive:
            # RFC 2595 §4: the TLS negotiation begins right after the +OK; bytes after its
            # line are plaintext injected ahead of TLS.
            return self.ready(self._lines.pending, {**self._info, "stls_reply": shown})
        if self._blind:
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server supports neither CAPA nor STLS: STLS answered {shown}",
            )
        return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused STLS: {shown}")


__all__ = ["POP3Negotiator", "ResponseError", "status"]
