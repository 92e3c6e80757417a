"""The sans-IO negotiator interface every protocol upgrade implements.

A negotiator is the client side of a protocol's plaintext dialogue, from connect to the
moment TLS may start. It never touches a socket: the driver feeds it the bytes that arrived
(``receive_data(b"")`` means the server closed) and carries out the events it returns.

Events:
    Send(data)      write these bytes to the server
    Ready(info)     the server said "go ahead": start the TLS handshake now
    Failed(failure) the dialogue ended without TLS, classified

An empty list of events means "need more data". After ``Ready`` the negotiator is done; any
plaintext that arrived after the go-ahead makes it return ``Failed`` (protocol_error: the
STARTTLS response-injection class, RFC 3207 §6 / CVE-2011-0411) instead, so such bytes can
never reach the TLS engine.

State machines keep their transitions in one table (STYLE.md rule 1): see
:class:`StateTable`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from tlswatch.errors import Failure, FailureClass, excerpt
from tlswatch.protocols.sniff import tls_hint

#: Default cap on the plaintext a negotiator buffers before giving up (STYLE.md rule 3).
DEFAULT_MAX_BUFFER = 64 * 1024


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    """TLS may start now. ``info`` holds what the dialogue learned (banner, capabilities)."""

    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Failed:
    failure: Failure


Event = Send | Ready | Failed


@dataclass(frozen=True, slots=True)
class NegotiatorContext:
    """What a negotiator may know about the target it talks to."""

    host: str
    port: int
    sni: str | None
    options: Mapping[str, str] = field(default_factory=dict)


S = TypeVar("S")


class StateTable(Generic[S]):
    """The allowed transitions of a state machine, in one place.

    ``move(src, dst)`` returns ``dst`` when the transition is in the table and raises
    ``AssertionError`` otherwise: a move outside the table is a bug in the negotiator,
    not a server problem.
    """

    def __init__(self, transitions: Mapping[S, frozenset[S]]) -> None:
        self._transitions = transitions

    def move(self, src: S, dst: S) -> S:
        if dst not in self._transitions.get(src, frozenset()):
            raise AssertionError(f"illegal transition {src!r} -> {dst!r}")
        return dst

    def allowed(self, src: S) -> frozenset[S]:
        return self._transitions.get(src, frozenset())


class Negotiator(abc.ABC):
    """Base class: the client side of one protocol's upgrade dialogue (sans-IO)."""

    #: bytes a negotiator buffers at most before failing with protocol_error
    max_buffer: int = DEFAULT_MAX_BUFFER

    def __init__(self, ctx: NegotiatorContext) -> None:
        self.ctx = ctx
        self.done = False

    def initiate(self) -> list[Event]:
        """Events to carry out right after connect (client-speaks-first protocols)."""
        return []

    @abc.abstractmethod
    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the server; ``b""`` means end of stream."""

    # Timers, for dialogues that act on silence (OpenVPN retransmits its reset over UDP;
    # auto-detection sends a ClientHello when the server does not speak first). The driver
    # calls handle_timer(now) once time.monotonic() reaches next_timer(); None: no timer.
    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> list[Event]:
        return []

    # Helpers shared by every negotiator: they only build events.
    def fail(self, code: FailureClass, message: str, evidence: bytes | None = None) -> list[Event]:
        self.done = True
        return [Failed(Failure(code, message, excerpt(evidence) if evidence else None))]

    def framing_error(
        self, message: str, evidence: bytes, waiting: str, implicit: str | None
    ) -> list[Event]:
        """protocol_error for bytes that broke the protocol's framing, naming the reply we
        were ``waiting`` for; when they are a TLS record, it advises the ``implicit``-TLS
        scheme (None: no advice in this state)."""
        hint = tls_hint(evidence, implicit) if implicit is not None else ""
        return self.fail(
            FailureClass.PROTOCOL_ERROR, f"{message} while waiting for {waiting}{hint}", evidence
        )

    def closed(self, during: str, evidence: bytes = b"") -> list[Event]:
        return self.fail(
            FailureClass.CLOSED, f"server closed the connection {during}", evidence or None
        )

    def ready(self, trailing: bytes, info: Mapping[str, str] | None = None) -> list[Event]:
        """Go to TLS unless plaintext followed the go-ahead (STARTTLS injection)."""
        if trailing:
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                "server sent plaintext after its go-ahead for TLS "
                "(STARTTLS response injection); refusing to start TLS",
                trailing,
            )
        self.done = True
        return [Ready(dict(info or {}))]


class TableNegotiator(Negotiator):
    """A negotiator whose states live in one :class:`StateTable` (STYLE.md rule 1).

    Subclasses set ``table``, ``initial`` and ``finished`` (the terminal state) and implement
    :meth:`_feed` (bytes that arrived) and :meth:`_eof` (the server closed); the guard every
    such negotiator needs — nothing after the end, end of stream to ``_eof`` — lives here.
    """

    table: ClassVar[StateTable[Any]]
    initial: ClassVar[Any]
    finished: ClassVar[Any]

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._state: Any = self.initial

    def _move(self, dst: Any) -> None:
        self._state = self.table.move(self._state, dst)

    def receive_data(self, data: bytes) -> list[Event]:
        if self._state is self.finished:
            return []
        if not data:
            return self._eof()
        return self._feed(data)

    @abc.abstractmethod
    def _feed(self, data: bytes) -> list[Event]:
        """Bytes from the server (never empty)."""

    @abc.abstractmethod
    def _eof(self) -> list[Event]:
        """The server closed the connection before the dialogue ended."""
