"""Line framing with synchronising literals, for IMAP (RFC 9051 §4.3) and ManageSieve
(RFC 5804 §4).

Both protocols are line based, except that a line may end in a literal marker ``{n}``
(``{n+}`` with LITERAL+, RFC 7888; ``~{n}`` for IMAP's literal8, RFC 3516): then exactly n
octets follow the CRLF, whatever they contain (CRLF included), and the response goes on
after them up to the next CRLF. Splitting at every CRLF would desynchronise on the first
literal, so a :class:`LiteralLineReader` assembles *logical* lines: text parts with the
literal bodies between them.

Caps (STYLE.md rule 3): one physical line, one literal, and one logical line in total.
A literal larger than its cap fails as soon as its marker is read, not after buffering it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tlswatch.protocols.lines import MAX_LINE

#: a literal marker at the end of a line: ``{n}``, ``{n+}`` (RFC 7888) or ``~{n}`` (RFC 3516)
_MARKER = re.compile(rb"~?\{(\d{1,10})\+?\}$")
#: literal bodies in a greeting or capability response are tiny; this is generous
MAX_LITERAL = 16 * 1024
#: a whole logical line (its text parts and literals together)
MAX_LOGICAL_LINE = 64 * 1024


class FramingError(Exception):
    """The byte stream broke the line/literal framing or one of its caps."""

    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass(frozen=True, slots=True)
class LogicalLine:
    """One response: ``parts`` alternate text and literal bodies, starting and ending with
    text (``(text,)`` for a line without literals). A text part followed by a literal ends
    with its ``{n}`` marker."""

    parts: tuple[bytes, ...]

    @property
    def first(self) -> bytes:
        """The text before the first literal (the whole line when there is none)."""
        return self.parts[0]

    @property
    def raw(self) -> bytes:
        """The line as it was framed on the wire, without its final CRLF (for excerpts)."""
        out = bytearray()
        for i, part in enumerate(self.parts):
            out += part
            if i % 2 == 0 and i + 1 < len(self.parts):
                out += b"\r\n"  # the CRLF after a literal marker; a literal body has none
        return bytes(out)

    def text_parts(self) -> tuple[bytes, ...]:
        return self.parts[0::2]

    def literals(self) -> tuple[bytes, ...]:
        return self.parts[1::2]


def literal_size(text: bytes) -> int | None:
    """The octet count of the literal marker ending ``text``, if it ends with one."""
    m = _MARKER.search(text)
    return int(m.group(1)) if m else None


class LiteralLineReader:
    """Incremental logical-line framing: feed bytes, take logical lines out one by one.

    What follows a taken line stays raw in :attr:`pending` (after a go-ahead those bytes are
    the STARTTLS-injection evidence).
    """

    def __init__(
        self,
        max_line: int = MAX_LINE,
        max_literal: int = MAX_LITERAL,
        max_total: int = MAX_LOGICAL_LINE,
    ) -> None:
        self._buf = bytearray()
        self._max_line = max_line
        self._max_literal = max_literal
        self._max_total = max_total
        self._parts: list[bytes] = []  # the logical line being assembled
        self._size = 0
        self._literal: int | None = None  # octets of the literal we are inside

    @property
    def pending(self) -> bytes:
        """Bytes received after the last logical line taken out, when no line is open."""
        return bytes(self._buf)

    @property
    def in_line(self) -> bool:
        """True while a logical line has started but not ended."""
        return bool(self._parts) or bool(self._buf)

    def peek(self) -> bytes:
        """The first bytes of the next line when no line is being assembled (empty while
        one is): lets a parser reject bytes that cannot start a response at once, without
        waiting for a line break a binary answer may never contain."""
        return b"" if self._parts or self._literal is not None else bytes(self._buf[:8])

    def lines(self, could_start: Callable[[bytes], bool], not_a_line: str) -> Iterator[LogicalLine]:
        """The complete logical lines, one by one, until more bytes are needed.

        Bytes that ``could_start`` rejects at the start of a line fail at once (FramingError
        ``not_a_line``), without waiting for a line break a binary answer may never contain.
        Stop iterating to leave what follows raw in :attr:`pending`."""
        while True:
            head = self.peek()
            if not could_start(head):
                raise FramingError(not_a_line, head)
            line = self.next_line()
            if line is None:
                return
            yield line

    def feed(self, data: bytes) -> None:
        self._buf += data
        if self._size + len(self._buf) > self._max_total + self._max_line:
            raise FramingError(
                f"more than {self._max_total} bytes without a complete response",
                self._evidence(),
            )

    def next_line(self) -> LogicalLine | None:
        """The next complete logical line, or None until more bytes arrive."""
        while True:
            if self._literal is not None:
                if len(self._buf) < self._literal:
                    return None
                body = bytes(self._buf[: self._literal])
                del self._buf[: self._literal]
                self._append(body)
                self._literal = None
                continue
            nl = self._buf.find(b"\n", 0, self._max_line + 2)
            if nl < 0:
                if len(self._buf) > self._max_line:
                    raise FramingError(
                        f"response line longer than {self._max_line} bytes without a line break",
                        self._evidence(),
                    )
                return None
            end = nl - 1 if nl > 0 and self._buf[nl - 1] == 0x0D else nl
            text = bytes(self._buf[:end])
            if len(text) > self._max_line:
                raise FramingError(f"response line longer than {self._max_line} bytes", text[:200])
            del self._buf[: nl + 1]
            self._append(text)
            size = literal_size(text)
            if size is None:
                line = LogicalLine(tuple(self._parts))
                self._parts = []
                self._size = 0
                return line
            if size > self._max_literal:
                raise FramingError(
                    f"literal of {size} bytes announced (cap {self._max_literal})",
                    self._evidence(),
                )
            self._literal = size

    def _append(self, part: bytes) -> None:
        self._parts.append(part)
        self._size += len(part)
        if self._size > self._max_total:
            raise FramingError(f"response longer than {self._max_total} bytes", self._evidence())

    def _evidence(self) -> bytes:
        return (b"\r\n".join(self._parts[:2]) or bytes(self._buf))[:200]


__all__ = [
    "MAX_LITERAL",
    "MAX_LOGICAL_LINE",
    "FramingError",
    "LiteralLineReader",
    "LogicalLine",
    "literal_size",
]
