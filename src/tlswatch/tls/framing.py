"""Record framers: how TLS bytes travel on the wire.

STARTTLS and implicit-TLS protocols carry TLS records unchanged (:class:`PassThroughFramer`).
Protocols that wrap TLS records in their own packets during the handshake (MS-TDS PRELOGIN
packets, the OpenVPN control channel) plug in a framer with the same interface, and the one
engine (:mod:`tlswatch.tls.engine`) and the one driver are reused unchanged.

A framer is sans-IO:
    wrap(tls_bytes)  -> transport bytes to send (may be b"" while it waits, e.g. for a window)
    unwrap(data)     -> TLS bytes extracted from transport bytes (may be b"" while a packet is
                        incomplete); framing errors raise :class:`FramingError`
    pending_output() -> transport bytes the framer itself wants sent (ACKs, retransmits)
"""

from __future__ import annotations

from typing import Protocol


class FramingError(Exception):
    """The transport bytes do not follow the wrapping protocol; message says how."""

    def __init__(self, message: str, evidence: bytes = b"") -> None:
        super().__init__(message)
        self.evidence = evidence


class RecordFramer(Protocol):
    def wrap(self, tls_bytes: bytes) -> bytes: ...

    def unwrap(self, data: bytes) -> bytes: ...

    def pending_output(self) -> bytes: ...


class PassThroughFramer:
    """TLS records go on the wire as they are."""

    __slots__ = ()

    def wrap(self, tls_bytes: bytes) -> bytes:
        return tls_bytes

    def unwrap(self, data: bytes) -> bytes:
        return data

    def pending_output(self) -> bytes:
        return b""


PASS_THROUGH = PassThroughFramer()
