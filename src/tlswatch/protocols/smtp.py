"""SMTP and LMTP STARTTLS (RFC 3207 on RFC 5321; LMTP: RFC 2033): the server speaks first.

Replies are framed as RFC 5321 §4.2 says::

    Reply-line = *( Reply-code "-" [ textstring ] CRLF )
                    Reply-code [ SP textstring ] CRLF

every line of one reply carries the same code (§4.2.1), ``xyz-`` continues and ``xyz `` (or
the bare code) ends it. The dialogue, one state table:

    greeting  220 -> EHLO (LMTP: LHLO, RFC 2033 §4.1)
              554 "no SMTP service here", 421, other 4xx/5xx -> upgrade_refused
    hello     250 listing STARTTLS (RFC 3207 §4) -> STARTTLS; 250 without it -> not offered
              5xx: the server does not speak ESMTP; without EHLO there is no STARTTLS, so we
              never fall back to HELO -> upgrade_not_offered;  4xx -> upgrade_refused
    starttls  220 -> Ready (RFC 3207 §4); 500/502/504 (command unknown after all) -> not
              offered; 454 and every other 4xx/5xx -> upgrade_refused

Anything the server sends after the 220 to STARTTLS is plaintext injected ahead of TLS
(RFC 3207 §6, CVE-2011-0411): ``ready()`` turns it into a protocol_error.
"""

from __future__ import annotations

import enum
import platform
import re
from functools import cache

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols import replies
from tlswatch.protocols.base import Event, NegotiatorContext, Send, StateTable, TableNegotiator
from tlswatch.protocols.replies import MAX_REPLY_LINES, Reply, ReplyDialect, ReplyError

STARTTLS = b"STARTTLS\r\n"  # RFC 3207 §4: no parameters
#: name sent in EHLO when neither ``ehlo=`` nor a fully qualified local host name is known
#: (RFC 2606 reserves .invalid: it cannot belong to anyone)
FALLBACK_EHLO = "tlswatch.invalid"

#: replies meaning "this command does not exist here" (RFC 5321 §4.2.2/§4.2.4: 500 syntax
#: error / command unrecognised, 502 command not implemented, 504 parameter not implemented)
UNKNOWN_COMMAND = frozenset({500, 502, 504})

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
#: RFC 5321 §4.1.3 address literals: [192.0.2.1] or [IPv6:2001:db8::1]
_ADDRESS_LITERAL = re.compile(r"^\[(\d{1,3}(\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]{2,45})\]$")


def valid_ehlo_name(name: str) -> bool:
    """Whether ``name`` may follow EHLO: a domain or an address literal (RFC 5321 §4.1.1.1).

    This is also what keeps a CR/LF (a second, injected command) out of the EHLO line."""
    return bool(_DOMAIN.match(name) or _ADDRESS_LITERAL.match(name))


@cache
def default_ehlo_name() -> str:
    """The local host name when it is fully qualified (RFC 5321 §4.1.4 asks for the
    client's FQDN), else :data:`FALLBACK_EHLO`: a bare "vm" or "localhost" says nothing
    and some servers reject it."""
    node = platform.node().rstrip(".")
    if "." in node and valid_ehlo_name(node) and not node.lower().startswith("localhost"):
        return node.lower()
    return FALLBACK_EHLO


class ReplyParser(replies.ReplyParser):
    """RFC 5321 §4.2 reply framing: codes 2yz-5yz, and every line of a multi-line reply
    carries the reply's code (§4.2.1)."""

    dialect = ReplyDialect(
        protocol="SMTP",
        spec="RFC 5321 §4.2",
        lowest_first_digit=2,
        coded_lines=True,
        long_line="reply line longer than {max_line} bytes",
    )


def capabilities(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) and their parameters (RFC 5321 §4.1.1.1: the first line is
    the server's domain and greeting, each further line ``ehlo-keyword *(SP ehlo-param)``)."""
    caps: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            caps.setdefault(keyword.upper(), params.strip())
    return caps


class _State(enum.Enum):
    GREETING = "greeting"
    HELLO_SENT = "hello_sent"
    STARTTLS_SENT = "starttls_sent"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.GREETING: frozenset({_State.HELLO_SENT, _State.DONE}),
        _State.HELLO_SENT: frozenset({_State.STARTTLS_SENT, _State.DONE}),
        _State.STARTTLS_SENT: frozenset({_State.DONE}),
    }
)


class SMTPNegotiator(TableNegotiator):
    """Client side of SMTP STARTTLS (schemes ``smtp`` and ``submission``)."""

    table = _TABLE
    initial = _State.GREETING
    finished = _State.DONE
    _state: _State

    #: the greeting command: EHLO (RFC 5321 §4.1.1.1); LMTP uses LHLO
    hello = "EHLO"
    protocol = "SMTP"
    #: what to use instead when the port turns out to speak TLS at once
    implicit_scheme = "smtps://"

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._parser = ReplyParser(self.max_buffer)
        self._info: dict[str, str] = {}
        #: the 5xx reply that rejected EHLO/LHLO, if one did (auto:// tries LHLO after a
        #: rejected EHLO: RFC 2033 §4.1 has LMTP servers refuse EHLO, 500 recommended)
        self.hello_rejected: Reply | None = None
        name = ctx.options.get("ehlo", "")
        # targets.py validates ehlo=; this keeps a bad name from reaching the wire anyway.
        self.hello_name = name if name and valid_ehlo_name(name) else default_ehlo_name()

    def _feed(self, data: bytes) -> list[Event]:
        try:
            self._parser.feed(data)
            events: list[Event] = []
            for reply in self._parser.replies():
                events += self._on_reply(reply)
                if self.done:
                    break
            return events
        except ReplyError as exc:
            waiting = self._waiting_for()
            self._move(_State.DONE)
            return self.framing_error(str(exc), exc.evidence, waiting, self.implicit_scheme)

    def _waiting_for(self) -> str:
        if self._state is _State.GREETING:
            return f"the {self.protocol} greeting"
        if self._state is _State.HELLO_SENT:
            return f"the {self.hello} reply"
        return "the STARTTLS reply"

    def _eof(self) -> list[Event]:
        state = self._state
        self._move(_State.DONE)
        partial = self._parser.pending
        if state is _State.GREETING:
            if self._parser.in_reply:
                return self.closed("in the middle of its greeting", partial)
            return self.closed(f"before sending its {self.protocol} greeting")
        if state is _State.HELLO_SENT:
            return self.closed(f"without answering {self.hello}", partial)
        return self.closed("without answering STARTTLS", partial)

    def _on_reply(self, reply: Reply) -> list[Event]:
        if self._state is _State.GREETING:
            return self._on_greeting(reply)
        if self._state is _State.HELLO_SENT:
            return self._on_hello(reply)
        return self._on_starttls(reply)

    def _on_greeting(self, reply: Reply) -> list[Event]:
        if reply.code == 220:
            self._move(_State.HELLO_SENT)
            self._info["banner"] = reply.text
            return [Send(f"{self.hello} {self.hello_name}\r\n".encode("ascii"))]
        self._move(_State.DONE)
        if reply.code == 554:  # RFC 5321 §3.1: "no SMTP service here"
            return self.fail(
                FailureClass.UPGRADE_REFUSED,
                f"server refused the {self.protocol} session (no service for us): {reply}",
            )
        if reply.code >= 400:  # 421: service not available, closing (RFC 5321 §3.8)
            return self.fail(
                FailureClass.UPGRADE_REFUSED, f"server refused the {self.protocol} session: {reply}"
            )
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected {self.protocol} greeting {reply.code} (expected 220, RFC 5321 §4.3.1)",
            str(reply).encode(),
        )

    def _on_hello(self, reply: Reply) -> list[Event]:
        if reply.code == 250:
            caps = capabilities(reply)
            self._info["ehlo"] = excerpt(reply.lines[0].strip().encode("utf-8", "replace"), 200)
            self._info["capabilities"] = " ".join(caps)
            if "STARTTLS" in caps:
                self._move(_State.STARTTLS_SENT)
                return [Send(STARTTLS)]
            self._move(_State.DONE)
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server does not offer STARTTLS: its {self.hello} reply lists "
                + (self._info["capabilities"] or "no extensions"),
            )
        self._move(_State.DONE)
        if reply.code >= 500:
            self.hello_rejected = reply
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server rejected {self.hello} ({reply}): {self._no_extensions}, "
                "so it cannot offer STARTTLS (RFC 3207 §4)",
            )
        if reply.code >= 400:
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused {self.hello}: {reply}")
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected reply {reply.code} to {self.hello} (expected 250, RFC 5321 §4.3.2)",
            str(reply).encode(),
        )

    @property
    def _no_extensions(self) -> str:
        return "it does not support ESMTP"

    def _on_starttls(self, reply: Reply) -> list[Event]:
        self._move(_State.DONE)
        if reply.code == 220:
            # RFC 3207 §4: the TLS handshake starts right after this reply; bytes after its
            # last line are plaintext injected ahead of TLS.
            return self.ready(self._parser.pending, {**self._info, "starttls_reply": str(reply)})
        if reply.code in UNKNOWN_COMMAND:
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server advertised STARTTLS but does not know the command: {reply}",
            )
        if reply.code >= 400:  # 454 TLS not available temporarily (RFC 3207 §4), 5xx policy
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused STARTTLS: {reply}")
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected reply {reply.code} to STARTTLS (expected 220, RFC 3207 §4)",
            str(reply).encode(),
        )


class LMTPNegotiator(SMTPNegotiator):
    """Client side of LMTP STARTTLS: SMTP's dialogue with LHLO instead of EHLO (RFC 2033
    §4.1; an LMTP server must not accept EHLO), STARTTLS as an SMTP extension."""

    hello = "LHLO"
    protocol = "LMTP"
    implicit_scheme = "tls://"

    @property
    def _no_extensions(self) -> str:
        return "it does not speak LMTP"


__all__ = [
    "FALLBACK_EHLO",
    "MAX_REPLY_LINES",
    "LMTPNegotiator",
    "Reply",
    "ReplyError",
    "ReplyParser",
    "SMTPNegotiator",
    "capabilities",
    "default_ehlo_name",
    "valid_ehlo_name",
]
