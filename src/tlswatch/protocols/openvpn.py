"""OpenVPN: the control-channel reset exchange, before TLS runs inside control packets.

The client sends P_CONTROL_HARD_RESET_CLIENT_V2 and waits for
P_CONTROL_HARD_RESET_SERVER_V2 (see :mod:`tlswatch.tls.openvpn` for the packet format and
the reliability layer); then the TLS handshake runs inside P_CONTROL_V1 packets of the same
channel, through :class:`tlswatch.tls.openvpn.OpenVPNFramer` built from this negotiator.

A server with ``tls-auth`` or ``tls-crypt`` silently drops every packet whose HMAC is not
valid -- by design, to be invisible to scanners. So silence (or, over TCP, the server
closing) after our reset is reported as upgrade_refused saying a key is needed, before the
phase timeout, rather than as a mysterious timeout.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tlswatch.errors import FailureClass
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Ready, Send, StateTable
from tlswatch.tls.framing import FramingError
from tlswatch.tls.openvpn import (
    MAX_SENDS,
    P_CONTROL_HARD_RESET_CLIENT_V2,
    P_CONTROL_HARD_RESET_SERVER_V2,
    ControlChannel,
    TLSAuth,
    parse_static_key,
)

DEFAULT_TIMEOUT = 10.0
#: share of the phase timeout spent waiting for the reset answer before concluding that
#: the server drops our packets (leaves the rest for the verdict to arrive in time)
RESET_WAIT_SHARE = 0.7
MAX_KEY_FILE = 64 * 1024


class State(enum.Enum):
    START = "start"
    RESET_SENT = "reset_sent"
    DONE = "done"


TRANSITIONS: StateTable[State] = StateTable(
    {State.START: frozenset({State.RESET_SENT}), State.RESET_SENT: frozenset({State.DONE})}
)


def load_tls_auth(opts: Mapping[str, str]) -> TLSAuth | None:
    """The tls-auth context from ``key=``/``key_direction=``/``auth=``; ValueError with a
    message naming the problem."""
    path = opts.get("key")
    direction_text = opts.get("key_direction")
    if not path:
        if direction_text is not None:
            raise ValueError("key_direction needs key=PATH (the tls-auth static key)")
        return None
    if direction_text not in (None, "0", "1"):
        raise ValueError(f"key_direction must be 0 or 1, not {direction_text!r}")
    try:
        data = Path(path).read_bytes()[: MAX_KEY_FILE + 1]
    except OSError as exc:
        raise ValueError(f"cannot read tls-auth key {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE:
        raise ValueError(f"{path} is too large for an OpenVPN static key")
    try:
        key = parse_static_key(data.decode("ascii", "replace"))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    direction = None if direction_text is None else int(direction_text)
    return TLSAuth(key, direction, opts.get("auth") or "SHA1")


class OpenVPNNegotiator(Negotiator):
    """The reset exchange; ``channel`` carries on into the TLS handshake."""

    #: the driver's datagram transport (UDP) retransmits; TCP delivers by itself
    datagram = False

    def __init__(self, ctx: NegotiatorContext, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ctx)
        self.state = State.START
        self._clock = clock
        self._key_error: str | None = None
        auth = None
        try:
            auth = load_tls_auth(ctx.options)
        except ValueError as exc:
            self._key_error = str(exc)
        self.has_key = auth is not None
        try:
            timeout = float(ctx.options.get("timeout", DEFAULT_TIMEOUT))
        except ValueError:
            timeout = DEFAULT_TIMEOUT
        self._wait = timeout * RESET_WAIT_SHARE
        self._deadline: float | None = None
        # Retransmit a few times within the wait (UDP loses packets; a server may be busy).
        self.channel = ControlChannel(
            auth,
            retransmit=self.datagram,
            clock=clock,
            initial_rto=max(0.2, self._wait / 8),
            max_sends=1_000,  # the reset's own bound is the wait deadline below
        )

    def initiate(self) -> list[Event]:
        if self._key_error is not None:
            return self.fail(FailureClass.UPGRADE_REFUSED, self._key_error)
        self.state = TRANSITIONS.move(self.state, State.RESET_SENT)
        self._deadline = self._clock() + self._wait
        self.channel.send(P_CONTROL_HARD_RESET_CLIENT_V2)
        return [Send(self.channel.output())]

    def _no_answer(self, what: str) -> list[Event]:
        if self.channel.bytes_received:
            return self.fail(
                FailureClass.UPGRADE_TIMEOUT,
                f"{what}: the server sent {self.channel.bytes_received} bytes but no complete "
                "control packet",
            )
        if self.has_key:
            hint = (
                "the key or key_direction does not match the server's tls-auth, or the "
                "server uses tls-crypt"
            )
        else:
            hint = (
                "the server most likely requires tls-auth or tls-crypt (it silently drops "
                "packets without a valid HMAC): a key is needed, give key=PATH&key_direction=1"
            )
        return self.fail(FailureClass.UPGRADE_REFUSED, f"{what}: {hint}")

    def next_timer(self) -> float | None:
        if self.done or self._deadline is None:
            return None
        retransmit = self.channel.next_timer()
        return self._deadline if retransmit is None else min(retransmit, self._deadline)

    def handle_timer(self, now: float) -> list[Event]:
        if self.done:
            return []
        if self._deadline is not None and now >= self._deadline:
            sends = self.channel.sends_of_first
            tries = f" ({sends} transmissions)" if self.datagram else ""
            return self._no_answer(
                f"no answer to the OpenVPN control-channel reset within {self._wait:g}s{tries}"
            )
        self.channel.handle_timer(now)
        out = self.channel.output()
        return [Send(out)] if out else []

    def receive_data(self, data: bytes) -> list[Event]:
        if self.done:
            return []
        if not data:
            if self.channel.packets_received == 0:
                return self._no_answer("server closed the connection without answering our reset")
            return self.closed("during the OpenVPN reset exchange")
        try:
            packets = self.channel.receive(data)
        except FramingError as exc:
            return self.fail(FailureClass(exc.code), str(exc), exc.evidence)
        for p in packets:
            if p.opcode == P_CONTROL_HARD_RESET_SERVER_V2:
                self.state = TRANSITIONS.move(self.state, State.DONE)
                self.done = True
                self.channel.max_sends = MAX_SENDS
                # The ack of the server's reset rides on our first P_CONTROL_V1 (the
                # ClientHello), so nothing is sent here; bytes after the reset stay in the
                # channel's framing, never reach TLS unframed.
                info = {
                    "server_session_id": (self.channel.remote_session_id or b"").hex(),
                    "tls_auth": "yes" if self.has_key else "no",
                }
                return [Ready(info)]
        return []


class OpenVPNUDPNegotiator(OpenVPNNegotiator):
    datagram = True
