"""auto://: find out which protocol a port speaks, then probe it the right way.

Three sources, in order (PRODUCT.md §1 "auto"):

1. The port: a registered default port (``auto://host:5432``) names the protocol; we use it.
2. What the server says first: most plaintext protocols greet (SMTP/FTP ``220``, IMAP
   ``* OK``, POP3 ``+OK``, NNTP ``200``, ManageSieve's quoted capabilities, IRC notices,
   the MySQL handshake packet, RFB's ``RFB 003.008``, NATS ``INFO``). :func:`classify`
   names the protocol from the greeting, and the negotiator hands the greeting to that
   protocol's own negotiator, which carries on as if it had been asked directly.
3. Silence for :data:`GREETING_WAIT`: the server waits for the client, so we send a TLS
   ClientHello (implicit TLS: HTTPS, LDAPS, TLS-first NATS, ...). When the answer is not
   TLS, the probe layer (:mod:`tlswatch.net.autodetect`) tries the client-speaks-first
   protocols of :data:`CLIENT_FIRST` on fresh connections.

Everything here is sans-IO; the candidate loop lives in the shell.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from tlswatch.errors import FailureClass
from tlswatch.protocols.base import (
    Event,
    Failed,
    Negotiator,
    NegotiatorContext,
    Ready,
)
from tlswatch.tls.framing import PASS_THROUGH, RecordFramer

#: seconds to wait for a server that speaks first before concluding it waits for us
GREETING_WAIT = 1.5
#: protocols where the client speaks first, tried in this order after implicit TLS failed
#: (IRC too: an ircd that does no host-name look-up, InspIRCd with ``resolvehostnames="no"``,
#: says nothing until the client does)
CLIENT_FIRST = ("postgres", "ldap", "xmpp", "xmpp-server", "mssql", "rdp", "irc", "openvpn")
#: client-first protocols whose servers neither answer nor close on a TLS ClientHello: an
#: IRC server waits for a line and ignores what it does not know before registration. When
#: our ClientHello went unanswered (handshake timeout), these are the likely ones and go
#: first: every wrong guess against a silent server costs a whole candidate timeout.
SILENT_ON_CLIENT_HELLO = ("irc",)
#: client-first protocols whose servers may stop listening after one connection: a
#: point-to-point OpenVPN server (``proto tcp-server`` without ``mode server``) serves one
#: peer, drops it on a bad first packet (our ClientHello's 0x16 0x03 reads as a 5635-byte
#: packet length, over its limit), then restarts and listens again after a pause. A port
#: that accepted our first connection and refuses the next one is most likely that.
STOPS_LISTENING = ("openvpn",)
#: a greeting line longer than this without a line break is not one we know
MAX_GREETING = 4096
NEED_MORE = "need-more"

_LINE_CLASSES: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb"^\* (OK|PREAUTH|BYE)\b", re.I), "imap"),
    (re.compile(rb"^[+-](OK|ERR)\b", re.I), "pop3"),
    (re.compile(rb"^INFO \{", re.I), "nats"),
    (re.compile(rb"^20[01][ -]"), "nntp"),
    (re.compile(rb'^"(IMPLEMENTATION|SASL|SIEVE|STARTTLS|VERSION)"', re.I), "sieve"),
    (re.compile(rb"^(:\S+ )?NOTICE ", re.I), "irc"),
    (re.compile(rb"^<\?xml|^<stream:stream", re.I), "xmpp"),
)


def _classify_220(line: bytes) -> str:
    """SMTP and FTP both greet with 220 (RFC 5321 §4.2, RFC 959 §4.2); the text tells
    them apart in practice (``ESMTP Postfix``, ``(vsFTPd 3.0.3)``, ``FTP server ready``)."""
    text = line.upper()
    if b"FTP" in text:
        return "ftp"
    if b"LMTP" in text:
        return "lmtp"
    return "smtp"


def classify(greeting: bytes) -> str | None:
    """The scheme a server's first bytes identify; NEED_MORE if they are not enough yet;
    None when they match no protocol tlswatch knows."""
    if not greeting:
        return NEED_MORE
    # RFB ProtocolVersion (RFC 6143 §7.1.1): exactly "RFB xxx.yyy\n".
    if greeting.startswith(b"RFB "[: len(greeting)]):
        return "vnc" if len(greeting) >= 4 else NEED_MORE
    # MySQL Initial Handshake (protocol version 10) or ERR packet: 3-byte little-endian
    # length, sequence id 0, then 0x0a / 0xff (MySQL client/server protocol).
    if len(greeting) >= 2 and 0 in greeting[1:4]:
        if len(greeting) < 5:
            return NEED_MORE
        if greeting[3] == 0 and greeting[4] in (0x0A, 0xFF):
            return "mysql"
        return None
    end = greeting.find(b"\n")
    if end < 0:
        return NEED_MORE if len(greeting) < MAX_GREETING else None
    line = greeting[:end].rstrip(b"\r")
    if line.startswith((b"220 ", b"220-")):
        return _classify_220(line)
    for pattern, scheme in _LINE_CLASSES:
        if pattern.match(line):
            return scheme
    return None


def client_first_order(
    client_hello_unanswered: bool, stops_listening: bool = False, tried: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The order to try the :data:`CLIENT_FIRST` protocols not yet ``tried`` in, given how
    the server took our ClientHello (``client_hello_unanswered``: a handshake timeout) and
    whether it refused a connection after accepting the first (``stops_listening``)."""
    first: tuple[str, ...] = ()
    if stops_listening:
        first += STOPS_LISTENING
    if client_hello_unanswered:
        first += SILENT_ON_CLIENT_HELLO
    order = first + tuple(s for s in CLIENT_FIRST if s not in first)
    return tuple(s for s in order if s not in tried)


def classify_tls_answer(answer: bytes) -> str | None:
    """What a server that did not speak TLS answered to our ClientHello, when that names
    it (an XMPP server's stream error is XML; a line protocol's error is its own line)."""
    scheme = classify(answer)
    return None if scheme == NEED_MORE else scheme


class AutoNegotiator(Negotiator):
    """Waits for a greeting, then delegates to the protocol it identifies; on silence,
    goes straight to TLS (``detected=tls``)."""

    def __init__(
        self,
        ctx: NegotiatorContext,
        greeting_wait: float = GREETING_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ctx)
        self._clock = clock
        from tlswatch.protocols import PORT_SCHEMES, REGISTRY

        self._registry = REGISTRY
        self._buf = bytearray()
        self._wait = greeting_wait
        self._deadline: float | None = None
        self.inner: Negotiator | None = None
        self.detected: str | None = None
        self.detected_by = ""
        self._greeting = b""  # the greeting that named the protocol, for a second try
        self._smtp_failure: list[Event] = []
        hinted = PORT_SCHEMES.get(ctx.port)
        self._hint = hinted if hinted and hinted in REGISTRY else None

    # -- helpers -------------------------------------------------------------------------
    def _tag(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, Ready):
                info = dict(event.info)
                info["detected"] = self.detected or "tls"
                info["detected_by"] = self.detected_by
                self.done = True
                out.append(Ready(info))
            else:
                if isinstance(event, Failed):
                    self.done = True
                out.append(event)
        return out

    def _delegate(self, scheme: str, by: str) -> list[Event]:
        spec = self._registry[scheme]
        factory = spec.negotiator_factory()
        self.detected, self.detected_by = scheme, by
        if factory is None:  # implicit TLS
            return self._tag([Ready({})])
        self.inner = factory(replace(self.ctx, options=_plain(self.ctx.options)))
        events = list(self.inner.initiate())
        if self._buf:
            if any(isinstance(e, Ready | Failed) for e in events):
                return self._tag(events)
            self._greeting = bytes(self._buf)
            self._buf.clear()
            events += self.inner.receive_data(self._greeting)
        return self._tag(self._maybe_lmtp(events))

    def _maybe_lmtp(self, events: list[Event]) -> list[Event]:
        """A 220 greeting that names neither FTP nor LMTP was taken for SMTP; if the server
        then rejects EHLO with a 5xx, it may be an LMTP server that does not say so in its
        greeting (Dovecot's ``220 host Dovecot ready.``): RFC 2033 §4.1 has LMTP servers
        refuse EHLO (500 recommended). A refused command leaves the session where it was,
        right after the greeting, so LHLO follows on the same connection.
        Should LHLO be rejected too, the SMTP verdict stands."""
        inner = self.inner
        failed = any(isinstance(e, Failed) for e in events)
        if not failed or inner is None:
            return events
        from tlswatch.protocols.smtp import LMTPNegotiator, SMTPNegotiator

        if self.detected == "smtp" and self.detected_by == "greeting":
            if not isinstance(inner, SMTPNegotiator) or inner.hello_rejected is None:
                return events
            self._smtp_failure = events
            self.inner = LMTPNegotiator(replace(self.ctx, options=_plain(self.ctx.options)))
            self.detected, self.detected_by = "lmtp", "greeting, then LHLO"
            return list(self.inner.initiate()) + self.inner.receive_data(self._greeting)
        if self.detected == "lmtp" and self._smtp_failure:
            # LHLO rejected as well, or the connection dropped before its answer: no
            # evidence of LMTP, so the SMTP verdict stands
            closed = any(
                isinstance(e, Failed) and e.failure.code is FailureClass.CLOSED for e in events
            )
            if isinstance(inner, LMTPNegotiator) and (inner.hello_rejected or closed):
                self.detected, self.detected_by = "smtp", "greeting"
                return self._smtp_failure
        return events

    # -- the negotiator interface --------------------------------------------------------
    def initiate(self) -> list[Event]:
        if self._hint is not None:
            return self._delegate(self._hint, "port")
        self._deadline = self._clock() + self._wait
        return []

    def next_timer(self) -> float | None:
        if self.done or self.inner is not None:
            return self.inner.next_timer() if self.inner is not None and not self.done else None
        return self._deadline

    def handle_timer(self, now: float) -> list[Event]:
        if self.done:
            return []
        if self.inner is not None:
            return self._tag(list(self.inner.handle_timer(now)))
        if self._deadline is not None and now >= self._deadline:
            if self._buf:
                return self.fail(
                    FailureClass.PROTOCOL_ERROR,
                    "could not identify the protocol from the server's first bytes",
                    bytes(self._buf),
                )
            # The server waits for the client: try implicit TLS.
            self.detected, self.detected_by = "tls", "silence"
            return self._tag([Ready({})])
        return []

    def receive_data(self, data: bytes) -> list[Event]:
        if self.done:
            return []
        if self.inner is not None:
            return self._tag(self._maybe_lmtp(list(self.inner.receive_data(data))))
        if not data:
            return self.closed("before saying anything we could identify", bytes(self._buf))
        self._buf += data
        scheme = classify(bytes(self._buf))
        if scheme == NEED_MORE:
            return []
        if scheme is None or scheme not in self._registry:
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                "could not identify the protocol from the server's greeting",
                bytes(self._buf),
            )
        return self._delegate(scheme, "greeting")


def _plain(options: Mapping[str, str]) -> dict[str, str]:
    return dict(options)


def framer_for(negotiator: Negotiator | None) -> RecordFramer:
    """The framer of the protocol auto-detection settled on (registry ``framer`` of auto)."""
    if isinstance(negotiator, AutoNegotiator) and negotiator.detected:
        spec = negotiator._registry.get(negotiator.detected)
        factory = spec.framer_factory() if spec else None
        if factory is not None:
            return factory(negotiator.inner)
    return PASS_THROUGH
