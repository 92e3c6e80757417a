"""Failure classes and the exception tree.

Every probe failure is *data* (:class:`Failure`) carried in the result; exceptions exist only
to move a failure out of deep code to the one place that records it::

    TlswatchError                 base of everything tlswatch raises on purpose
    ├── TargetError               a target URL or option is invalid (user input)
    ├── ConfigError               a config file is invalid (file, line, key)
    └── ProbeError                a probe failed; carries a Failure
        (raised by the driver, caught in probe.py, never reaches the user)

The failure vocabulary is the contract of PRODUCT.md §2.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FailureClass(enum.StrEnum):
    """Why a probe did not yield a certificate chain (PRODUCT.md §2)."""

    DNS = "dns"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    UPGRADE_REFUSED = "upgrade_refused"
    UPGRADE_NOT_OFFERED = "upgrade_not_offered"
    UPGRADE_TIMEOUT = "upgrade_timeout"
    PROTOCOL_ERROR = "protocol_error"
    TLS_ALERT = "tls_alert"
    TLS_ERROR = "tls_error"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    CLOSED = "closed"


EXCERPT_LIMIT = 80


def excerpt(data: bytes, limit: int = EXCERPT_LIMIT) -> str:
    """A short, printable rendering of bytes a server sent, for messages.

    Server bytes are untrusted: everything outside printable ASCII is escaped, so an
    excerpt can never carry a terminal escape sequence.
    """
    head = data[:limit]
    out = []
    for b in head:
        if b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        elif b == 0x0D:
            out.append("\\r")
        elif b == 0x0A:
            out.append("\\n")
        else:
            out.append(f"\\x{b:02x}")
    text = "".join(out)
    if len(data) > limit:
        text += f"… ({len(data)} bytes)"
    return text


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified probe failure: the class, a message a sysadmin understands, and an
    excerpt of what the server sent when that is the evidence."""

    code: FailureClass
    message: str
    excerpt: str | None = None

    def describe(self) -> str:
        if self.excerpt:
            return f"{self.message}: {self.excerpt!r}"
        return self.message


class TlswatchError(Exception):
    """Base class of the errors tlswatch raises on purpose."""


class TargetError(TlswatchError, ValueError):
    """A target URL or one of its options is invalid."""


class ConfigError(TlswatchError):
    """A configuration file is invalid; the message names file, line and key."""


class ProbeError(TlswatchError):
    """A probe failed; ``failure`` says how. Caught where the result is assembled."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure
