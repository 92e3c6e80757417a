"""FTP AUTH TLS (RFC 4217 §4, on RFC 2228's AUTH command): the server speaks first.

Replies are framed as RFC 959 §4.2 says: ``xyz text`` on one line, or ``xyz-text`` opening a
multi-line reply that ends at the first line starting with the same code and a space. We
wait for the 220 greeting (a 120 "ready in nnn minutes" may come before it, RFC 959 §4.2;
421 means the server will not serve us), send ``AUTH TLS`` and read its reply:

    234           go ahead, TLS starts now (RFC 4217 §4); 334 too, as pre-RFC drafts sent
    500 501 502   the command or mechanism is not known: TLS not offered
    504 530       (vsftpd without ssl_enable answers 530 to every command before login)
    431 534 421   the server refuses (resources, policy, closing): upgrade refused

    greeting --220--> auth_sent --234--> done (Ready)
    greeting --120--> greeting;  anything else --> done (Failed)
"""

from __future__ import annotations

import enum

from tlswatch.errors import FailureClass
from tlswatch.protocols import replies
from tlswatch.protocols.base import Event, NegotiatorContext, Send, StateTable, TableNegotiator
from tlswatch.protocols.replies import MAX_REPLY_LINES, Reply, ReplyDialect, ReplyError

AUTH_TLS = b"AUTH TLS\r\n"  # RFC 4217 §4: the mechanism name is "TLS"

#: replies to AUTH TLS meaning the server does not offer TLS (RFC 2228 §4 AUTH replies:
#: 500/501 not understood, 502 not implemented, 504 mechanism not supported)
NOT_OFFERED = frozenset({500, 501, 502, 504, 530})


class ReplyParser(replies.ReplyParser):
    """RFC 959 §4.2 reply framing: codes 1yz-5yz, and a multi-line reply may hold free text
    lines until the line starting with its code and a space."""

    dialect = ReplyDialect(
        protocol="FTP",
        spec="RFC 959 §4.2",
        lowest_first_digit=1,
        coded_lines=False,
        long_line="reply line too long",
    )


class _State(enum.Enum):
    GREETING = "greeting"
    AUTH_SENT = "auth_sent"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.GREETING: frozenset({_State.GREETING, _State.AUTH_SENT, _State.DONE}),
        _State.AUTH_SENT: frozenset({_State.DONE}),
    }
)


class FTPNegotiator(TableNegotiator):
    """Client side of FTP AUTH TLS."""

    table = _TABLE
    initial = _State.GREETING
    finished = _State.DONE
    _state: _State

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._parser = ReplyParser(self.max_buffer)
        self._info: dict[str, str] = {}

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
            waiting = "the greeting" if self._state is _State.GREETING else "the AUTH TLS reply"
            self._move(_State.DONE)
            return self.framing_error(str(exc), exc.evidence, waiting, "ftps://")

    def _eof(self) -> list[Event]:
        state = self._state
        self._move(_State.DONE)
        partial = self._parser.pending
        if state is _State.GREETING:
            if partial or self._parser.in_reply:
                return self.closed("in the middle of its greeting", partial)
            return self.closed("before sending its FTP greeting")
        return self.closed("without answering AUTH TLS", partial)

    def _on_reply(self, reply: Reply) -> list[Event]:
        if self._state is _State.GREETING:
            return self._on_greeting(reply)
        return self._on_auth_reply(reply)

    def _on_greeting(self, reply: Reply) -> list[Event]:
        if reply.code == 120:  # RFC 959 §4.2: "Service ready in nnn minutes"; 220 follows
            self._move(_State.GREETING)
            self._info["delay"] = str(reply)
            return []
        if reply.code == 220:
            self._move(_State.AUTH_SENT)
            self._info["banner"] = reply.text
            return [Send(AUTH_TLS)]
        self._move(_State.DONE)
        if reply.code >= 400:  # 421 service not available, RFC 959 §4.2
            return self.fail(
                FailureClass.UPGRADE_REFUSED,
                f"server refused the FTP session: {reply}",
            )
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected FTP greeting {reply.code} (expected 220, RFC 959 §5.4)",
            str(reply).encode(),
        )

    def _on_auth_reply(self, reply: Reply) -> list[Event]:
        self._move(_State.DONE)
        if reply.code in (234, 334):
            info = {**self._info, "auth_reply": str(reply)}
            # RFC 4217 §4: the TLS handshake starts right after the reply; any bytes after
            # its line are plaintext injected ahead of TLS.
            return self.ready(self._parser.pending, info)
        if reply.code in NOT_OFFERED:
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server does not support AUTH TLS: {reply}",
            )
        if reply.code >= 400:
            return self.fail(FailureClass.UPGRADE_REFUSED, f"server refused AUTH TLS: {reply}")
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"unexpected reply {reply.code} to AUTH TLS (expected 234, RFC 4217 §4)",
            str(reply).encode(),
        )


__all__ = ["MAX_REPLY_LINES", "FTPNegotiator", "Reply", "ReplyError", "ReplyParser"]
