"""The one TLS engine: an OpenSSL connection over memory BIOs, sans-IO.

Bytes from the transport go in through :meth:`TLSEngine.receive_data`, bytes for the
transport come out; the driver moves them. A :class:`~tlswatch.tls.framing.RecordFramer`
sits between the wire and the BIOs, so protocols that wrap TLS records (TDS, OpenVPN) reuse
this engine unchanged. The handshake verifies nothing: the chain is collected as sent and
judged later by :mod:`tlswatch.x509`. The OpenSSL underneath is the one cryptography ships,
reached through pyOpenSSL (:mod:`tlswatch.tls.context` says why).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from OpenSSL import SSL

from tlswatch.errors import Failure, FailureClass, excerpt
from tlswatch.tls.chain import unverified_chain_der
from tlswatch.tls.framing import PASS_THROUGH, FramingError, RecordFramer

#: cap on the TLS bytes a handshake may take (OpenSSL's own certificate-list cap is 100 KiB;
#: this is the backstop against a server that streams records forever)
MAX_HANDSHAKE_BYTES = 1 << 20
#: bytes taken from OpenSSL's outgoing memory BIO per read (a flight is a few KiB)
READ_CHUNK = 65536

# TLS record content types (RFC 8446 §5.1; heartbeat RFC 6520) and the record-layer major
# version byte every TLS/SSLv3 record carries.
_CONTENT_TYPES = frozenset({20, 21, 22, 23, 24})
_RECORD_MAJOR = 3

# OpenSSL 4 says "tls alert ..." where 3.x said "sslv3 alert ..." / "tlsv1 alert ..."
_ALERT_PREFIXES = ("TLS_ALERT_", "SSLV3_ALERT_", "TLSV13_ALERT_", "TLSV1_ALERT_", "TLSV1_")


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


def openssl_reason(exc: SSL.Error) -> tuple[str, str]:
    """OpenSSL's reason for a failure as its code name (``SSLV3_ALERT_HANDSHAKE_FAILURE``),
    and the whole error queue as text. pyOpenSSL hands over the queue as (library,
    function, reason text) entries; the last one is the reason OpenSSL settled on, the
    one the standard library's ``SSLError.reason`` reports too."""
    entries = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    texts = [str(e[2]) for e in entries if isinstance(e, tuple) and len(e) > 2 and e[2]]
    if not texts:
        return "", " ".join(str(a) for a in exc.args if not isinstance(a, list))
    last = texts[-1]
    return last.upper().replace(" ", "_").replace("/", "_"), "; ".join(texts)


def classify_ssl_error(exc: SSL.Error) -> Failure:
    if isinstance(exc, SSL.ZeroReturnError | SSL.SysCallError):
        # SysCallError: the transport ended (memory BIO at EOF) mid-handshake
        return Failure(FailureClass.CLOSED, "server closed the connection during the TLS handshake")
    reason, text = openssl_reason(exc)
    if reason in ("UNEXPECTED_EOF_WHILE_READING",):
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
    if reason in _MALFORMED_CERT_REASONS or "ASN1" in text.upper():
        # OpenSSL could not decode a certificate of the Certificate message (RFC 5246
        # §7.4.2 / RFC 8446 §4.4.2): the server sends bytes that are not X.509 DER.
        return Failure(
            FailureClass.TLS_ERROR,
            f"server sent a malformed certificate that cannot be parsed (OpenSSL: {text})",
        )
    return Failure(FailureClass.TLS_ERROR, f"TLS handshake failed: {text or 'unknown error'}")


#: OpenSSL reasons for a Certificate message whose certificates do not decode
_MALFORMED_CERT_REASONS = frozenset({"ASN1_LIB", "CERT_LENGTH_MISMATCH", "BAD_CERTIFICATE"})


def server_name_indication(server_hostname: str | None) -> bytes | None:
    """The SNI host_name to send for ``server_hostname``, as the standard library decides
    it: none for an IP address (RFC 6066 §3 allows only DNS names), IDNA-encoded
    otherwise. ValueError (UnicodeError included) for a name that cannot be sent."""
    if not server_hostname:
        return None
    try:
        ipaddress.ip_address(server_hostname.strip("[]").split("%")[0])
    except ValueError:
        pass
    else:
        return None
    if server_hostname.startswith("."):
        raise ValueError("server_hostname cannot be an empty string or start with a leading dot.")
    if "\x00" in server_hostname:
        raise ValueError("embedded null character")
    return server_hostname.encode("idna")


def _framing_failure(exc: FramingError, data: bytes) -> Failure:
    evidence = exc.evidence or data
    return Failure(FailureClass(exc.code), str(exc), excerpt(evidence) if evidence else None)


class TLSEngine:
    """Client-side TLS handshake over memory BIOs."""

    def __init__(
        self,
        context: SSL.Context,
        server_hostname: str | None,
        framer: RecordFramer = PASS_THROUGH,
        max_bytes: int = MAX_HANDSHAKE_BYTES,
    ) -> None:
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
        self._conn: SSL.Connection | None = None
        try:
            sni = server_name_indication(server_hostname)
            conn = SSL.Connection(context, None)  # None: memory BIOs both ways
            conn.set_connect_state()
            if sni is not None:
                conn.set_tlsext_host_name(sni)
        except (ValueError, SSL.Error) as exc:
            # ValueError/UnicodeError: an SNI name that cannot be sent (leading dot, not
            # IDNA-encodable). A setting problem, reported before any byte is sent.
            self.failure = Failure(
                FailureClass.TLS_ERROR,
                f"cannot start TLS with server name {server_hostname!r}: {exc}",
            )
            return
        self._conn = conn

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
            if self._conn is not None:
                self._conn.bio_shutdown()
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
        if tls and self._conn is not None:
            self._conn.bio_write(tls)
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
        conn = self._conn
        if conn is None:
            return
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.Error as exc:
            self.failure = classify_ssl_error(exc)
            return
        alpn = conn.get_alpn_proto_negotiated()
        self.facts = HandshakeFacts(
            chain=unverified_chain_der(conn),
            version=conn.get_protocol_version_name() or "unknown",
            cipher=conn.get_cipher_name() or "unknown",
            alpn=alpn.decode("ascii", "replace") if alpn else None,
        )

    def _pending(self) -> bytes:
        """What OpenSSL has written for the server (b"" if nothing)."""
        if self._conn is None:
            return b""
        try:
            return self._conn.bio_read(READ_CHUNK)
        except SSL.WantReadError:
            return b""

    def _flush(self) -> bytes:
        out = b""
        while chunk := self._pending():
            out += chunk
            if len(chunk) < READ_CHUNK:
                break  # a short read emptied the BIO: no need to be told so by an exception
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
        if self.facts is None or self._conn is None:
            return b""
        try:
            self._conn.shutdown()
        except SSL.Error:
            pass
        return self._flush()
