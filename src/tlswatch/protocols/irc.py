"""IRC STARTTLS (the IRCv3 ``tls`` extension) on a plaintext IRC port.

The IRCv3 ``tls`` capability says a client sends ``STARTTLS`` before registering; the server
answers numeric 670 RPL_STARTTLS and the TLS handshake starts right after that line, or 691
ERR_STARTTLS when it cannot. A server that supports the extension lists ``tls`` in
``CAP LS`` (IRCv3 capability negotiation).

We send ``CAP LS 302`` and ``STARTTLS`` together at connect, because servers differ in what
they say to an unregistered client: InspIRCd stays silent on commands it does not know
(CAP too, without its cap module) until registration, so waiting for a CAP reply before
sending STARTTLS could wait forever. The server handles the two commands in order, so its
CAP LS reply (if any) comes before its STARTTLS answer:

    CAP * LS [*] :caps   collected (``*`` marks a continuation, CAP 302); a complete list
                         without ``tls`` -> upgrade_not_offered (the server does not
                         implement the extension)
    670                  -> Ready (nothing may follow it in plaintext)
    691                  -> upgrade_refused
    421 STARTTLS         -> upgrade_not_offered (ERR_UNKNOWNCOMMAND, RFC 2812 §5.2)
    451 ... STARTTLS     -> upgrade_not_offered (ERR_NOTREGISTERED: the command exists only
                            for registered clients, so not as the tls extension means it)
    ERROR, 465           -> upgrade_refused (the server drops or bans us)
    PING                 -> PONG (RFC 2812 §3.7.2); NOTICE and other numerics: ignored

Messages are framed as RFC 1459 §2.3.1 (and the IRCv3 message-tags extension) say:
``[@tags] [:prefix] command params [:trailing]`` ended by CR LF; 512 bytes for the message
without tags plus 8191 for the tags.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Send, StateTable
from tlswatch.protocols.lines import LineBuffer, LineTooLong
from tlswatch.protocols.sniff import tls_hint

#: RFC 1459 §2.3: 512 bytes with CR LF; IRCv3 message-tags: up to 8191 more for tags
MAX_LINE = 512 + 8191
#: everything a server may say before its STARTTLS answer (NOTICEs, CAP LS lines)
MAX_DIALOGUE = 64 * 1024
MAX_PARAMS = 15  # RFC 1459 §2.3.1

OPENING = b"CAP LS 302\r\nSTARTTLS\r\n"  # IRCv3 CAP 302, IRCv3 tls extension

RPL_STARTTLS = "670"
ERR_STARTTLS = "691"
ERR_UNKNOWNCOMMAND = "421"
ERR_NOTREGISTERED = "451"
ERR_YOUREBANNEDCREEP = "465"


@dataclass(frozen=True, slots=True)
class Message:
    """One IRC message (tags are parsed past, not kept)."""

    prefix: str
    command: str
    params: tuple[str, ...]

    @property
    def trailing(self) -> str:
        return self.params[-1] if self.params else ""

    def __str__(self) -> str:
        text = " ".join([self.command, *self.params])
        return excerpt(text.encode("utf-8", "replace"), 200)


class MessageError(Exception):
    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


def parse_message(line: bytes) -> Message | None:
    """Parse one line (without CR LF); None for an empty line, which RFC 1459 §2.3.1 says
    to ignore. Raises MessageError when the line is not an IRC message."""
    text = line.decode("utf-8", "replace")
    if not text.strip(" "):
        return None
    if "\x00" in text:
        raise MessageError("NUL byte in an IRC message (RFC 1459 §2.3.1)", line)
    rest = text
    if rest.startswith("@"):  # IRCv3 message-tags
        _, _, rest = rest.partition(" ")
        rest = rest.lstrip(" ")
    prefix = ""
    if rest.startswith(":"):
        prefix, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    params: list[str] = []
    command, _, rest = rest.partition(" ")
    if not (command.isascii() and (command.isalpha() or (len(command) == 3 and command.isdigit()))):
        raise MessageError("not an IRC message (RFC 1459 §2.3.1)", line)
    while rest:
        rest = rest.lstrip(" ")
        if not rest:
            break
        if rest.startswith(":") or len(params) == MAX_PARAMS - 1:
            params.append(rest[1:] if rest.startswith(":") else rest)
            break
        param, _, rest = rest.partition(" ")
        params.append(param)
    return Message(prefix, command.upper(), tuple(params))


class _State(enum.Enum):
    WAITING = "waiting"  # CAP LS + STARTTLS sent, reading the answers
    DONE = "done"


_TABLE: StateTable[_State] = StateTable({_State.WAITING: frozenset({_State.DONE})})


class IRCNegotiator(Negotiator):
    """Client side of IRCv3 STARTTLS."""

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._state = _State.WAITING
        self._lines = LineBuffer(max_line=MAX_LINE)
        self._received = 0
        self._caps: list[str] = []
        self._info: dict[str, str] = {"cap_tls": "unknown"}

    def _move(self, dst: _State) -> None:
        self._state = _TABLE.move(self._state, dst)

    def initiate(self) -> list[Event]:
        return [Send(OPENING)]

    def receive_data(self, data: bytes) -> list[Event]:
        if self._state is _State.DONE:
            return []
        if not data:
            self._move(_State.DONE)
            return self.closed("before answering STARTTLS", self._lines.pending)
        self._received += len(data)
        self._lines.push(data)
        events: list[Event] = []
        try:
            while not self.done:
                line = self._lines.next_line()
                if line is None:
                    self._check_head(self._lines.pending)
                    break
                message = parse_message(line)
                if message is not None:
                    events += self._on_message(message)
            if not self.done and self._received > MAX_DIALOGUE:
                raise MessageError(
                    f"more than {MAX_DIALOGUE} bytes without an answer to STARTTLS",
                    self._lines.pending,
                )
        except (LineTooLong, MessageError) as exc:
            evidence = exc.evidence if isinstance(exc, MessageError) else exc.tail
            message_text = str(exc) if isinstance(exc, MessageError) else "IRC line too long"
            self._move(_State.DONE)
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"{message_text} while waiting for the STARTTLS answer"
                + tls_hint(evidence, "ircs://"),
                evidence,
            )
        return events

    @staticmethod
    def _check_head(head: bytes) -> None:
        """A TLS record (an implicit-TLS port answering our plaintext) holds no line break:
        recognise it on its first bytes rather than wait for one."""
        if tls_hint(head, "ircs://"):
            raise MessageError("not an IRC message (RFC 1459 §2.3.1)", head[:200])

    def _on_message(self, m: Message) -> list[Event]:
        if m.command == "PING":  # RFC 2812 §3.7.2: answer, or the server drops us
            return [Send(b"PONG :" + m.trailing.encode("utf-8", "replace") + b"\r\n")]
        if m.command == "CAP" and len(m.params) >= 3 and m.params[1].upper() == "LS":
            return self._on_cap_ls(m)
        if m.command == RPL_STARTTLS:
            self._move(_State.DONE)
            info = {**self._info, "server": m.prefix, "starttls_reply": str(m)}
            # IRCv3 tls: the handshake starts right after this line; anything after it is
            # plaintext injected ahead of TLS.
            return self.ready(self._lines.pending, info)
        if m.command == ERR_STARTTLS:
            self._move(_State.DONE)
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused STARTTLS: {m}")
        if m.command in (ERR_UNKNOWNCOMMAND, ERR_NOTREGISTERED) and self._about_starttls(m):
            self._move(_State.DONE)
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED, f"server does not offer STARTTLS: {m}"
            )
        if m.command == "ERROR":  # RFC 2812 §3.7.4: the server closes the link
            self._move(_State.DONE)
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server closed the link: {m.trailing}")
        if m.command == ERR_YOUREBANNEDCREEP:
            self._move(_State.DONE)
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server bans this client: {m}")
        return []  # NOTICE AUTH, 020 "please wait", 421/451 about CAP, ...

    @staticmethod
    def _about_starttls(m: Message) -> bool:
        # 421 <client> <command> :Unknown command; 451 <client> [<command>] :Not registered
        return any(p.upper() == "STARTTLS" for p in m.params[:-1]) or (
            m.command == ERR_NOTREGISTERED and "STARTTLS" in m.trailing.upper()
        )

    def _on_cap_ls(self, m: Message) -> list[Event]:
        # CAP <client> LS [*] :<caps>; '*' before the list marks more lines (CAP 302)
        more = len(m.params) >= 4 and m.params[2] == "*"
        if len(self._caps) + len(m.trailing.split()) > 1000:
            raise MessageError("CAP LS list too long", str(m).encode())
        self._caps += m.trailing.split()
        if more:
            return []
        names = {c.partition("=")[0] for c in self._caps}
        self._info["caps"] = " ".join(sorted(names))
        if "tls" in names:
            self._info["cap_tls"] = "yes"
            return []
        self._move(_State.DONE)
        return self.fail(
            FailureClass.UPGRADE_NOT_OFFERED,
            "server's CAP LS does not list the tls capability (no STARTTLS): "
            + (self._info["caps"] or "(no capabilities)"),
        )


__all__ = ["IRCNegotiator", "Message", "MessageError", "parse_message"]
