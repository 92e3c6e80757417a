"""ManageSieve STARTTLS (RFC 5804 §2.2): the server speaks first, with its capabilities.

The greeting is a capability list (RFC 5804 §1.7): one line per capability, a string (quoted
or literal) with an optional string value, ended by a response line ``OK``/``NO``/``BYE``
with an optional response code in parentheses and an optional human-readable string
(§1.3, §4 ``response-oknobye``). Literals ``{n}``/``{n+}`` are framed by
:mod:`tlswatch.protocols.literals`. The dialogue, one state table:

    greeting   capability lines then OK -> STARTTLS when "STARTTLS" is listed, else
               upgrade_not_offered;  NO/BYE -> upgrade_refused
    starttls   OK -> Ready;  NO/BYE -> upgrade_refused with the server's text

Anything the server sends after the OK to STARTTLS is plaintext injected ahead of TLS
(RFC 5804 §2.2 has the server re-send its capabilities only *after* the handshake):
``ready()`` turns it into a protocol_error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols.base import Event, NegotiatorContext, Send, StateTable, TableNegotiator
from tlswatch.protocols.literals import FramingError, LiteralLineReader, LogicalLine, literal_size

STARTTLS = b"STARTTLS\r\n"  # RFC 5804 §2.2
MAX_CAPABILITIES = 500
RESPONSES = frozenset({"OK", "NO", "BYE"})


class ResponseError(Exception):
    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass(frozen=True, slots=True)
class Token:
    """``kind`` is "string" (quoted or literal, unescaped), "atom" or "code" (the text
    inside a response code's parentheses, kept raw)."""

    kind: str
    value: bytes


def tokenize(line: LogicalLine) -> list[Token]:
    """The tokens of one ManageSieve line (RFC 5804 §4 grammar, the parts a client reads)."""
    tokens: list[Token] = []
    parts = line.parts
    for i in range(0, len(parts), 2):
        text = parts[i]
        has_literal = i + 1 < len(parts)
        if has_literal:
            size = literal_size(text)
            assert size is not None  # the reader only splits at literal markers
            text = text[: text.rindex(b"{")]
        tokens += _tokenize_text(text, line)
        if has_literal:
            tokens.append(Token("string", parts[i + 1]))
    return tokens


def _tokenize_text(text: bytes, line: LogicalLine) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == 0x20:
            pos += 1
        elif c == 0x22:  # quoted string: "\" escapes '"' and '\' (RFC 5804 §4 QUOTED-CHAR)
            out = bytearray()
            pos += 1
            while True:
                if pos >= n:
                    raise ResponseError("unterminated quoted string (RFC 5804 §4)", line.raw)
                c = text[pos]
                if c == 0x5C and pos + 1 < n:
                    out.append(text[pos + 1])
                    pos += 2
                elif c == 0x22:
                    pos += 1
                    break
                else:
                    out.append(c)
                    pos += 1
            tokens.append(Token("string", bytes(out)))
        elif c == 0x28:  # "(" response code ")": may hold strings with ")" in them
            depth, start, quoted = 0, pos + 1, False
            while pos < n:
                c = text[pos]
                if quoted and c == 0x5C:
                    pos += 2
                    continue
                if c == 0x22:
                    quoted = not quoted
                elif not quoted and c == 0x28:
                    depth += 1
                elif not quoted and c == 0x29:
                    depth -= 1
                    if depth == 0:
                        break
                pos += 1
            if pos >= n:
                raise ResponseError("unterminated response code (RFC 5804 §4)", line.raw)
            tokens.append(Token("code", text[start:pos]))
            pos += 1
        elif 0x21 <= c < 0x7F:
            start = pos
            while pos < n and 0x21 <= text[pos] < 0x7F and text[pos] not in b'"(':
                pos += 1
            tokens.append(Token("atom", text[start:pos]))
        else:
            raise ResponseError("unexpected byte in a ManageSieve line (RFC 5804 §4)", line.raw)
    return tokens


@dataclass(frozen=True, slots=True)
class Response:
    """A response line: OK, NO or BYE, its response code and its human-readable text."""

    name: str
    code: str | None
    text: str

    def __str__(self) -> str:
        code = f" ({self.code})" if self.code else ""
        text = f' "{self.text}"' if self.text else ""
        return excerpt(f"{self.name}{code}{text}".encode("utf-8", "replace"), 200)


def as_response(tokens: list[Token]) -> Response | None:
    """The response these tokens make, or None when they are a capability line."""
    if not tokens or tokens[0].kind != "atom":
        return None
    name = tokens[0].value.decode("ascii", "replace").upper()
    if name not in RESPONSES:
        return None
    code = text = None
    for t in tokens[1:]:
        if t.kind == "code" and code is None and text is None:
            code = t.value.decode("utf-8", "replace")
        elif t.kind == "string" and text is None:
            text = t.value.decode("utf-8", "replace")
        else:
            return None
    return Response(name, code, text or "")


def _could_start_line(head: bytes) -> bool:
    """A capability line starts with a string (``"`` or ``{``), a response with a letter."""
    return not head or head[0] in b'"{' or (chr(head[0]).isalpha() and head[0] < 0x80)


class _State(enum.Enum):
    GREETING = "greeting"
    STARTTLS_SENT = "starttls_sent"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.GREETING: frozenset({_State.STARTTLS_SENT, _State.DONE}),
        _State.STARTTLS_SENT: frozenset({_State.DONE}),
    }
)


class SieveNegotiator(TableNegotiator):
    """Client side of ManageSieve STARTTLS."""

    table = _TABLE
    initial = _State.GREETING
    finished = _State.DONE
    _state: _State

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._reader = LiteralLineReader(max_total=self.max_buffer)
        self._caps: dict[str, str] = {}
        self._info: dict[str, str] = {}

    def _feed(self, data: bytes) -> list[Event]:
        try:
            self._reader.feed(data)
            events: list[Event] = []
            for line in self._reader.lines(
                _could_start_line, "not a ManageSieve response (RFC 5804 §4)"
            ):
                events += self._on_line(line)
                if self.done:
                    break
            return events
        except (ResponseError, FramingError) as exc:
            waiting = (
                "the ManageSieve greeting"
                if self._state is _State.GREETING
                else "the STARTTLS response"
            )
            self._move(_State.DONE)
            return self.framing_error(str(exc), exc.evidence, waiting, "tls://")

    def _eof(self) -> list[Event]:
        state = self._state
        self._move(_State.DONE)
        partial = self._reader.pending
        if state is _State.GREETING:
            if self._caps or self._reader.in_line:
                return self.closed("in the middle of its capability greeting", partial)
            return self.closed("before sending its ManageSieve greeting")
        return self.closed("without answering STARTTLS", partial)

    def _on_line(self, line: LogicalLine) -> list[Event]:
        if not line.first and len(line.parts) == 1:
            raise ResponseError("empty line (RFC 5804 §4)", line.raw)
        tokens = tokenize(line)
        response = as_response(tokens)
        if self._state is _State.STARTTLS_SENT:
            if response is None:
                raise ResponseError(
                    "expected OK, NO or BYE in answer to STARTTLS (RFC 5804 §2.2)", line.raw
                )
            return self._on_starttls(response)
        if response is None:
            return self._on_capability(tokens, line)
        return self._on_greeting_end(response)

    def _on_capability(self, tokens: list[Token], line: LogicalLine) -> list[Event]:
        # RFC 5804 §1.7: single-capability = capability-name [SP string] CRLF
        if tokens[0].kind != "string" or len(tokens) > 2 or any(t.kind != "string" for t in tokens):
            raise ResponseError(
                "not a capability line (RFC 5804 §1.7: a string and an optional value)",
                line.raw,
            )
        if len(self._caps) >= MAX_CAPABILITIES:
            raise ResponseError(f"more than {MAX_CAPABILITIES} capabilities", line.raw)
        name = tokens[0].value.decode("utf-8", "replace").upper()  # case-insensitive (§1.7)
        value = tokens[1].value.decode("utf-8", "replace") if len(tokens) == 2 else ""
        self._caps.setdefault(name, value)
        return []

    def _on_greeting_end(self, r: Response) -> list[Event]:
        self._info["capabilities"] = " ".join(self._caps)
        if "IMPLEMENTATION" in self._caps:
            self._info["banner"] = excerpt(self._caps["IMPLEMENTATION"].encode(), 200)
        if r.name != "OK":
            self._move(_State.DONE)
            return self.fail(
                FailureClass.UPGRADE_REFUSED, f"server refused the ManageSieve session: {r}"
            )
        if "STARTTLS" in self._caps:
            self._move(_State.STARTTLS_SENT)
            return [Send(STARTTLS)]
        self._move(_State.DONE)
        return self.fail(
            FailureClass.UPGRADE_NOT_OFFERED,
            "server does not offer STARTTLS: its capabilities are "
            + (self._info["capabilities"] or "(none)"),
        )

    def _on_starttls(self, r: Response) -> list[Event]:
        self._move(_State.DONE)
        if r.name == "OK":
            # RFC 5804 §2.2: the TLS negotiation begins right after the OK line.
            return self.ready(self._reader.pending, {**self._info, "starttls_reply": str(r)})
        return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused STARTTLS: {r}")


__all__ = ["Response", "ResponseError", "SieveNegotiator", "Token", "as_response", "tokenize"]
