"""Does a server certificate match the name (or IP address) a client connects to?

The rules are RFC 6125 §6 as OpenSSL's ``X509_check_host``/``X509_check_ip`` apply them
(``openssl verify -verify_hostname`` / ``-verify_ip`` give the same answers):

- A DNS name is compared with the subjectAltName dNSName entries, case-insensitively, a
  trailing dot ignored. A wildcard is allowed only as the whole left-most label
  (``*.example.com``), matches exactly one non-empty label, and needs at least two labels
  after it (``*.com`` matches nothing). Partial-label wildcards (``w*.example.com``) are
  not honoured (RFC 6125 §6.4.3 leaves them optional; browsers refuse them).
- The subject CN is consulted only when the certificate has no dNSName SAN at all
  (RFC 6125 §6.4.4): no CN fallback when SANs exist.
- An IP address is compared byte-wise with iPAddress SANs only (RFC 5280 §4.2.1.6);
  never with the CN, never with dNSName entries.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from cryptography import x509
from cryptography.x509.oid import NameOID

from tlswatch.x509.certinfo import subject_alt_name


def _dns_sans(cert: x509.Certificate) -> list[str] | None:
    try:
        san = subject_alt_name(cert)
    except x509.ExtensionNotFound:
        return None
    except Exception:  # a malformed SAN matches nothing
        return []
    names = san.get_values_for_type(x509.DNSName)
    return names or None


def _ip_sans(cert: x509.Certificate) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        san = subject_alt_name(cert)
    except Exception:  # absent or malformed: no IP identities
        return []
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for value in san.get_values_for_type(x509.IPAddress):
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            out.append(value)
    return out


def _common_names(cert: x509.Certificate) -> list[str]:
    try:
        attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except Exception:
        return []
    return [a.value for a in attrs if isinstance(a.value, str)]


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def dns_name_matches(pattern: str, host: str) -> bool:
    """One presented identifier ``pattern`` against the reference name ``host``."""
    p = _norm(pattern)
    h = _norm(host)
    if not p or not h:
        return False
    if "*" not in p:
        return p == h
    label, _, rest = p.partition(".")
    # RFC 6125 §6.4.3: the wildcard must be the complete left-most label, and (as OpenSSL
    # and browsers require) be followed by at least two labels.
    if label != "*" or "*" in rest or rest.count(".") < 1:
        return False
    h_label, _, h_rest = h.partition(".")
    return bool(h_label) and h_rest == rest


#: the characters of an IPv4 literal; anything else without a colon is not an address
_IPV4_CHARS = frozenset("0123456789.")


def parse_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = name.strip("[]")
    # A DNS name is neither an IPv4 literal (digits and dots only) nor an IPv6 one (it has
    # a colon): answered without ipaddress, which raises twice to say so (≈ 3 µs per
    # endpoint, issue 6). Anything that could be an address is parsed as before.
    if ":" not in text and not _IPV4_CHARS.issuperset(text):
        return None
    return _parse_ip(text)


@lru_cache(maxsize=256)  # bounded; the addresses are immutable, so sharing them is safe
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Cached: a scan checks the same address literal on each of its ports, and parsing one
    # is ≈ 2 µs of pure Python (issue 6).
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def matches(cert: x509.Certificate, name: str) -> bool:
    """True when ``cert`` is valid for ``name`` (a DNS name or an IP address literal)."""
    ip = parse_ip(name)
    if ip is not None:
        return ip in _ip_sans(cert)
    sans = _dns_sans(cert)
    if sans is not None:
        return any(dns_name_matches(s, name) for s in sans)
    return any(dns_name_matches(cn, name) for cn in _common_names(cert))


def identities(cert: x509.Certificate) -> list[str]:
    """What the certificate is valid for, for messages: DNS and IP SANs, else the CN."""
    out = list(_dns_sans(cert) or [])
    out += [str(ip) for ip in _ip_sans(cert)]
    return out or _common_names(cert)


__all__ = ["dns_name_matches", "identities", "matches", "parse_ip"]
