"""LDAP StartTLS (RFC 4511 §4.14): the client speaks first.

We send one ExtendedRequest (§4.12) with requestName 1.3.6.1.4.1.1466.20037 as message 1
and read LDAPMessages (§4.2) framed by their BER length until the ExtendedResponse for
message 1 arrives. resultCode success (0) is the go-ahead (§4.14.2); anything else leaves
the session in plaintext and is a refusal. A Notice of Disconnection (§4.4.1: messageID 0,
responseName 1.3.6.1.4.1.1466.20036) means the server is dropping us.

    start --initiate--> await_response --success--> done (Ready)
                                       --refusal/garbage/EOF--> done (Failed)
"""

from __future__ import annotations

import enum

from tlswatch.errors import FailureClass, excerpt
from tlswatch.protocols import ber
from tlswatch.protocols.base import Event, Negotiator, NegotiatorContext, Send, StateTable
from tlswatch.protocols.sniff import tls_hint

STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"  # RFC 4511 §4.14.1
NOTICE_OF_DISCONNECTION_OID = b"1.3.6.1.4.1.1466.20036"  # RFC 4511 §4.4.1
MESSAGE_ID = 1
#: unsolicited notifications (§4.4) other than a disconnection we skip before giving up
MAX_NOTIFICATIONS = 8

# RFC 4511 §4.2: LDAPMessage ::= SEQUENCE { messageID, protocolOp CHOICE {...}, controls [0] }
EXTENDED_REQUEST = ber.application(23)  # ExtendedRequest ::= [APPLICATION 23] SEQUENCE
EXTENDED_RESPONSE = ber.application(24)  # ExtendedResponse ::= [APPLICATION 24] SEQUENCE
REQUEST_NAME = ber.context(0)  # requestName [0] LDAPOID
RESPONSE_NAME = ber.context(10)  # responseName [10] LDAPOID
REFERRAL = ber.context(3, constructed=True)  # referral [3] Referral

#: RFC 4511 §4.1.9 and Appendix A: the result codes' names
RESULT_CODES: dict[int, str] = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    3: "timeLimitExceeded",
    4: "sizeLimitExceeded",
    5: "compareFalse",
    6: "compareTrue",
    7: "authMethodNotSupported",
    8: "strongerAuthRequired",
    10: "referral",
    11: "adminLimitExceeded",
    12: "unavailableCriticalExtension",
    13: "confidentialityRequired",
    14: "saslBindInProgress",
    16: "noSuchAttribute",
    17: "undefinedAttributeType",
    18: "inappropriateMatching",
    19: "constraintViolation",
    20: "attributeOrValueExists",
    21: "invalidAttributeSyntax",
    32: "noSuchObject",
    33: "aliasProblem",
    34: "invalidDNSyntax",
    36: "aliasDereferencingProblem",
    48: "inappropriateAuthentication",
    49: "invalidCredentials",
    50: "insufficientAccessRights",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    54: "loopDetect",
    64: "namingViolation",
    65: "objectClassViolation",
    66: "notAllowedOnNonLeaf",
    67: "notAllowedOnRDN",
    68: "entryAlreadyExists",
    69: "objectClassModsProhibited",
    71: "affectsMultipleDSAs",
    80: "other",
}

#: what a result code means for StartTLS, for the refusal message
_REFUSAL_HINTS: dict[int, str] = {
    2: "the server does not recognise StartTLS or has no TLS configured (RFC 4511 §4.12)",
    52: "the server's TLS subsystem is not available (RFC 4511 §4.14.2)",
    1: "StartTLS is not allowed now, e.g. TLS is already active (RFC 4511 §4.14.1)",
}


def start_tls_request(message_id: int = MESSAGE_ID) -> bytes:
    """The StartTLS ExtendedRequest (RFC 4511 §4.14.1): no requestValue."""
    op = ber.encode_sequence(ber.encode(REQUEST_NAME, STARTTLS_OID), tag=EXTENDED_REQUEST)
    return ber.encode_sequence(ber.encode_integer(message_id), op)


def result_code_name(code: int) -> str:
    return f"{RESULT_CODES.get(code, 'unknown result code')} ({code})"


class _State(enum.Enum):
    START = "start"
    AWAIT_RESPONSE = "await_response"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.START: frozenset({_State.AWAIT_RESPONSE}),
        _State.AWAIT_RESPONSE: frozenset({_State.DONE}),
    }
)


class _Malformed(Exception):
    """A complete LDAPMessage that is not what RFC 4511 allows here."""


class LDAPNegotiator(Negotiator):
    """Client side of LDAP StartTLS."""

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._state = _State.START
        self._buf = bytearray()
        self._notifications = 0

    def _move(self, dst: _State) -> None:
        self._state = _TABLE.move(self._state, dst)

    def initiate(self) -> list[Event]:
        self._move(_State.AWAIT_RESPONSE)
        return [Send(start_tls_request())]

    def receive_data(self, data: bytes) -> list[Event]:
        if self._state is not _State.AWAIT_RESPONSE:
            return []
        if not data:
            self._move(_State.DONE)
            if self._buf:
                return self.closed("in the middle of its answer to StartTLS", bytes(self._buf))
            return self.closed("without answering the StartTLS request")
        self._buf += data
        while self._state is _State.AWAIT_RESPONSE:
            events = self._next_message()
            if events is None:
                return []
            if events:
                return events
        return []

    def _protocol_error(self, message: str, evidence: bytes) -> list[Event]:
        self._move(_State.DONE)
        return self.fail(FailureClass.PROTOCOL_ERROR, message, evidence)

    def _next_message(self) -> list[Event] | None:
        """Handle one complete LDAPMessage from the buffer: events to return, [] to go on
        reading the next message, None when more bytes are needed."""
        buf = self._buf
        if not buf:
            return None
        if buf[0] != 0x30:  # every LDAPMessage is a universal SEQUENCE (RFC 4511 §4.2)
            return self._protocol_error(
                "not an LDAP server: the answer to StartTLS is not a BER LDAPMessage"
                + tls_hint(bytes(buf), "ldaps://"),
                bytes(buf),
            )
        try:
            got = ber.read_tlv(buf, self.max_buffer)
        except ber.BERError as exc:
            return self._protocol_error(f"malformed LDAP message: {exc}", bytes(buf))
        if got is None:
            return None
        message, used = got
        raw = bytes(buf[:used])
        del buf[:used]
        try:
            return self._on_message(message)
        except (_Malformed, ber.BERError) as exc:
            return self._protocol_error(f"malformed LDAP message: {exc}", raw)

    def _on_message(self, message: ber.TLV) -> list[Event]:
        parts = message.children(self.max_buffer)
        if len(parts) < 2 or parts[0].tag != ber.INTEGER:
            raise _Malformed("expected SEQUENCE { messageID INTEGER, protocolOp, ... }")
        message_id = ber.decode_integer(parts[0].value)
        op = parts[1]
        if op.tag != EXTENDED_RESPONSE:
            raise _Malformed(
                f"message {message_id} carries {op.tag}, not an ExtendedResponse [APPLICATION 24]"
            )
        code, diagnostic, name = _parse_extended_response(op, self.max_buffer)
        if message_id == 0:  # unsolicited notification, RFC 4511 §4.4
            if name == NOTICE_OF_DISCONNECTION_OID:
                self._move(_State.DONE)
                return self.fail(
                    FailureClass.UPGRADE_REFUSED,
                    "server sent a Notice of Disconnection (RFC 4511 §4.4.1) instead of "
                    f"answering StartTLS: {result_code_name(code)}" + _said(diagnostic),
                )
            self._notifications += 1
            if self._notifications > MAX_NOTIFICATIONS:
                raise _Malformed(f"more than {MAX_NOTIFICATIONS} unsolicited notifications")
            return []
        if message_id != MESSAGE_ID:
            raise _Malformed(f"answer to message {message_id}; we only sent message {MESSAGE_ID}")
        if code != 0:
            self._move(_State.DONE)
            hint = _REFUSAL_HINTS.get(code)
            # protocolError (2) is how a server that does not implement the StartTLS
            # extended operation answers (RFC 4511 §4.12): the capability is missing.
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED if code == 2 else FailureClass.UPGRADE_REFUSED,
                f"server refused StartTLS: {result_code_name(code)}"
                + _said(diagnostic)
                + (f" — {hint}" if hint else ""),
            )
        self._move(_State.DONE)
        info = {"ldap_result": result_code_name(code)}
        if diagnostic:
            info["ldap_diagnostic"] = excerpt(diagnostic, 200)
        # Anything after the success response is plaintext the server sent after its
        # go-ahead (RFC 4511 §4.14.2: TLS starts right after it): refuse it.
        return self.ready(bytes(self._buf), info)


def _parse_extended_response(op: ber.TLV, max_length: int) -> tuple[int, bytes, bytes | None]:
    """resultCode, diagnosticMessage and responseName of an ExtendedResponse (§4.12):
    COMPONENTS OF LDAPResult (§4.1.9), then optional referral [3], responseName [10] and
    responseValue [11]."""
    fields = op.children(max_length)
    if (
        len(fields) < 3
        or fields[0].tag != ber.ENUMERATED
        or fields[1].tag != ber.OCTET_STRING
        or fields[2].tag != ber.OCTET_STRING
    ):
        raise _Malformed(
            "ExtendedResponse does not start with resultCode ENUMERATED, matchedDN and "
            "diagnosticMessage OCTET STRINGs"
        )
    code = ber.decode_integer(fields[0].value)
    name = next((f.value for f in fields[3:] if f.tag == RESPONSE_NAME), None)
    return code, fields[2].value, name


def _said(diagnostic: bytes) -> str:
    return f': "{excerpt(diagnostic, 200)}"' if diagnostic else ""


__all__ = ["LDAPNegotiator", "start_tls_request"]
