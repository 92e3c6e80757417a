"""Numeric reply framing shared by SMTP/LMTP and FTP.

Both protocols answer with three-digit replies (RFC 5321 §4.2, RFC 959 §4.2): ``xyz text``
on one line, or ``xyz-text`` opening a multi-line reply that ends at a line starting with
the same code and a space (or the bare code). They differ in two places, which a
:class:`ReplyDialect` names:

- the first digit: SMTP's run from 2 to 5 (RFC 5321 §4.2: %x32-35), FTP's from 1 to 5
  (RFC 959 §4.2, for the 1yz preliminary replies);
- the lines inside a multi-line reply: SMTP requires every one to carry the reply's code
  (RFC 5321 §4.2.1), FTP allows free text lines until the closing ``xyz `` (RFC 959 §4.2).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from tlswatch.errors import excerpt
from tlswatch.protocols.lines import MAX_LINE

#: lines one reply may have: an EHLO reply lists a dozen or two extensions, a greeting
#: banner (SMTP, or a long FTP banner_file) a few dozen lines; anything longer is not a
#: server worth waiting for
MAX_REPLY_LINES = 500


@dataclass(frozen=True, slots=True)
class ReplyDialect:
    """What tells one protocol's reply framing from the other's."""

    #: protocol name in "not an SMTP reply" messages
    protocol: str
    #: the section the framing comes from, cited in the same messages
    spec: str
    #: the lowest first digit of a reply code (2 for SMTP, 1 for FTP)
    lowest_first_digit: int
    #: True when every line of a multi-line reply must carry its code (RFC 5321 §4.2.1);
    #: False when free text lines may come before the closing line (RFC 959 §4.2)
    coded_lines: bool
    #: message for a line over the cap; ``{max_line}`` is replaced by the cap
    long_line: str

    def could_start_line(self, head: bytes | bytearray) -> bool:
        """Whether ``head`` (the start of a line) may begin ``xyz``, ``xyz-`` or ``xyz ``;
        the middle digit is accepted up to 9, as some servers stray there."""
        for i, b in enumerate(head[:4]):
            if i == 0 and not 0x30 + self.lowest_first_digit <= b <= 0x35:
                return False
            if 0 < i < 3 and not 0x30 <= b <= 0x39:
                return False
            if i == 3 and b not in b" -\r":
                return False
        return True

    def code(self, line: bytes) -> int | None:
        """The reply code a whole line starts with (followed by a space, a hyphen or
        nothing), if any."""
        if len(line) >= 3 and line[3:4] in (b" ", b"-", b"") and self.could_start_line(line):
            return int(line[:3])
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete reply: its code and its lines' text (code and separator removed)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        joined = " ".join(line.strip() for line in self.lines if line.strip())
        return excerpt(joined.encode("utf-8", "replace"), 200)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class ReplyError(Exception):
    """The bytes are not replies of the dialect; carries the offending bytes."""

    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


class ReplyParser:
    """Incremental reply framing, one reply at a time.

    Replies are taken out one by one (:meth:`next_reply`) so that what follows a reply stays
    raw: after the go-ahead those bytes are the injection evidence. Lines end at LF (CRLF,
    or a bare LF as every real client accepts); one line, the lines and bytes of one reply
    and the unconsumed buffer are capped. Bytes that cannot begin a reply fail as soon as
    they arrive, without waiting for a line break a binary answer may never contain.

    Each protocol subclasses it, setting its :attr:`dialect`.
    """

    dialect: ClassVar[ReplyDialect]

    def __init__(self, max_bytes: int, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max_bytes = max_bytes
        self._max_line = max_line
        self._code: int | None = None  # code of the open multi-line reply
        self._open: list[bytes] = []  # its lines so far, as received
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

    def replies(self) -> Iterator[Reply]:
        """The complete replies, one by one, until more bytes are needed. Stop iterating to
        leave what follows raw in :attr:`pending`."""
        while (reply := self.next_reply()) is not None:
            yield reply

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        while True:
            nl = self._buf.find(b"\n")
            # Every line starts with a code, but free text inside an FTP multi-line reply.
            coded = self._code is None or self.dialect.coded_lines
            if coded and not self.dialect.could_start_line(self._buf[: 4 if nl < 0 else nl]):
                raise self._not_a_reply(bytes(self._buf[:200]))
            if nl < 0:
                if len(self._buf) > self._max_line:
                    raise self._long_line(bytes(self._buf[:200]))
                return None
            line = bytes(self._buf[: nl - 1 if nl and self._buf[nl - 1] == 0x0D else nl])
            if len(line) > self._max_line:
                raise self._long_line(line[:200])
            del self._buf[: nl + 1]
            reply = self._line(line)
            if reply is not None:
                return reply

    def _not_a_reply(self, evidence: bytes) -> ReplyError:
        # The last lines of an open reply show where the framing broke.
        head = b"\r\n".join(self._open[-2:])
        return ReplyError(
            f"not an {self.dialect.protocol} reply ({self.dialect.spec})",
            (head + b"\r\n" + evidence if head else evidence)[:200],
        )

    def _long_line(self, evidence: bytes) -> ReplyError:
        return ReplyError(self.dialect.long_line.format(max_line=self._max_line), evidence)

    def _line(self, line: bytes) -> Reply | None:
        code = self.dialect.code(line)
        open_code = self._code
        if open_code is None:
            if code is None:
                raise self._not_a_reply(line)
            if line[3:4] == b"-":
                self._code = code
                self._open = [line]
                self._open_bytes = len(line)
                return None
            return Reply(code, (_decode(line[4:]),))
        self._open_bytes += len(line)
        if len(self._open) >= MAX_REPLY_LINES or self._open_bytes > self._max_bytes:
            raise ReplyError(
                f"multi-line reply longer than {MAX_REPLY_LINES} lines or {self._max_bytes} bytes",
                b"\r\n".join(self._open[:3]),
            )
        if code == open_code and line[3:4] != b"-":
            texts = tuple(_decode(self._text(x)) for x in [*self._open, line])
            self._code = None
            self._open = []
            return Reply(open_code, texts)
        if code != open_code and self.dialect.coded_lines:
            if code is None:
                raise self._not_a_reply(line)
            # RFC 5321 §4.2.1: every line of a multi-line reply carries the same code.
            raise ReplyError(
                f"reply code changed from {open_code} to {code} inside a multi-line reply "
                "(RFC 5321 §4.2.1)",
                b"\r\n".join([*self._open[-2:], line]),
            )
        # RFC 959 §4.2: lines inside a multi-line FTP reply may be free text.
        self._open.append(line)
        return None

    def _text(self, line: bytes) -> bytes:
        """A line's text: without the code and separator when it carries the open reply's
        code, whole when it is one of FTP's free text lines (RFC 959 §4.2)."""
        return line[4:] if self.dialect.code(line) == self._code else line


def _decode(text: bytes) -> str:
    return text.decode("utf-8", "replace")


__all__ = ["MAX_REPLY_LINES", "Reply", "ReplyDialect", "ReplyError", "ReplyParser"]
