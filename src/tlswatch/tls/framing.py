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
    handshake_complete()
                     -> the engine's handshake finished (after its last flight was wrapped):
                        TDS stops wrapping here (MS-TDS §3.3.5.1)
    next_timer()     -> the monotonic time at which handle_timer() wants to be called, or
                        None (reliability layers that retransmit: OpenVPN over UDP)
    handle_timer(now)-> do what is due (queue retransmits for pending_output()); raise
                        FramingError when giving up

A framer that needs what the plaintext dialogue learned (OpenVPN's session ids and its
tls-auth key) is built from the negotiator: the registry's ``framer`` names a factory that
the driver calls as ``factory(negotiator)`` (None for implicit TLS). docs/architecture-
framers.md shows the whole flow.
"""

from __future__ import annotations

from typing import Protocol


class FramingError(Exception):
    """The transport bytes do not follow the wrapping protocol; message says how.

    ``code`` is the failure class to report (a :class:`~tlswatch.errors.FailureClass`
    value); protocol_error unless the framer knows better (e.g. the server stopped
    acknowledging: upgrade_refused).
    """

    def __init__(self, message: str, evidence: bytes = b"", code: str = "protocol_error") -> None:
        super().__init__(message)
        self.evidence = evidence
        self.code = code


class RecordFramer(Protocol):
    def wrap(self, tls_bytes: bytes) -> bytes: ...

    def unwrap(self, data: bytes) -> bytes: ...

    def pending_output(self) -> bytes: ...

    def handshake_complete(self) -> None: ...

    def next_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class PassThroughFramer:
    """TLS records go on the wire as they are."""

    __slots__ = ()

    def wrap(self, tls_bytes: bytes) -> bytes:
        return tls_bytes

    def unwrap(self, data: bytes) -> bytes:
        return data

    def pending_output(self) -> bytes:
        return b""

    def handshake_complete(self) -> None:
        return None

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None


PASS_THROUGH = PassThroughFramer()
