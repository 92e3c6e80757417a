"""NNTP STARTTLS (RFC 4642 on RFC 3977): the server speaks first.

Responses are one status line, ``xyz text`` (RFC 3977 §3.2); CAPABILITIES answers ``101``
followed by a multi-line data block ended by a line holding a single ``.``, with lines
starting with ``.`` dot-stuffed (§3.1.1). The dialogue:

    greeting   200/201 ready (§5.1.1) -> CAPABILITIES; 400/502 -> upgrade_refused
    caps       101 + list: STARTTLS listed -> STARTTLS
                           MODE-READER listed (a mode-switching server, §5.3: INN's innd)
                             and no STARTTLS yet -> MODE READER, then CAPABILITIES again
                           otherwise -> upgrade_not_offered
               500/501 (an RFC 977 server without CAPABILITIES) -> STARTTLS anyway
    mode       200/201 -> CAPABILITIES again; 502 -> upgrade_not_offered
    starttls   382 -> Ready (RFC 4642 §2.2.2); 580 -> upgrade_refused;
               500/501/502 -> upgrade_not_offered (unknown, or not in this state)

We do not send MODE READER when READER is already advertised: a server that is not
mode-switching must not change its capabilities on MODE READER (RFC 3977 §5.3.2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Send, StateTable
from tlswatch.protocols.lines import LineBuffer, LineTooLong

#: RFC 3977 §3.1: a response line is at most 512 octets; data blocks have no limit, but a
#: capability list is a few hundred bytes
MAX_LINE = 4096
MAX_CAPABILITY_LINES = 500

CAPABILITIES = b"CAPABILITIES\r\n"  # RFC 3977 §5.2
MODE_READER = b"MODE READER\r\n"  # RFC 3977 §5.3
STARTTLS = b"STARTTLS\r\n"  # RFC 4642 §2.2


@dataclass(frozen=True, slots=True)
class Response:
    """One NNTP status line: code and text."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {excerpt(self.text.encode('utf-8', 'replace'), 200)}".rstrip()


class ResponseError(Exception):
    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


def parse_status(line: bytes) -> Response:
    """``xyz text`` (RFC 3977 §3.2): three digits, first 1-5, then a space or the end."""
    if len(line) < 3 or not line[:3].isdigit() or not 0x31 <= line[0] <= 0x35:
        raise ResponseError("not an NNTP status line (RFC 3977 §3.2)", line)
    if line[3:4] not in (b" ", b""):
        raise ResponseError("not an NNTP status line (RFC 3977 §3.2)", line)
    return Response(int(line[:3]), line[4:].decode("utf-8", "replace"))


def _tls_record_prefix(head: bytes) -> bool:
    """Whether ``head`` (under 3 bytes) may still grow into a TLS record header: wait for
    the rest so the error names TLS however the bytes were cut."""
    return len(head) < 3 and 20 <= head[0] <= 24 and (len(head) < 2 or head[1] == 3)


class _State(enum.Enum):
    GREETING = "greeting"
    CAPS_STATUS = "caps_status"
    CAPS_LIST = "caps_list"
    MODE_READER = "mode_reader"
    STARTTLS = "starttls"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.GREETING: frozenset({_State.CAPS_STATUS, _State.DONE}),
        _State.CAPS_STATUS: frozenset({_State.CAPS_LIST, _State.STARTTLS, _State.DONE}),
        _State.CAPS_LIST: frozenset(
            {_State.CAPS_LIST, _State.MODE_READER, _State.STARTTLS, _State.DONE}
        ),
        _State.MODE_READER: frozenset({_State.CAPS_STATUS, _State.DONE}),
        _State.STARTTLS: frozenset({_State.DONE}),
    }
)

_WAITING = {
    _State.GREETING: "the greeting",
    _State.CAPS_STATUS: "the CAPABILITIES response",
    _State.CAPS_LIST: "the end of the capability list",
    _State.MODE_READER: "the MODE READER response",
    _State.STARTTLS: "the STARTTLS response",
}


class NNTPNegotiator(Negotiator):
    """Client side of NNTP STARTTLS (RFC 4642)."""

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._state = _State.GREETING
        self._lines = LineBuffer(max_line=MAX_LINE)
        self._caps: list[str] = []
        self._mode_reader_sent = False
        self._info: dict[str, str] = {}

    def _move(self, dst: _State) -> None:
        self._state = _TABLE.move(self._state, dst)

    def receive_data(self, data: bytes) -> list[Event]:
        if self._state is _State.DONE:
            return []
        if not data:
            waiting = _WAITING[self._state]
            self._move(_State.DONE)
            return self.closed(f"while we waited for {waiting}", self._lines.pending)
        self._lines.push(data)
        events: list[Event] = []
        try:
            while not self.done:
                line = self._lines.next_line()
                if line is None:
                    self._check_head(self._lines.pending)
                    break
                events += self._on_line(line)
        except (LineTooLong, ResponseError) as exc:
            evidence = exc.evidence if isinstance(exc, ResponseError) else exc.tail
            message = str(exc) if isinstance(exc, ResponseError) else "response line too long"
            # Only a greeting may be a TLS record from an implicit-TLS port.
            implicit = "nntps://" if self._state is _State.GREETING else None
            waiting = _WAITING[self._state]
            self._move(_State.DONE)
            return self.framing_error(message, evidence, waiting, implicit)
        return events

    def _check_head(self, head: bytes) -> None:
        """Fail on the first bytes that cannot begin a status line, not after a full line:
        a binary answer (a TLS alert from an implicit-TLS port) may never hold a line break."""
        if self._state is _State.CAPS_LIST or not head or _tls_record_prefix(head):
            return
        for i, b in enumerate(head[:4]):
            if (i == 0 and not 0x31 <= b <= 0x35) or (0 < i < 3 and not 0x30 <= b <= 0x39):
                raise ResponseError("not an NNTP status line (RFC 3977 §3.2)", head[:200])
            if i == 3 and b not in b" \r\n":
                raise ResponseError("not an NNTP status line (RFC 3977 §3.2)", head[:200])

    def _on_line(self, line: bytes) -> list[Event]:
        if self._state is _State.CAPS_LIST:
            return self._on_capability(line)
        response = parse_status(line)
        if self._state is _State.GREETING:
            return self._on_greeting(response)
        if self._state is _State.CAPS_STATUS:
            return self._on_caps_status(response)
        if self._state is _State.MODE_READER:
            return self._on_mode_reader(response)
        return self._on_starttls(response)

    def _on_greeting(self, r: Response) -> list[Event]:
        if r.code in (200, 201):  # RFC 3977 §5.1.1: posting allowed / prohibited
            self._info["banner"] = str(r)
            self._move(_State.CAPS_STATUS)
            return [Send(CAPABILITIES)]
        self._move(_State.DONE)
        if r.code in (400, 502):  # §5.1.1: temporarily / permanently unavailable
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused the NNTP session: {r}")
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected NNTP greeting {r.code} (expected 200 or 201, RFC 3977 §5.1.1)",
            str(r).encode(),
        )

    def _on_caps_status(self, r: Response) -> list[Event]:
        if r.code == 101:  # §5.2.2: capability list follows
            self._caps = []
            self._move(_State.CAPS_LIST)
            return []
        if r.code in (500, 501):
            # An RFC 977 server without CAPABILITIES; some still implement STARTTLS, and its
            # answer is the only way to know.
            self._info["capabilities"] = "(not supported)"
            self._move(_State.STARTTLS)
            return [Send(STARTTLS)]
        self._move(_State.DONE)
        if r.code >= 400:
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused CAPABILITIES: {r}")
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected response {r.code} to CAPABILITIES (expected 101, RFC 3977 §5.2)",
            str(r).encode(),
        )

    def _on_capability(self, line: bytes) -> list[Event]:
        if line == b".":  # §3.1.1: the terminating line
            return self._on_capabilities()
        if line.startswith(b"."):  # dot-stuffing, §3.1.1
            line = line[1:]
        if len(self._caps) >= MAX_CAPABILITY_LINES:
            raise ResponseError(
                f"capability list longer than {MAX_CAPABILITY_LINES} lines", line[:200]
            )
        self._caps.append(line.decode("utf-8", "replace").strip())
        self._move(_State.CAPS_LIST)
        return []

    def _on_capabilities(self) -> list[Event]:
        labels = {c.split(" ", 1)[0].upper() for c in self._caps if c}
        self._info["capabilities"] = " ".join(c.split(" ", 1)[0] for c in self._caps if c)
        if "STARTTLS" in labels:
            early = self._lines.pending
            if early:
                # A reply before STARTTLS was sent (a planted "382") is injection, not an
                # answer (RFC 4642 §2.2.2 says TLS starts after the reply to our command).
                self._move(_State.DONE)
                return self.fail(
                    FailureClass.PROTOCOL_ERROR,
                    "server sent data after its capability list before we sent STARTTLS "
                    "(pipelined answer: possible STARTTLS injection)",
                    early,
                )
            self._move(_State.STARTTLS)
            return [Send(STARTTLS)]
        if "MODE-READER" in labels and not self._mode_reader_sent:
            # A mode-switching server (RFC 3977 §5.3) may offer STARTTLS only to readers.
            self._mode_reader_sent = True
            self._move(_State.MODE_READER)
            return [Send(MODE_READER)]
        self._move(_State.DONE)
        return self.fail(
            FailureClass.UPGRADE_NOT_OFFERED,
            "server's CAPABILITIES do not list STARTTLS"
            + (" (not even after MODE READER)" if self._mode_reader_sent else "")
            + f": {self._info['capabilities'] or '(empty list)'}",
        )

    def _on_mode_reader(self, r: Response) -> list[Event]:
        if r.code in (200, 201):  # §5.3.2: reading allowed (posting or not)
            self._move(_State.CAPS_STATUS)
            return [Send(CAPABILITIES)]
        self._move(_State.DONE)
        return self.fail(
            FailureClass.UPGRADE_NOT_OFFERED,
            f"server's CAPABILITIES do not list STARTTLS and MODE READER failed: {r}",
        )

    def _on_starttls(self, r: Response) -> list[Event]:
        self._move(_State.DONE)
        if r.code == 382:  # RFC 4642 §2.2.2: continue with TLS negotiation
            # TLS starts right after this line; bytes after it are injected plaintext.
            return self.ready(self._lines.pending, {**self._info, "starttls_reply": str(r)})
        if r.code == 580:  # RFC 4642 §2.2.2: can not initiate TLS negotiation
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused STARTTLS: {r}")
        if r.code in (500, 501, 502):  # unknown command / not available in this state
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED, f"server does not offer STARTTLS: {r}"
            )
        if r.code >= 400:
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused STARTTLS: {r}")
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected response {r.code} to STARTTLS (expected 382, RFC 4642 §2.2.2)",
            str(r).encode(),
        )


__all__ = ["NNTPNegotiator", "Response", "ResponseError", "parse_status"]
