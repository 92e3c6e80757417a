"""SMTP and LMTP STARTTLS (RFC 3207 on RFC 5321; LMTP: RFC 2033): the server speaks first.

Replies are framed as RFC 5321 §4.2 says::

    Reply-line = *( Reply-code "-" [ textstring ] CRLF )
                    Reply-code [ SP textstring ] CRLF

every line of one reply carries the same code (§4.2.1), ``xyz-`` continues and ``xyz `` (or
the bare code) ends it. The dialogue, one state table:

    greeting  220 -> EHLO (LMTP: LHLO, RFC 2033 §4.1)
              554 "no SMTP service here", 421, other 4xx/5xx -> upgrade_refused
    hello     250 listing STARTTLS (RFC 3207 §4) -> STARTTLS; 250 without it -> not offered
              5xx: the server does not speak ESMTP; without EHLO there is no STARTTLS, so we
              never fall back to HELO -> upgrade_not_offered;  4xx -> upgrade_refused
    starttls  220 -> Ready (RFC 3207 §4); 500/502/504 (command unknown after all) -> not
              offered; 454 and every other 4xx/5xx -> upgrade_refused

Anything the server sends after the 220 to STARTTLS is plaintext injected ahead of TLS
(RFC 3207 §6, CVE-2011-0411): ``ready()`` turns it into a protocol_error.
"""

from __future__ import annotations

import enum
import platform
import re
from dataclasses import dataclass
from functools import cache

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Send, StateTable
from tlswatch.protocols.lines import MAX_LINE
from tlswatch.protocols.sniff import tls_hint

STARTTLS = b"STARTTLS\r\n"  # RFC 3207 §4: no parameters
#: lines one reply may have: an EHLO reply lists a dozen or two extensions, a greeting
#: banner a few lines; anything longer is not a mail server worth waiting for
MAX_REPLY_LINES = 500
#: name sent in EHLO when neither ``ehlo=`` nor a fully qualified local host name is known
#: (RFC 2606 reserves .invalid: it cannot belong to anyone)
FALLBACK_EHLO = "tlswatch.invalid"

#: replies meaning "this command does not exist here" (RFC 5321 §4.2.2/§4.2.4: 500 syntax
#: error / command unrecognised, 502 command not implemented, 504 parameter not implemented)
UNKNOWN_COMMAND = frozenset({500, 502, 504})

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
#: RFC 5321 §4.1.3 address literals: [192.0.2.1] or [IPv6:2001:db8::1]
_ADDRESS_LITERAL = re.compile(r"^\[(\d{1,3}(\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]{2,45})\]$")


def valid_ehlo_name(name: str) -> bool:
    """Whether ``name`` may follow EHLO: a domain or an address literal (RFC 5321 §4.1.1.1).

    This is also what keeps a CR/LF (a second, injected command) out of the EHLO line."""
    return bool(_DOMAIN.match(name) or _ADDRESS_LITERAL.match(name))


@cache
def default_ehlo_name() -> str:
    """The local host name when it is fully qualified (RFC 5321 §4.1.4 asks for the
    client's FQDN), else :data:`FALLBACK_EHLO`: a bare "vm" or "localhost" says nothing
    and some servers reject it."""
    node = platform.node().rstrip(".")
    if "." in node and valid_ehlo_name(node) and not node.lower().startswith("localhost"):
        return node.lower()
    return FALLBACK_EHLO


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete SMTP reply: its code and its lines' text (code and separator removed)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        joined = " ".join(line.strip() for line in self.lines if line.strip())
        return excerpt(joined.encode("utf-8", "replace"), 200)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class ReplyError(Exception):
    """The bytes are not SMTP replies; carries the offending bytes."""

    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


def _could_start_line(head: bytes | bytearray) -> bool:
    """Whether ``head`` may begin a reply line: ``xyz``, ``xyz-`` or ``xyz `` with x in 2-5
    (RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39; the middle digit is accepted up to
    9, as some servers stray there)."""
    for i, b in enumerate(head[:4]):
        if i == 0 and not 0x32 <= b <= 0x35:
            return False
        if 0 < i < 3 and not 0x30 <= b <= 0x39:
            return False
        if i == 3 and b not in b" -\r":
            return False
    return True


class ReplyParser:
    """Incremental RFC 5321 §4.2 reply framing, one reply at a time.

    Replies are taken out one by one (:meth:`next_reply`) so that what follows a reply stays
    raw: after the go-ahead those bytes are the injection evidence. Lines end at LF (CRLF,
    or a bare LF as every real client accepts); one line, the lines of one reply and the
    unconsumed buffer are capped. Bytes that cannot begin a reply fail as soon as they
    arrive, without waiting for a line break a binary answer may never contain.
    """

    def __init__(self, max_bytes: int, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max_bytes = max_bytes
        self._max_line = max_line
        self._code: int | None = None  # code of the open multi-line reply
        self._open: list[bytes] = []

    @property
    def pending(self) -> bytes:
        """Bytes received after the last line taken out."""
        return bytes(self._buf)

    @property
    def in_reply(self) -> bool:
        """True while a reply has started but not ended."""
        return self._code is not None or bool(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > self._max_bytes:
            raise ReplyError(
                f"more than {self._max_bytes} bytes without a complete reply",
                bytes(self._buf[:200]),
            )

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        while True:
            nl = self._buf.find(b"\n")
            if not _could_start_line(self._buf[: 4 if nl < 0 else nl]):
                raise ReplyError("not an SMTP reply (RFC 5321 §4.2)", self._evidence(nl))
            if nl < 0:
                if len(self._buf) > self._max_line:
                    raise ReplyError(
                        f"reply line longer than {self._max_line} bytes", bytes(self._buf[:200])
                    )
                return None
            line = bytes(self._buf[: nl - 1 if nl and self._buf[nl - 1] == 0x0D else nl])
            if len(line) > self._max_line:
                raise ReplyError(f"reply line longer than {self._max_line} bytes", line[:200])
            del self._buf[: nl + 1]
            reply = self._line(line)
            if reply is not None:
                return reply

    def _evidence(self, nl: int) -> bytes:
        head = b"\r\n".join(self._open[-2:])
        line = bytes(self._buf[: nl if nl >= 0 else 200])
        return (head + b"\r\n" + line if head else line)[:200]

    def _line(self, line: bytes) -> Reply | None:
        if len(line) < 3 or line[3:4] not in (b" ", b"-", b""):
            raise ReplyError("not an SMTP reply (RFC 5321 §4.2)", line)
        code = int(line[:3])
        if self._code is not None and code != self._code:
            # RFC 5321 §4.2.1: every line of a multi-line reply carries the same code.
            raise ReplyError(
                f"reply code changed from {self._code} to {code} inside a multi-line reply "
                "(RFC 5321 §4.2.1)",
                b"\r\n".join([*self._open[-2:], line]),
            )
        if line[3:4] == b"-":
            if len(self._open) >= MAX_REPLY_LINES:
                raise ReplyError(
                    f"multi-line reply longer than {MAX_REPLY_LINES} lines",
                    b"\r\n".join(self._open[:3]),
                )
            self._code = code
            self._open.append(line)
            return None
        texts = tuple(_decode(x[4:]) for x in [*self._open, line])
        self._code = None
        self._open = []
        return Reply(code, texts)


def _decode(text: bytes) -> str:
    return text.decode("utf-8", "replace")


def capabilities(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) and their parameters (RFC 5321 §4.1.1.1: the first line is
    the server's domain and greeting, each further line ``ehlo-keyword *(SP ehlo-param)``)."""
    caps: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            caps.setdefault(keyword.upper(), params.strip())
    return caps


class _State(enum.Enum):
    GREETING = "greeting"
    HELLO_SENT = "hello_sent"
    STARTTLS_SENT = "starttls_sent"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.GREETING: frozenset({_State.HELLO_SENT, _State.DONE}),
        _State.HELLO_SENT: frozenset({_State.STARTTLS_SENT, _State.DONE}),
        _State.STARTTLS_SENT: frozenset({_State.DONE}),
    }
)


class SMTPNegotiator(Negotiator):
    """Client side of SMTP STARTTLS (schemes ``smtp`` and ``submission``)."""

    #: the greeting command: EHLO (RFC 5321 §4.1.1.1); LMTP uses LHLO
    hello = "EHLO"
    protocol = "SMTP"
    #: what to use instead when the port turns out to speak TLS at once
    implicit_scheme = "smtps://"

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._state = _State.GREETING
        self._parser = ReplyParser(self.max_buffer)
        self._info: dict[str, str] = {}
        #: the 5xx reply that rejected EHLO/LHLO, if one did (auto:// tries LHLO after a
        #: rejected EHLO: RFC 2033 §4.1 has LMTP servers refuse EHLO, 500 recommended)
        self.hello_rejected: Reply | None = None
        name = ctx.options.get("ehlo", "")
        # targets.py validates ehlo=; this keeps a bad name from reaching the wire anyway.
        self.hello_name = name if name and valid_ehlo_name(name) else default_ehlo_name()

    def _move(self, dst: _State) -> None:
        self._state = _TABLE.move(self._state, dst)

    def receive_data(self, data: bytes) -> list[Event]:
        if self._state is _State.DONE:
            return []
        if not data:
            return self._eof()
        try:
            self._parser.feed(data)
            events: list[Event] = []
            while not self.done:
                reply = self._parser.next_reply()
                if reply is None:
                    break
                events += self._on_reply(reply)
            return events
        except ReplyError as exc:
            waiting = self._waiting_for()
            self._move(_State.DONE)
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"{exc} while waiting for {waiting}" + tls_hint(exc.evidence, self.implicit_scheme),
                exc.evidence,
            )

    def _waiting_for(self) -> str:
        if self._state is _State.GREETING:
            return f"the {self.protocol} greeting"
        if self._state is _State.HELLO_SENT:
            return f"the {self.hello} reply"
        return "the STARTTLS reply"

    def _eof(self) -> list[Event]:
        state = self._state
        self._move(_State.DONE)
        partial = self._parser.pending
        if state is _State.GREETING:
            if self._parser.in_reply:
                return self.closed("in the middle of its greeting", partial)
            return self.closed(f"before sending its {self.protocol} greeting")
        if state is _State.HELLO_SENT:
            return self.closed(f"without answering {self.hello}", partial)
        return self.closed("without answering STARTTLS", partial)

    def _on_reply(self, reply: Reply) -> list[Event]:
        if self._state is _State.GREETING:
            return self._on_greeting(reply)
        if self._state is _State.HELLO_SENT:
            return self._on_hello(reply)
        return self._on_starttls(reply)

    def _on_greeting(self, reply: Reply) -> list[Event]:
        if reply.code == 220:
            self._move(_State.HELLO_SENT)
            self._info["banner"] = reply.text
            return [Send(f"{self.hello} {self.hello_name}\r\n".encode("ascii"))]
        self._move(_State.DONE)
        if reply.code == 554:  # RFC 5321 §3.1: "no SMTP service here"
            return self.fail(
                FailureClass.UPGRADE_REFUSED,
                f"server refused the {self.protocol} session (no service for us): {reply}",
            )
        if reply.code >= 400:  # 421: service not available, closing (RFC 5321 §3.8)
            return self.fail(
                FailureClass.UPGRADE_REFUSED, f"server refused the {self.protocol} session: {reply}"
            )
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected {self.protocol} greeting {reply.code} (expected 220, RFC 5321 §4.3.1)",
            str(reply).encode(),
        )

    def _on_hello(self, reply: Reply) -> list[Event]:
        if reply.code == 250:
            caps = capabilities(reply)
            self._info["ehlo"] = excerpt(reply.lines[0].strip().encode("utf-8", "replace"), 200)
            self._info["capabilities"] = " ".join(caps)
            if "STARTTLS" in caps:
                self._move(_State.STARTTLS_SENT)
                return [Send(STARTTLS)]
            self._move(_State.DONE)
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server does not offer STARTTLS: its {self.hello} reply lists "
                + (self._info["capabilities"] or "no extensions"),
            )
        self._move(_State.DONE)
        if reply.code >= 500:
            self.hello_rejected = reply
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server rejected {self.hello} ({reply}): {self._no_extensions}, "
                "so it cannot offer STARTTLS (RFC 3207 §4)",
            )
        if reply.code >= 400:
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused {self.hello}: {reply}")
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected reply {reply.code} to {self.hello} (expected 250, RFC 5321 §4.3.2)",
            str(reply).encode(),
        )

    @property
    def _no_extensions(self) -> str:
        return "it does not support ESMTP"

    def _on_starttls(self, reply: Reply) -> list[Event]:
        self._move(_State.DONE)
        if reply.code == 220:
            # RFC 3207 §4: the TLS handshake starts right after this reply; bytes after its
            # last line are plaintext injected ahead of TLS.
            return self.ready(self._parser.pending, {**self._info, "starttls_reply": str(reply)})
        if reply.code in UNKNOWN_COMMAND:
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server advertised STARTTLS but does not know the command: {reply}",
            )
        if reply.code >= 400:  # 454 TLS not available temporarily (RFC 3207 §4), 5xx policy
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused STARTTLS: {reply}")
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected reply {reply.code} to STARTTLS (expected 220, RFC 3207 §4)",
            str(reply).encode(),
        )


class LMTPNegotiator(SMTPNegotiator):
    """Client side of LMTP STARTTLS: SMTP's dialogue with LHLO instead of EHLO (RFC 2033
    §4.1; an LMTP server must not accept EHLO), STARTTLS as an SMTP extension."""

    hello = "LHLO"
    protocol = "LMTP"
    implicit_scheme = "tls://"

    @property
    def _no_extensions(self) -> str:
        return "it does not speak LMTP"


__all__ = [
    "FALLBACK_EHLO",
    "LMTPNegotiator",
    "Reply",
    "ReplyError",
    "ReplyParser",
    "SMTPNegotiator",
    "capabilities",
    "default_ehlo_name",
    "valid_ehlo_name",
]
