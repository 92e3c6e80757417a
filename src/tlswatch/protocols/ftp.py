"""FTP AUTH TLS (RFC 4217 §4, on RFC 2228's AUTH command): the server speaks first.

Replies are framed as RFC 959 §4.2 says: ``xyz text`` on one line, or ``xyz-text`` opening a
multi-line reply that ends at the first line starting with the same code and a space. We
wait for the 220 greeting (a 120 "ready in nnn minutes" may come before it, RFC 959 §4.2;
421 means the server will not serve us), send ``AUTH TLS`` and read its reply:

    234           go ahead, TLS starts now (RFC 4217 §4); 334 too, as pre-RFC drafts sent
    500 501 502   the command or mechanism is not known: TLS not offered
    504 530       (vsftpd without ssl_enable answers 530 to every command before login)
    431 534 421   the server refuses (resources, policy, closing): upgrade refused

    greeting --220--> auth_sent --234--> done (Ready)
    greeting --120--> greeting;  anything else --> done (Failed)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Send, StateTable
from tlswatch.protocols.lines import MAX_LINE
from tlswatch.protocols.sniff import tls_hint

AUTH_TLS = b"AUTH TLS\r\n"  # RFC 4217 §4: the mechanism name is "TLS"
#: lines one reply may have (a long banner_file greeting is a few dozen)
MAX_REPLY_LINES = 500

#: replies to AUTH TLS meaning the server does not offer TLS (RFC 2228 §4 AUTH replies:
#: 500/501 not understood, 502 not implemented, 504 mechanism not supported)
NOT_OFFERED = frozenset({500, 501, 502, 504, 530})


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete FTP reply: its code and its lines' text (code and separator removed)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        joined = " ".join(line.strip() for line in self.lines if line.strip())
        return excerpt(joined.encode("utf-8", "replace"), 200)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class ReplyError(Exception):
    """The bytes are not FTP replies; carries the offending line."""

    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


def _code(line: bytes) -> int | None:
    """The reply code a line starts with (three digits, first 1-5: RFC 959 §4.2), if any."""
    if len(line) >= 3 and line[:3].isdigit() and 0x31 <= line[0] <= 0x35:
        return int(line[:3])
    return None


class ReplyParser:
    """Incremental RFC 959 §4.2 reply framing, one reply at a time.

    Replies are taken out one by one (:meth:`next_reply`) so that the bytes after a reply
    stay available raw: after a go-ahead they are the injection evidence. Lines end at LF
    (CRLF or a bare LF, as every real client accepts); one line and the unconsumed buffer
    are capped.
    """

    def __init__(self, max_bytes: int, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max_bytes = max_bytes
        self._max_line = max_line
        self._code: int | None = None  # code of the open multi-line reply
        self._open: list[bytes] = []
        self._open_bytes = 0

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
            if self._code is None and not _could_start_reply(self._buf[: 4 if nl < 0 else nl]):
                # Fail on the first bytes that cannot begin a reply, not after a full line:
                # a binary answer may never contain a line break.
                raise ReplyError("not an FTP reply (RFC 959 §4.2)", bytes(self._buf[:200]))
            if nl < 0:
                if len(self._buf) > self._max_line:
                    raise ReplyError("reply line too long", bytes(self._buf[:200]))
                return None
            line = bytes(self._buf[: nl - 1 if nl and self._buf[nl - 1] == 0x0D else nl])
            if len(line) > self._max_line:
                raise ReplyError("reply line too long", line[:200])
            del self._buf[: nl + 1]
            reply = self._line(line)
            if reply is not None:
                return reply

    def _line(self, line: bytes) -> Reply | None:
        if self._code is None:
            code = _code(line)
            if code is None or line[3:4] not in (b" ", b"-", b""):
                raise ReplyError("not an FTP reply (RFC 959 §4.2)", line)
            if line[3:4] == b"-":
                self._code = code
                self._open = [line[4:]]
                self._open_bytes = len(line)
                return None
            return Reply(code, (_decode(line[4:]),))
        # Inside a multi-line reply: text lines until "xyz " with the opening code.
        self._open_bytes += len(line)
        if len(self._open) >= MAX_REPLY_LINES or self._open_bytes > self._max_bytes:
            raise ReplyError(
                f"multi-line reply longer than {MAX_REPLY_LINES} lines or {self._max_bytes} bytes",
                b"\r\n".join(self._open[:3]),
            )
        if _code(line) == self._code and line[3:4] in (b" ", b""):
            reply = Reply(self._code, tuple(_decode(x) for x in [*self._open, line[4:]]))
            self._code = None
            self._open = []
            return reply
        # RFC 959 §4.2: intermediate lines may repeat the code with a hyphen; drop it.
        self._open.append(line[4:] if _code(line) == self._code and line[3:4] == b"-" else line)
        return None


def _could_start_reply(head: bytes | bytearray) -> bool:
    """Whether ``head`` (the start of a line) may begin ``xyz``, ``xyz-`` or ``xyz ``."""
    for i, b in enumerate(head[:4]):
        if i == 0 and not 0x31 <= b <= 0x35:
            return False
        if 0 < i < 3 and not 0x30 <= b <= 0x39:
            return False
        if i == 3 and b not in b" -\r":
            return False
    return True


def _decode(text: bytes) -> str:
    return text.decode("utf-8", "replace")


class _State(enum.Enum):
    GREETING = "greeting"
    AUTH_SENT = "auth_sent"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.GREETING: frozenset({_State.GREETING, _State.AUTH_SENT, _State.DONE}),
        _State.AUTH_SENT: frozenset({_State.DONE}),
    }
)


class FTPNegotiator(Negotiator):
    """Client side of FTP AUTH TLS."""

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._state = _State.GREETING
        self._parser = ReplyParser(self.max_buffer)
        self._info: dict[str, str] = {}

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
            waiting = "the greeting" if self._state is _State.GREETING else "the AUTH TLS reply"
            self._move(_State.DONE)
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"{exc} while waiting for {waiting}" + tls_hint(exc.evidence, "ftps://"),
                exc.evidence,
            )

    def _eof(self) -> list[Event]:
        state = self._state
        self._move(_State.DONE)
        partial = self._parser.pending
        if state is _State.GREETING:
            if partial or self._parser.in_reply:
                return self.closed("in the middle of its greeting", partial)
            return self.closed("before sending its FTP greeting")
        return self.closed("without answering AUTH TLS", partial)

    def _on_reply(self, reply: Reply) -> list[Event]:
        if self._state is _State.GREETING:
            return self._on_greeting(reply)
        return self._on_auth_reply(reply)

    def _on_greeting(self, reply: Reply) -> list[Event]:
        if reply.code == 120:  # RFC 959 §4.2: "Service ready in nnn minutes"; 220 follows
            self._move(_State.GREETING)
            self._info["delay"] = str(reply)
            return []
        if reply.code == 220:
            self._move(_State.AUTH_SENT)
            self._info["banner"] = reply.text
            return [Send(AUTH_TLS)]
        self._move(_State.DONE)
        if reply.code >= 400:  # 421 service not available, RFC 959 §4.2
            return self.fail(
                FailureClass.UPGRADE_REFUSED,
                f"server refused the FTP session: {reply}",
            )
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected FTP greeting {reply.code} (expected 220, RFC 959 §5.4)",
            str(reply).encode(),
        )

    def _on_auth_reply(self, reply: Reply) -> list[Event]:
        self._move(_State.DONE)
        if reply.code in (234, 334):
            info = {**self._info, "auth_reply": str(reply)}
            # RFC 4217 §4: the TLS handshake starts right after the reply; any bytes after
            # its line are plaintext injected ahead of TLS.
            return self.ready(self._parser.pending, info)
        if reply.code in NOT_OFFERED:
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server does not support AUTH TLS: {reply}",
            )
        if reply.code >= 400:
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused AUTH TLS: {reply}")
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected reply {reply.code} to AUTH TLS (expected 234, RFC 4217 §4)",
            str(reply).encode(),
        )


__all__ = ["FTPNegotiator", "Reply", "ReplyError", "ReplyParser"]
