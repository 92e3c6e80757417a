"""Line framing for the text protocols (SMTP, IMAP, POP3, FTP, NNTP, IRC, ManageSieve).

A :class:`LineBuffer` splits the byte stream at CRLF (a bare LF is accepted, as every real
client does), never by searching inside one ``recv()``; it keeps the unfinished tail and
enforces a cap on both one line and the whole buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 8192  # RFC 5321 §4.5.3.1.5 allows 512 for replies; be generous, but bounded.


class LineTooLong(Exception):
    """A line (or the unterminated tail) exceeded the cap."""

    def __init__(self, tail: bytes) -> None:
        super().__init__(f"line exceeds {len(tail)} bytes without a line break")
        self.tail = tail


@dataclass
class LineBuffer:
    max_line: int = MAX_LINE

    def __post_init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete lines (without the line break)."""
        self._buf += data
        lines: list[bytes] = []
        start = 0
        while True:
            nl = self._buf.find(b"\n", start)
            if nl < 0:
                break
            end = nl - 1 if nl > start and self._buf[nl - 1] == 0x0D else nl
            line = bytes(self._buf[start:end])
            if len(line) > self.max_line:
                raise LineTooLong(line[:200])
            lines.append(line)
            start = nl + 1
        del self._buf[:start]
        if len(self._buf) > self.max_line:
            raise LineTooLong(bytes(self._buf[:200]))
        return lines

    def push(self, data: bytes) -> None:
        """Add bytes without splitting them; take lines out one by one with next_line().

        For dialogues that must stop at one line and keep what follows it raw (after a
        go-ahead those bytes are the STARTTLS-injection evidence)."""
        self._buf += data

    def next_line(self) -> bytes | None:
        """One complete line (without its line break), or None until a line break arrives.

        The bytes after the line stay buffered. Raises LineTooLong when the line, or the
        unterminated tail, exceeds ``max_line``."""
        nl = self._buf.find(b"\n", 0, self.max_line + 2)
        if nl < 0:
            if len(self._buf) > self.max_line:
                raise LineTooLong(bytes(self._buf[:200]))
            return None
        end = nl - 1 if nl > 0 and self._buf[nl - 1] == 0x0D else nl
        line = bytes(self._buf[:end])
        if len(line) > self.max_line:
            raise LineTooLong(line[:200])
        del self._buf[: nl + 1]
        return line

    @property
    def pending(self) -> bytes:
        """Bytes received after the last complete line."""
        return bytes(self._buf)

    def take_pending(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data
