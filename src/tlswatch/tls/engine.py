"""The one TLS engine: an ``ssl.SSLObject`` over memory BIOs, sans-IO.

Bytes from the transport go in through :meth:`TLSEngine.receive_data`, bytes for the
transport come out; the driver moves them. A :class:`~tlswatch.tls.framing.RecordFramer`
sits between the wire and the BIOs, so protocols that wrap TLS records (TDS, OpenVPN) reuse
this engine unchanged. The handshake verifies nothing: the chain is collected as sent and
judged later by :mod:`tlswatch.x509`.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

from tlswatch.errors import Failure, FailureClass, excerpt
from tlswatch.tls.chain import unverified_chain_der
from tlswatch.tls.framing import PASS_THROUGH, FramingError, RecordFramer

#: cap on the TLS bytes a handshake may take (OpenSSL's own certificate-list cap is 100 KiB;
#: this is the backstop against a server that streams records forever)
MAX_HANDSHAKE_BYTES = 1 << 20

# TLS record content types (RFC 8446 §5.1; heartbeat RFC 6520) and the record-layer major
# version byte every TLS/SSLv3 record carries.
_CONTENT_TYPES = frozenset({20, 21, 22, 23, 24})
_RECORD_MAJOR = 3

_ALERT_PREFIXES = ("SSLV3_ALERT_", "TLSV13_ALERT_", "TLSV1_ALERT_", "TLSV1_")


@dataclass(frozen=True, slots=True)
class HandshakeFacts:
    """What a completed handshake established."""

    chain: tuple[bytes, ...]
    version: str
    cipher: str
    alpn: str | None


def alert_name(reason: str) -> str | None:
    """OpenSSL's reason for a received alert (``SSLV3_ALERT_HANDSHAKE_FAILURE``) to the
    RFC 8446 §6 alert name (``handshake_failure``); None if the reason is not an alert."""
    for prefix in _ALERT_PREFIXES:
        if reason.startswith(prefix) and "ALERT" in reason:
            return reason[len(prefix) :].lower()
    return None


def classify_ssl_error(exc: ssl.SSLError) -> Failure:
    reason = getattr(exc, "reason", None) or ""
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError) or reason in (
        "UNEXPECTED_EOF_WHILE_READING",
    ):
        return Failure(FailureClass.CLOSED, "server closed the connection during the TLS handshake")
    name = alert_name(reason)
    if name:
        return Failure(
            FailureClass.TLS_ALERT,
            f"server refused the TLS handshake with alert {name}",
        )
    if reason == "EXCESSIVE_MESSAGE_SIZE":
        return Failure(
            FailureClass.TLS_ERROR,
            "server's handshake message is too large (certificate chain over OpenSSL's "
            "100 KiB limit): clients will fail the same way",
        )
    if reason in ("UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS_AVAILABLE"):
        return Failure(FailureClass.TLS_ERROR, "no TLS version in common with the server")
    if reason in ("NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE"):
        return Failure(FailureClass.TLS_ERROR, "no cipher suite in common with the server")
    text = reason.lower().replace("_", " ") if reason else _openssl_text(exc)
    if reason in _MALFORMED_CERT_REASONS or (not reason and "ASN1" in text.upper()):
        # OpenSSL could not decode a certificate of the Certificate message (RFC 5246
        # §7.4.2 / RFC 8446 §4.4.2): the server sends bytes that are not X.509 DER.
        return Failure(
            FailureClass.TLS_ERROR,
            f"server sent a malformed certificate that cannot be parsed (OpenSSL: {text})",
        )
    return Failure(FailureClass.TLS_ERROR, f"TLS handshake failed: {text}")


#: OpenSSL reasons for a Certificate message whose certificates do not decode
_MALFORMED_CERT_REASONS = frozenset({"ASN1_LIB", "CERT_LENGTH_MISMATCH", "BAD_CERTIFICATE"})
_SOURCE_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)$")


def _openssl_text(exc: ssl.SSLError) -> str:
    """OpenSSL's message without Python's source location: ``[SSL] ASN1 lib``."""
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    return _SOURCE_LOCATION.sub("", text)


def _framing_failure(exc: FramingError, data: bytes) -> Failure:
    evidence = exc.evidence or data
    return Failure(FailureClass(exc.code), str(exc), excerpt(evidence) if evidence else None)


class TLSEngine:
    """Client-side TLS handshake over memory BIOs."""

    def __init__(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        framer: RecordFramer = PASS_THROUGH,
        max_bytes: int = MAX_HANDSHAKE_BYTES,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._framer = framer
        self._max_bytes = max_bytes
        self._received = 0
        #: the first TLS bytes from the server, kept until two have arrived to be sniffed
        #: (a server may send them one at a time)
        self._head = b""
        self._sniffed = False
        self._framer_told = False
        self.facts: HandshakeFacts | None = None
        self.failure: Failure | None = None
        self._obj: ssl.SSLObject | None = None
        try:
            self._obj = context.wrap_bio(
                self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
            )
        except (ValueError, ssl.SSLError) as exc:
            # ValueError/UnicodeError: an SNI name the ssl module refuses (leading dot,
            # not IDNA-encodable). A setting problem, reported before any byte is sent.
            self.failure = Failure(
                FailureClass.TLS_ERROR,
                f"cannot start TLS with server name {server_hostname!r}: {exc}",
            )

    @property
    def done(self) -> bool:
        return self.facts is not None or self.failure is not None

    def initiate(self) -> bytes:
        """The ClientHello, framed for the transport (b"" if the engine already failed)."""
        if self.done:
            return b""
        self._step()
        return self._flush()

    def receive_data(self, data: bytes) -> bytes:
        """Feed transport bytes (``b""``: the server closed); return bytes to send."""
        if self.done:
            return b""
        if not data:
            self._incoming.write_eof()
            self._step()
            if not self.done:
                self.failure = Failure(
                    FailureClass.CLOSED, "server closed the connection during the TLS handshake"
                )
            return b""
        self._received += len(data)
        if self._received > self._max_bytes:
            self.failure = Failure(
                FailureClass.TLS_ERROR,
                f"TLS handshake exceeded {self._max_bytes} bytes without completing",
            )
            return b""
        try:
            tls = self._framer.unwrap(data)
        except FramingError as exc:
            self.failure = _framing_failure(exc, data)
            return b""
        if tls and not self._sniffed:
            self._head += tls
            if not self._looks_like_tls(self._head):
                return b""
            self._sniffed = len(self._head) >= 2
        if tls:
            self._incoming.write(tls)
            self._step()
        return self._flush()

    def _looks_like_tls(self, head: bytes) -> bool:
        # The first bytes back must start a TLS record (RFC 8446 §5.1: type, then 0x03xx).
        # Anything else (a plaintext banner, an HTTP error, plaintext injected after a
        # STARTTLS go-ahead) is the server speaking another protocol: say so with an
        # excerpt rather than OpenSSL's "wrong version number".
        if head[0] not in _CONTENT_TYPES or (len(head) > 1 and head[1] != _RECORD_MAJOR):
            self.failure = Failure(
                FailureClass.PROTOCOL_ERROR,
                "server answered the TLS ClientHello with non-TLS data "
                "(a plaintext service, or TLS needs an upgrade command first?)",
                excerpt(head),
            )
            return False
        return True

    def _step(self) -> None:
        if self._obj is None:
            return
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLError as exc:
            self.failure = classify_ssl_error(exc)
            return
        cipher = self._obj.cipher()
        self.facts = HandshakeFacts(
            chain=unverified_chain_der(self._obj),
            version=self._obj.version() or "unknown",
            cipher=cipher[0] if cipher else "unknown",
            alpn=self._obj.selected_alpn_protocol(),
        )

    def _flush(self) -> bytes:
        out = self._outgoing.read()
        wrapped = self._framer.wrap(out) if out else b""
        output = wrapped + self._framer.pending_output()
        if self.facts is not None and not self._framer_told:
            # Our last flight is wrapped: from here on the records are the protocol's own
            # (TDS sends them unwrapped after the handshake, MS-TDS §3.3.5.1).
            self._framer_told = True
            self._framer.handshake_complete()
        return output

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` is due (the framer's retransmission clock), or None."""
        return None if self.done else self._framer.next_timer()

    def handle_timer(self, now: float) -> bytes:
        """Let the framer act on its timer; return what it wants sent (retransmits)."""
        if self.done:
            return b""
        try:
            self._framer.handle_timer(now)
        except FramingError as exc:
            self.failure = _framing_failure(exc, b"")
            return b""
        return self._framer.pending_output()

    def close_notify(self) -> bytes:
        """A close_notify alert to end the session politely (best effort)."""
        if self.facts is None or self._obj is None:
            return b""
        try:
            self._obj.unwrap()
        except ssl.SSLError:
            pass
        return self._flush()
