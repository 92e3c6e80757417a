"""IMAP STARTTLS (RFC 9051 §6.2.1; RFC 3501 §6.2.1 for IMAP4rev1): the server speaks first.

Responses are lines, tagged (``a1 OK ...``, the end of our command) or untagged (``* ...``,
data), framed with literals (RFC 9051 §4.3) by :mod:`tlswatch.protocols.literals` so a
``{n}`` in untagged data cannot desynchronise us. The dialogue, one state table:

    greeting    * OK [CAPABILITY ...] -> STARTTLS at once when listed, else not offered
                * OK without capabilities -> a1 CAPABILITY
                * PREAUTH -> upgrade_not_offered: the session is already authenticated and
                  STARTTLS is only valid in the not-authenticated state (RFC 9051 §6.2.1)
                * BYE -> upgrade_refused (RFC 9051 §7.1.5)
    capability  * CAPABILITY ... (collected) then a1 OK -> a2 STARTTLS when STARTTLS is
                listed, else upgrade_not_offered; a1 NO/BAD -> protocol_error
    starttls    a2 OK -> Ready; a2 NO/BAD -> upgrade_refused with the server's text

An untagged BYE at any point ends the session (upgrade_refused); other untagged responses
(``* OK`` notices, ``* CAPABILITY`` repeats) are allowed anywhere and skipped. Anything the
server sends after the tagged OK to STARTTLS is plaintext injected ahead of TLS (RFC 9051
§11.1, CVE-2011-0411): ``ready()`` turns it into a protocol_error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols.base import Event, NegotiatorContext, Send, StateTable, TableNegotiator
from tlswatch.protocols.literals import FramingError, LiteralLineReader, LogicalLine

CAPABILITY_TAG = "a1"
STARTTLS_TAG = "a2"
CAPABILITY = f"{CAPABILITY_TAG} CAPABILITY\r\n".encode()  # RFC 9051 §6.1.1
STARTTLS = f"{STARTTLS_TAG} STARTTLS\r\n".encode()  # RFC 9051 §6.2.1

#: RFC 9051 §9 atom-specials (plus SP and CTL): a tag is made of anything else ("]" too)
_NOT_TAG = frozenset(b'(){%*"\\ ') | frozenset(range(0x20)) | {0x7F}
STATUS = frozenset({"OK", "NO", "BAD", "PREAUTH", "BYE"})


@dataclass(frozen=True, slots=True)
class Response:
    """One IMAP response line (RFC 9051 §7), from its text before any literal.

    ``tag`` is ``*`` (untagged), ``+`` (continuation request) or the command tag; ``name``
    the upper-cased response name (OK, NO, BAD, PREAUTH, BYE, CAPABILITY, ...; for
    ``* 3 EXISTS`` it is EXISTS); ``code`` the bracketed response code of a status response;
    ``text`` the rest.
    """

    tag: str
    name: str
    code: str | None
    text: str

    def __str__(self) -> str:
        code = f"[{self.code}] " if self.code is not None else ""
        body = excerpt(f"{self.name} {code}{self.text}".strip().encode("utf-8", "replace"), 200)
        return f"{self.tag} {body}"


class ResponseError(Exception):
    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


def _could_start_response(head: bytes) -> bool:
    """``*``, ``+`` or a tag character: what an IMAP response line may begin with."""
    return not head or head[0] in b"*+" or (head[0] not in _NOT_TAG and head[0] < 0x80)


def parse_response(line: LogicalLine) -> Response:
    """Split a response line into tag, name, response code and text (RFC 9051 §7)."""
    first = line.first.decode("utf-8", "replace")
    tag, _, rest = first.partition(" ")
    if not tag or not _could_start_response(tag.encode()[:1]):
        raise ResponseError("not an IMAP response (RFC 9051 §7)", line.raw[:200])
    if tag == "+":
        return Response("+", "", None, rest)
    name, _, after = rest.partition(" ")
    if tag == "*" and name.isdigit():  # "* 23 EXISTS": a message number comes first
        name, _, after = after.partition(" ")
    name = name.upper()
    if not name:
        raise ResponseError("IMAP response without a name (RFC 9051 §7)", line.raw[:200])
    code = None
    if name in STATUS and after.startswith("["):
        # resp-text-code: everything up to the first "]" (RFC 9051 §7.1)
        inside, bracket, text = after[1:].partition("]")
        if not bracket:
            raise ResponseError("unterminated response code (RFC 9051 §7.1)", line.raw[:200])
        code, after = inside, text.lstrip(" ")
    return Response(tag, name, code, after)


def capability_list(text: str) -> list[str]:
    """The capability names of a CAPABILITY response or response code, as sent
    (RFC 9051 §7.2.2: ``capability *(SP capability)``)."""
    return text.split()


class _State(enum.Enum):
    GREETING = "greeting"
    CAPABILITY_SENT = "capability_sent"
    STARTTLS_SENT = "starttls_sent"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.GREETING: frozenset({_State.CAPABILITY_SENT, _State.STARTTLS_SENT, _State.DONE}),
        _State.CAPABILITY_SENT: frozenset({_State.STARTTLS_SENT, _State.DONE}),
        _State.STARTTLS_SENT: frozenset({_State.DONE}),
    }
)


class IMAPNegotiator(TableNegotiator):
    """Client side of IMAP STARTTLS."""

    table = _TABLE
    initial = _State.GREETING
    finished = _State.DONE
    _state: _State

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._reader = LiteralLineReader(max_total=self.max_buffer)
        self._info: dict[str, str] = {}
        self._caps: list[str] = []

    def _feed(self, data: bytes) -> list[Event]:
        try:
            self._reader.feed(data)
            events: list[Event] = []
            for line in self._reader.lines(
                _could_start_response, "not an IMAP response (RFC 9051 §7)"
            ):
                events += self._on_response(parse_response(line), line)
                if self.done:
                    break
            return events
        except (ResponseError, FramingError) as exc:
            waiting = {
                _State.GREETING: "the IMAP greeting",
                _State.CAPABILITY_SENT: "the CAPABILITY response",
            }.get(self._state, "the STARTTLS response")
            self._move(_State.DONE)
            return self.framing_error(str(exc), exc.evidence, waiting, "imaps://")

    def _eof(self) -> list[Event]:
        state = self._state
        self._move(_State.DONE)
        partial = self._reader.pending
        if state is _State.GREETING:
            if self._reader.in_line:
                return self.closed("in the middle of its greeting", partial)
            return self.closed("before sending its IMAP greeting")
        if state is _State.CAPABILITY_SENT:
            return self.closed("without completing its CAPABILITY response", partial)
        return self.closed("without answering STARTTLS", partial)

    def _on_response(self, r: Response, line: LogicalLine) -> list[Event]:
        if r.tag == "+":
            self._move(_State.DONE)
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                "unexpected continuation request: we sent no literal (RFC 9051 §7.5)",
                line.raw,
            )
        if r.tag == "*" and r.name == "BYE":  # RFC 9051 §7.1.5: the server is closing
            greeting = self._state is _State.GREETING
            self._move(_State.DONE)
            if greeting:
                return self.fail(
                    FailureClass.UPGRADE_REFUSED, f"server refused the IMAP session: {r}"
                )
            return self.fail(
                FailureClass.UPGRADE_REFUSED, f"server closed the IMAP connection: {r}"
            )
        if self._state is _State.GREETING:
            return self._on_greeting(r, line)
        if r.tag == "*":
            if r.name == "CAPABILITY":
                self._caps = capability_list(r.text)
            elif r.name == "OK" and r.code and r.code.upper().startswith("CAPABILITY "):
                self._caps = capability_list(r.code[len("CAPABILITY ") :])
            return []  # other untagged data may come at any time (RFC 9051 §7)
        if self._state is _State.CAPABILITY_SENT:
            return self._on_capability_done(r, line)
        return self._on_starttls(r, line)

    def _on_greeting(self, r: Response, line: LogicalLine) -> list[Event]:
        if r.tag != "*" or r.name not in ("OK", "PREAUTH"):
            self._move(_State.DONE)
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                "not an IMAP greeting (expected * OK, * PREAUTH or * BYE, RFC 9051 §7.1)",
                line.raw,
            )
        self._info["banner"] = excerpt(r.text.encode("utf-8", "replace"), 200)
        if r.name == "PREAUTH":
            self._move(_State.DONE)
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server greeted with PREAUTH ({r}): the session is already authenticated, "
                "and STARTTLS is only valid before authentication (RFC 9051 §6.2.1)",
            )
        if r.code and r.code.upper().startswith("CAPABILITY "):
            # RFC 9051 §7.1: a CAPABILITY response code in the greeting saves the round trip
            self._caps = capability_list(r.code[len("CAPABILITY ") :])
            return self._decide()
        self._move(_State.CAPABILITY_SENT)
        return [Send(CAPABILITY)]

    def _on_capability_done(self, r: Response, line: LogicalLine) -> list[Event]:
        if r.tag != CAPABILITY_TAG:
            self._move(_State.DONE)
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"response with tag {r.tag!r} while waiting for {CAPABILITY_TAG} (RFC 9051 §2.2.1)",
                line.raw,
            )
        if r.name == "OK":
            return self._decide()
        self._move(_State.DONE)
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"server rejected CAPABILITY, a command every IMAP server has (RFC 9051 §6.1.1): {r}",
            line.raw,
        )

    def _decide(self) -> list[Event]:
        self._info["capabilities"] = " ".join(self._caps)
        if any(c.upper() == "STARTTLS" for c in self._caps):  # case-insensitive (§9)
            self._move(_State.STARTTLS_SENT)
            return [Send(STARTTLS)]
        self._move(_State.DONE)
        return self.fail(
            FailureClass.UPGRADE_NOT_OFFERED,
            "server does not offer STARTTLS: its capabilities are "
            + (self._info["capabilities"] or "(none)"),
        )

    def _on_starttls(self, r: Response, line: LogicalLine) -> list[Event]:
        self._move(_State.DONE)
        if r.tag != STARTTLS_TAG:
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"response with tag {r.tag!r} while waiting for {STARTTLS_TAG} (RFC 9051 §2.2.1)",
                line.raw,
            )
        if r.name == "OK":
            # RFC 9051 §6.2.1: the TLS negotiation begins right after the tagged OK; bytes
            # after its CRLF are plaintext injected ahead of TLS.
            return self.ready(self._reader.pending, {**self._info, "starttls_reply": str(r)})
        if r.name in ("NO", "BAD"):
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused STARTTLS: {r}")
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected tagged response {r.name} to STARTTLS (RFC 9051 §7.1)",
            line.raw,
        )


__all__ = ["IMAPNegotiator", "Response", "ResponseError", "capability_list", "parse_response"]
