"""XMPP STARTTLS (RFC 6120 §5) on the client (jabber:client) and server (jabber:server) ports.

The client speaks first: it opens its XML stream (RFC 6120 §4.2, §4.7) with ``to`` = the name
it wants served (the SNI name, else the target host) and ``version='1.0'``; the server answers
with its own stream header and ``<stream:features/>`` (§4.3.2). When the features hold
``<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`` we send ``<starttls/>``; the server
answers ``<proceed/>`` (TLS starts right after its last byte, §5.4.2.3) or ``<failure/>``
followed by the stream's close (§5.4.2.2).

    header --stream header--> features --<starttls/> offered--> starttls_sent --<proceed/>--> Ready
    header|features --<stream:error/>, </stream:stream>--> Failed (upgrade_refused)
    features --no <starttls/>--> Failed (upgrade_not_offered)

The server's bytes are read by :class:`XMLStreamReader`, a small incremental tokenizer for
the XML subset RFC 6120 §11.1 allows, written here rather than using a general XML parser so
that (a) no DTD, entity declaration, comment or processing instruction is ever processed —
``<!`` and ``<?`` fail the read on their first two bytes, so "billion laughs" never expands;
(b) every buffer is capped; (c) we know the exact byte where ``<proceed/>`` ends, so any
plaintext after it is caught as STARTTLS injection and never reaches TLS.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from tlswatch.errors import FailureClass
from tlswatch.protocols.base import Event, NegotiatorContext, Send, StateTable, TableNegotiator
from tlswatch.protocols.sniff import tls_hint

NS_STREAMS = "http://etherx.jabber.org/streams"  # RFC 6120 §4.8.1
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"  # RFC 6120 §5.4
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"  # RFC 6120 §4.9.3
NS_XML = "http://www.w3.org/XML/1998/namespace"

#: nesting allowed inside one top-level element (features nest three or four levels)
MAX_DEPTH = 16
#: elements one top-level element may hold (a features list is a few dozen)
MAX_ELEMENTS = 1000
#: one tag, one run of character data
MAX_TOKEN = 16 * 1024

STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"  # RFC 6120 §5.4.2.1


class XMLStreamError(Exception):
    """The bytes are not an XMPP XML stream (or break RFC 6120 §11.1); carries evidence."""

    def __init__(self, message: str, evidence: bytes) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass
class Element:
    """One parsed element: namespace, local name, attributes, children and text."""

    ns: str
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def find(self, ns: str, name: str) -> Element | None:
        for child in self.children:
            if child.ns == ns and child.name == name:
                return child
        return None


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The server's stream header (RFC 6120 §4.7): its attributes and default namespace."""

    element: Element
    default_ns: str


@dataclass(frozen=True, slots=True)
class TopLevel:
    """A complete child of the stream (features, proceed, error...)."""

    element: Element


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """``</stream:stream>``: the server closed its stream."""


XMLEvent = StreamOpened | TopLevel | StreamClosed

_NAME = r"[^\s/<>=\"'!?&]+"
_TAG = re.compile(
    rf"<(?P<end>/)?(?P<name>{_NAME})(?P<attrs>(?:\s+{_NAME}\s*=\s*(?:\"[^\"<]*\"|'[^'<]*'))*)"
    r"\s*(?P<empty>/)?>\Z",
    re.DOTALL,
)
_ATTR = re.compile(rf"({_NAME})\s*=\s*(?:\"([^\"<]*)\"|'([^'<]*)')")
_XML_DECL = re.compile(rb"<\?xml\s[^<>]*\?>")
_REF = re.compile(r"&(#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|[A-Za-z]+);")
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


def _unescape(text: str, raw: bytes) -> str:
    """Resolve the five predefined entities and character references (XML 1.0 §4.6, §4.1);
    any other entity reference is undeclared — RFC 6120 §11.1 forbids declaring any."""
    if "&" not in text:
        return text

    def ref(m: re.Match[str]) -> str:
        body = m.group(1)
        if body.startswith("#"):
            code = int(body[2:], 16) if body[1] in "xX" else int(body[1:])
            if not 0 < code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise XMLStreamError("invalid character reference", raw)
            return chr(code)
        if body not in _PREDEFINED:
            raise XMLStreamError(
                f"undeclared entity &{body}; (RFC 6120 §11.1 forbids entity declarations)", raw
            )
        return _PREDEFINED[body]

    out = _REF.sub(ref, text)
    if "&" in _REF.sub("", text):
        raise XMLStreamError("bare '&' in character data or attribute value", raw)
    return out


def _tls_record_prefix(head: bytes) -> bool:
    """Whether ``head`` (under 3 bytes) may still grow into a TLS record header: wait for
    the rest so the error names TLS however the bytes were cut."""
    return len(head) < 3 and 20 <= head[0] <= 24 and (len(head) < 2 or head[1] == 3)


class XMLStreamReader:
    """Incremental reader of the server's half of an XMPP stream.

    :meth:`feed` adds bytes; :meth:`next_event` returns the next stream header, complete
    top-level element or stream close, or None until more bytes arrive. The bytes after the
    last event stay in :attr:`pending`. Everything buffered is capped at ``max_bytes``.
    """

    def __init__(self, max_bytes: int) -> None:
        self._buf = bytearray()
        self._max_bytes = max_bytes
        self._started = False  # stream header seen
        self._decl_allowed = True  # the XML declaration may only open the stream
        self._scan = 0  # where the search for the current tag's '>' resumes
        self._quote = 0  # the quote byte we are inside while scanning a tag, or 0
        self._stack: list[tuple[Element, dict[str, str]]] = []  # open elements below the stream
        self._scope: dict[str, str] = {"xml": NS_XML}  # namespaces in scope at the stream
        self._count = 0
        self._element_bytes = 0

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) + self._element_bytes > self._max_bytes:
            raise XMLStreamError(
                f"more than {self._max_bytes} bytes of XML without a complete element",
                bytes(self._buf[:200]),
            )

    def next_event(self) -> XMLEvent | None:
        while self._buf:
            if self._buf[0] != 0x3C:  # character data up to the next '<'
                lt = self._buf.find(b"<")
                if lt < 0:
                    if len(self._buf) > MAX_TOKEN:
                        raise XMLStreamError("character data too long", bytes(self._buf[:200]))
                    if self._stack:  # text inside an element: wait for the rest
                        return None
                    if not self._started and _tls_record_prefix(bytes(self._buf)):
                        return None
                    lt = len(self._buf)
                self._text(bytes(self._buf[:lt]))
                self._consume(lt)
                continue
            if len(self._buf) < 2:
                return None
            if self._buf[1] == 0x21:  # '<!': DOCTYPE, ENTITY, comment, CDATA
                raise XMLStreamError(
                    "server sent '<!' (a DTD, entity declaration or comment): RFC 6120 §11.1 "
                    "forbids them; not processed",
                    bytes(self._buf[:200]),
                )
            if self._buf[1] == 0x3F:  # '<?': only the XML declaration, only first
                end = self._buf.find(b"?>")
                if end < 0:
                    if len(self._buf) > MAX_TOKEN:
                        raise XMLStreamError("XML declaration too long", bytes(self._buf[:200]))
                    return None
                decl = bytes(self._buf[: end + 2])
                if not (self._decl_allowed and _XML_DECL.fullmatch(decl)):
                    raise XMLStreamError(
                        "processing instruction in the stream (RFC 6120 §11.1 forbids them)",
                        decl,
                    )
                self._decl_allowed = False
                self._consume(end + 2)
                continue
            end = self._tag_end()
            if end < 0:
                return None
            raw = bytes(self._buf[: end + 1])
            self._consume(end + 1)
            event = self._tag(raw)
            if event is not None:
                return event
        return None

    def _consume(self, n: int) -> None:
        if self._stack:
            self._element_bytes += n
        del self._buf[:n]
        self._scan = 0
        self._quote = 0

    def _tag_end(self) -> int:
        """Index of the '>' closing the tag at the buffer start (quote-aware), or -1."""
        i = max(self._scan, 1)
        buf = self._buf
        n = len(buf)
        while i < n:
            b = buf[i]
            if self._quote:
                if b == self._quote:
                    self._quote = 0
            elif b in (0x22, 0x27):
                self._quote = b
            elif b == 0x3E:
                return i
            elif b == 0x3C:
                raise XMLStreamError("'<' inside a tag", bytes(buf[: i + 1][-200:]))
            i += 1
        self._scan = i
        if n > MAX_TOKEN:
            raise XMLStreamError(f"a tag longer than {MAX_TOKEN} bytes", bytes(buf[:200]))
        return -1

    def _text(self, raw: bytes) -> None:
        if not self._stack:
            # Between top-level elements only whitespace (keepalives, RFC 6120 §4.6.1).
            if raw.strip(b" \t\r\n"):
                where = "before the stream header" if not self._started else "in the stream"
                raise XMLStreamError(f"character data {where}", raw)
            return
        self._decl_allowed = False
        self._stack[-1][0].text += _unescape(raw.decode("utf-8", "replace"), raw)

    def _tag(self, raw: bytes) -> XMLEvent | None:
        self._decl_allowed = False
        m = _TAG.match(raw.decode("utf-8", "replace"))
        if m is None:
            raise XMLStreamError("malformed XML tag", raw)
        qname = m.group("name")
        if m.group("end"):
            if m.group("attrs") or m.group("empty"):
                raise XMLStreamError("malformed end tag", raw)
            return self._end(qname, raw)
        parent_scope = self._stack[-1][1] if self._stack else self._scope
        scope = dict(parent_scope)
        plain: list[tuple[str, str]] = []
        for a in _ATTR.finditer(m.group("attrs")):
            name = a.group(1)
            value = _unescape(a.group(2) if a.group(2) is not None else a.group(3), raw)
            if name == "xmlns":
                scope[""] = value
            elif name.startswith("xmlns:"):
                scope[name[6:]] = value
            else:
                plain.append((name, value))
        ns, local = self._resolve(qname, scope, raw, default=True)
        attrs: dict[str, str] = {}
        for name, value in plain:
            a_ns, a_local = self._resolve(name, scope, raw, default=False)
            attrs[f"{{{a_ns}}}{a_local}" if a_ns else a_local] = value
        element = Element(ns, local, attrs)
        if not self._started:
            if (ns, local) != (NS_STREAMS, "stream") or m.group("empty"):
                raise XMLStreamError(
                    "expected the server's <stream:stream> header (RFC 6120 §4.7)", raw
                )
            self._started = True
            self._scope = scope
            return StreamOpened(element, scope.get("", ""))
        self._count += 1
        if self._count > MAX_ELEMENTS or len(self._stack) >= MAX_DEPTH:
            raise XMLStreamError(
                f"element nesting deeper than {MAX_DEPTH} or more than {MAX_ELEMENTS} elements",
                raw,
            )
        if self._stack:
            self._stack[-1][0].children.append(element)
        if m.group("empty"):
            return self._complete(element)
        if not self._stack:
            self._element_bytes = len(raw)
        self._stack.append((element, scope))
        return None

    def _end(self, qname: str, raw: bytes) -> XMLEvent | None:
        if not self._stack:
            ns, local = self._resolve(qname, self._scope, raw, default=True)
            if (ns, local) == (NS_STREAMS, "stream"):
                return StreamClosed()
            raise XMLStreamError("end tag without a matching start tag", raw)
        element, scope = self._stack.pop()
        ns, local = self._resolve(qname, scope, raw, default=True)
        if (ns, local) != (element.ns, element.name):
            raise XMLStreamError(f"end tag </{qname}> does not match <{element.name}>", raw)
        return self._complete(element)

    def _complete(self, element: Element) -> XMLEvent | None:
        if self._stack:
            return None
        self._count = 0
        self._element_bytes = 0
        return TopLevel(element)

    @staticmethod
    def _resolve(qname: str, scope: dict[str, str], raw: bytes, default: bool) -> tuple[str, str]:
        prefix, sep, local = qname.partition(":")
        if not sep:
            return (scope.get("", "") if default else ""), qname
        if prefix not in scope or not local or ":" in local:
            raise XMLStreamError(f"undeclared namespace prefix {prefix!r}", raw)
        return scope[prefix], local


class _State(enum.Enum):
    HEADER = "header"
    FEATURES = "features"
    STARTTLS_SENT = "starttls_sent"
    DONE = "done"


_TABLE: StateTable[_State] = StateTable(
    {
        _State.HEADER: frozenset({_State.FEATURES, _State.DONE}),
        _State.FEATURES: frozenset({_State.STARTTLS_SENT, _State.DONE}),
        _State.STARTTLS_SENT: frozenset({_State.DONE}),
    }
)

_WAITING = {
    _State.HEADER: "the server's stream header",
    _State.FEATURES: "the stream features",
    _State.STARTTLS_SENT: "the answer to <starttls/>",
}


def stream_to(ctx: NegotiatorContext) -> str:
    """The ``to`` of our stream header: the SNI name, else the host (RFC 6120 §4.7.2).

    An IP literal is a valid domainpart (RFC 7622 §3.2), IPv6 in brackets."""
    name = ctx.sni or ctx.host
    try:
        if ipaddress.ip_address(name).version == 6:
            return f"[{name}]"
    except ValueError:
        pass
    return name


class _XMPPNegotiator(TableNegotiator):
    table = _TABLE
    initial = _State.HEADER
    finished = _State.DONE
    _state: _State
    #: the stream's default namespace: jabber:client or jabber:server (RFC 6120 §4.8.2)
    content_ns = ""

    def __init__(self, ctx: NegotiatorContext) -> None:
        super().__init__(ctx)
        self._reader = XMLStreamReader(self.max_buffer)
        self._info: dict[str, str] = {"stream_to": stream_to(ctx)}

    def stream_header(self) -> bytes:
        # RFC 6120 §4.7: to, version='1.0'; the name comes from the user: escape it
        to = quoteattr(self._info["stream_to"])
        return (
            "<?xml version='1.0'?>"
            f"<stream:stream to={to} version='1.0' xmlns='{self.content_ns}'"
            f"{self.extra_namespaces()} xmlns:stream='{NS_STREAMS}'>"
        ).encode()

    def extra_namespaces(self) -> str:
        return ""

    def initiate(self) -> list[Event]:
        return [Send(self.stream_header())]

    def _feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        try:
            self._reader.feed(data)
            while not self.done:
                event = self._reader.next_event()
                if event is None:
                    break
                events += self._on_event(event)
        except XMLStreamError as exc:
            waiting = _WAITING[self._state]
            hint = tls_hint(exc.evidence, "xmpps://") if self._state is _State.HEADER else ""
            self._move(_State.DONE)
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"{exc} while waiting for {waiting}{hint}",
                exc.evidence,
            )
        return events

    def _eof(self) -> list[Event]:
        waiting = _WAITING[self._state]
        self._move(_State.DONE)
        return self.closed(f"while we waited for {waiting}", self._reader.pending)

    def _on_event(self, event: XMLEvent) -> list[Event]:
        if isinstance(event, StreamClosed):
            waiting = _WAITING[self._state]
            self._move(_State.DONE)
            return self.fail(
                FailureClass.UPGRADE_REFUSED,
                f"server closed its XML stream while we waited for {waiting}",
            )
        if isinstance(event, StreamOpened):
            return self._on_header(event)
        element = event.element
        if (element.ns, element.name) == (NS_STREAMS, "error"):
            self._move(_State.DONE)
            return self.fail(FailureClass.UPGRADE_REFUSED, _stream_error_text(element))
        if self._state is _State.FEATURES:
            return self._on_features(element)
        return self._on_starttls_answer(element)

    def _on_header(self, event: StreamOpened) -> list[Event]:
        attrs = event.element.attrs
        for key in ("from", "id", "version"):
            if key in attrs:
                self._info[f"stream_{key}"] = attrs[key]
        if event.default_ns != self.content_ns:
            self._move(_State.DONE)
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"server's stream is {event.default_ns or 'without a namespace'!s}, "
                f"expected {self.content_ns} (RFC 6120 §4.8.2)",
            )
        version = attrs.get("version", "")
        major = version.partition(".")[0]
        if not major.isdigit() or int(major) < 1:
            # RFC 6120 §4.7.5: no version (or 0.x) is a pre-RFC 3920 server, which sends no
            # stream features and so cannot offer STARTTLS.
            self._move(_State.DONE)
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server's stream has version {version or '(none)'!s}, not 1.0: a pre-RFC 3920 "
                "server without stream features, so no STARTTLS",
            )
        self._move(_State.FEATURES)
        return []

    def _on_features(self, element: Element) -> list[Event]:
        if (element.ns, element.name) != (NS_STREAMS, "features"):
            self._move(_State.DONE)
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                f"expected <stream:features/>, got <{element.name}> (RFC 6120 §4.3.2)",
            )
        names = [c.name for c in element.children]
        self._info["features"] = " ".join(names)
        starttls = element.find(NS_TLS, "starttls")
        if starttls is None:
            self._move(_State.DONE)
            offered = ", ".join(names) or "none"
            return self.fail(
                FailureClass.UPGRADE_NOT_OFFERED,
                f"server's stream features do not offer STARTTLS (features: {offered})",
            )
        if starttls.find(NS_TLS, "required") is not None:
            self._info["starttls"] = "required"
        else:
            self._info["starttls"] = "optional"
        early = self._reader.pending
        if early.strip(b" \t\r\n"):
            # Bytes after the features, before our <starttls/> left: an answer to a command
            # not yet sent is an injection attempt (a <proceed/> planted by a man in the
            # middle would otherwise be taken for the go-ahead), never a server's reply.
            self._move(_State.DONE)
            return self.fail(
                FailureClass.PROTOCOL_ERROR,
                "server sent data after its stream features before we asked for STARTTLS "
                "(pipelined answer: possible STARTTLS injection)",
                early,
            )
        self._move(_State.STARTTLS_SENT)
        return [Send(STARTTLS)]

    def _on_starttls_answer(self, element: Element) -> list[Event]:
        self._move(_State.DONE)
        if element.ns == NS_TLS and element.name == "proceed":
            # RFC 6120 §5.4.2.3: TLS starts right after the closing '>' of <proceed/>.
            return self.ready(self._reader.pending, self._info)
        if element.ns == NS_TLS and element.name == "failure":
            return self.fail(
                FailureClass.UPGRADE_REFUSED,
                "server answered <starttls/> with <failure/> (RFC 6120 §5.4.2.2)",
            )
        return self.fail(
            FailureClass.PROTOCOL_ERROR,
            f"expected <proceed/> or <failure/>, got <{element.name}> (RFC 6120 §5.4.2)",
        )


def _stream_error_text(element: Element) -> str:
    """'server sent a stream error: host-unknown (text)' from a <stream:error/> (§4.9)."""
    condition = next(
        (c.name for c in element.children if c.ns == NS_STREAM_ERRORS and c.name != "text"),
        "undefined-condition",
    )
    text_el = element.find(NS_STREAM_ERRORS, "text")
    text = f": {text_el.text.strip()[:200]}" if text_el is not None and text_el.text.strip() else ""
    return f"server ended the stream with error {condition}{text}"


class XMPPClientNegotiator(_XMPPNegotiator):
    """Client-to-server STARTTLS (port 5222)."""

    content_ns = "jabber:client"


class XMPPServerNegotiator(_XMPPNegotiator):
    """Server-to-server STARTTLS (port 5269).

    RFC 6120 §4.7.1 wants a ``from`` on s2s streams; we have no domain to name and omit it,
    which Prosody and ejabberd accept before TLS. The dialback namespace is declared because
    older servers only offer features to peers that declare it (XEP-0220 §2.1)."""

    content_ns = "jabber:server"

    def extra_namespaces(self) -> str:
        return " xmlns:db='jabber:server:dialback'"


__all__ = [
    "Element",
    "XMLStreamError",
    "XMLStreamReader",
    "XMPPClientNegotiator",
    "XMPPServerNegotiator",
    "stream_to",
]
