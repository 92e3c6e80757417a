"""The protocol registry: one line per URL scheme (PRODUCT.md §1).

Adding a protocol = one module in this package with a :class:`~tlswatch.protocols.base.Negotiator`
subclass, one line in :data:`REGISTRY`, and its recorded transcripts in the tests
(docs/architecture.md). Negotiators are referenced as ``"module:Class"`` strings and imported
on first use, so start-up stays fast however many protocols there are.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tlswatch.protocols.base import Negotiator, NegotiatorContext
    from tlswatch.tls.framing import RecordFramer

TLSMode = Literal["implicit", "starttls", "wrapped"]


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    """How TLS starts for one scheme."""

    name: str
    default_port: int | None
    tls_mode: TLSMode
    #: "module:Class" of the sans-IO negotiator, None for implicit TLS
    negotiator: str | None = None
    #: ALPN protocols offered in the ClientHello
    alpn: tuple[str, ...] = ()
    #: "module:Class" of a record framer for protocols that wrap TLS records (TDS, OpenVPN)
    framer: str | None = None
    #: protocol-specific URL options this scheme accepts, with what they mean
    options: Mapping[str, str] = field(default_factory=dict)
    #: a (option, value) pair that selects another spec, e.g. postgres direct=1
    variants: Mapping[tuple[str, str], ProtocolSpec] = field(default_factory=dict)
    reference: str = ""
    #: "udp" for datagram protocols (openvpn+udp); the driver's datagram transport
    transport: Literal["tcp", "udp"] = "tcp"

    def select(self, options: Mapping[str, str]) -> ProtocolSpec:
        for (key, value), spec in self.variants.items():
            if options.get(key) == value:
                return spec
        return self

    def negotiator_factory(self) -> Callable[[NegotiatorContext], Negotiator] | None:
        return _load(self.negotiator) if self.negotiator else None  # type: ignore[return-value]

    def framer_factory(self) -> Callable[..., RecordFramer] | None:
        return _load(self.framer) if self.framer else None  # type: ignore[return-value]


@cache
def _load(ref: str) -> Callable[..., object]:
    module, _, attr = ref.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj  # type: ignore[no-any-return]


def _implicit(
    name: str, port: int | None, alpn: tuple[str, ...] = (), ref: str = ""
) -> ProtocolSpec:
    return ProtocolSpec(name, port, "implicit", alpn=alpn, reference=ref)


_P = "tlswatch.protocols."
_SMTP_OPTS = {"ehlo": "name sent in EHLO/LHLO (default: the local host name)"}
_POSTGRES_DIRECT = _implicit("postgres", 5432, ("postgresql",), "PostgreSQL 17 direct SSL")
_MSSQL_STRICT = _implicit("mssql", 1433, ("tds/8.0",), "MS-TDS 8.0 (strict)")
_NATS_FIRST = _implicit("nats", 4222, ref="NATS handshake_first (nats-server 2.10+)")
_OPENVPN_OPTS = {
    "key": "tls-auth static key file (OpenVPN Static key V1): HMAC on every control packet",
    "key_direction": "0 | 1: the client's key-direction for key= (default: bidirectional)",
    "auth": "tls-auth HMAC digest (default SHA1, OpenVPN's default `auth`)",
}
_F = "tlswatch.tls."

# fmt: off
REGISTRY: dict[str, ProtocolSpec] = {
    "tls":         _implicit("tls", None),
    "https":       _implicit("https", 443, ("h2", "http/1.1"), "RFC 9110"),
    "smtp":        ProtocolSpec("smtp", 25, "starttls", _P + "smtp:SMTPNegotiator", options=_SMTP_OPTS, reference="RFC 3207, 5321"),
    "submission":  ProtocolSpec("submission", 587, "starttls", _P + "smtp:SMTPNegotiator", options=_SMTP_OPTS, reference="RFC 6409"),
    "smtps":       _implicit("smtps", 465, ref="RFC 8314"),
    "submissions": _implicit("submissions", 465, ref="RFC 8314"),
    "lmtp":        ProtocolSpec("lmtp", 24, "starttls", _P + "smtp:LMTPNegotiator", options=_SMTP_OPTS, reference="RFC 2033"),
    "imap":        ProtocolSpec("imap", 143, "starttls", _P + "imap:IMAPNegotiator", reference="RFC 9051"),
    "imaps":       _implicit("imaps", 993, ref="RFC 8314"),
    "pop3":        ProtocolSpec("pop3", 110, "starttls", _P + "pop3:POP3Negotiator", reference="RFC 2595"),
    "pop3s":       _implicit("pop3s", 995, ref="RFC 8314"),
    "sieve":       ProtocolSpec("sieve", 4190, "starttls", _P + "sieve:SieveNegotiator", reference="RFC 5804"),
    "ftp":         ProtocolSpec("ftp", 21, "starttls", _P + "ftp:FTPNegotiator", reference="RFC 4217"),
    "ftps":        _implicit("ftps", 990),
    "ldap":        ProtocolSpec("ldap", 389, "starttls", _P + "ldap:LDAPNegotiator", reference="RFC 4511 §4.14"),
    "ldaps":       _implicit("ldaps", 636),
    "postgres":    ProtocolSpec("postgres", 5432, "starttls", _P + "postgres:PostgresNegotiator", options={"direct": "1: TLS first with ALPN postgresql (PostgreSQL 17)"}, variants={("direct", "1"): _POSTGRES_DIRECT}, reference="PostgreSQL protocol §55.2.10"),
    "mysql":       ProtocolSpec("mysql", 3306, "starttls", _P + "mysql:MySQLNegotiator", reference="MySQL client/server protocol"),
    "mongodb":     _implicit("mongodb", 27017),
    "redis":       _implicit("redis", 6379),
    "rediss":      _implicit("rediss", 6380),
    "xmpp":        ProtocolSpec("xmpp", 5222, "starttls", _P + "xmpp:XMPPClientNegotiator", reference="RFC 6120 §5"),
    "xmpp-server": ProtocolSpec("xmpp-server", 5269, "starttls", _P + "xmpp:XMPPServerNegotiator", reference="RFC 6120 §5"),
    "xmpps":       _implicit("xmpps", 5223, ("xmpp-client",), "XEP-0368"),
    "nntp":        ProtocolSpec("nntp", 119, "starttls", _P + "nntp:NNTPNegotiator", reference="RFC 4642"),
    "nntps":       _implicit("nntps", 563, ref="RFC 4642"),
    "irc":         ProtocolSpec("irc", 6667, "starttls", _P + "irc:IRCNegotiator", reference="IRCv3 tls extension"),
    "ircs":        _implicit("ircs", 6697),
    "amqps":       _implicit("amqps", 5671),
    "mqtts":       _implicit("mqtts", 8883),
    "kafka":       _implicit("kafka", 9093),
    "sips":        _implicit("sips", 5061),
    "dot":         _implicit("dot", 853, ref="RFC 7858"),
    "mssql":       ProtocolSpec("mssql", 1433, "wrapped", _P + "mssql:MSSQLNegotiator", framer=_F + "tds:TDSFramer", options={"strict": "1: TDS 8.0, TLS first with ALPN tds/8.0"}, variants={("strict", "1"): _MSSQL_STRICT}, reference="MS-TDS §2.2.6.5, §3.3.5.1"),
    "rdp":         ProtocolSpec("rdp", 3389, "starttls", _P + "rdp:RDPNegotiator", reference="MS-RDPBCGR §1.3.1.1"),
    "vnc":         ProtocolSpec("vnc", 5900, "starttls", _P + "vnc:VNCNegotiator", reference="RFC 6143 §7.1, VeNCrypt 0.2"),
    "openvpn":     ProtocolSpec("openvpn", 1194, "wrapped", _P + "openvpn:OpenVPNNegotiator", framer=_F + "openvpn:OpenVPNFramer", options=_OPENVPN_OPTS, reference="OpenVPN protocol (ssl_pkt.h, reliable.h)"),
    "openvpn+udp": ProtocolSpec("openvpn+udp", 1194, "wrapped", _P + "openvpn:OpenVPNUDPNegotiator", framer=_F + "openvpn:OpenVPNFramer", options=_OPENVPN_OPTS, reference="OpenVPN protocol (ssl_pkt.h, reliable.h)", transport="udp"),
    "auto":        ProtocolSpec("auto", None, "implicit", _P + "auto:AutoNegotiator", framer=_P + "auto:framer_for", reference="detected from the port, the greeting, or a ClientHello"),
    "nats":        ProtocolSpec("nats", 4222, "starttls", _P + "nats:NATSNegotiator", options={"handshake_first": "1: TLS first, INFO inside TLS (nats-server 2.10+)"}, variants={("handshake_first", "1"): _NATS_FIRST}, reference="NATS client protocol"),
}
# fmt: on
REGISTRY["postgresql"] = REGISTRY["postgres"]
REGISTRY["mariadb"] = REGISTRY["mysql"]

#: port -> scheme, for bare ``host:port`` targets (first registered wins)
PORT_SCHEMES: dict[int, str] = {}
for _scheme, _spec in REGISTRY.items():
    if _spec.default_port is not None:
        PORT_SCHEMES.setdefault(_spec.default_port, _scheme)
PORT_SCHEMES[465] = "smtps"


def get_spec(scheme: str) -> ProtocolSpec | None:
    return REGISTRY.get(scheme)


__all__ = ["PORT_SCHEMES", "REGISTRY", "ProtocolSpec", "TLSMode", "get_spec"]
