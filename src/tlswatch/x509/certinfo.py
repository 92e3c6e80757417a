"""Facts of one certificate (subject, issuer, dates, key, SAN) from its DER bytes.

Certificate fields are untrusted input: names are rendered with RFC 4514 escaping, and any
DER that cannot be parsed yields a :class:`~tlswatch.model.CertInfo` with ``parse_error`` set
instead of an exception.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields, replace
from datetime import UTC, datetime
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID

from tlswatch.model import CertInfo, KeyInfo

_SECONDS_PER_DAY = 86400.0
#: what cryptography raises for malformed certificate contents. Its parser is lazy: DER that
#: loads can still fail when a field (a date, an extension, the key) is first read.
MALFORMED: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
)


# 256 (was 512): one endpoint's chain is loaded and reused within its own evaluation, and
# the shared intermediates stay recent; every entry keeps a parsed certificate alive, so
# this size is what a long scan holds (issue 6: memory flat from 1k to 10k targets).
# verify._self_signature_ok and strength.weak_key must stay at most half of it (see there).
@lru_cache(maxsize=256)
def load(der: bytes) -> x509.Certificate | None:
    """The certificate in ``der``, or None when it is not valid DER X.509 (arbitrary bytes
    from the network). The fields every analysis reads are touched here so that a lazily
    failing parse surfaces now. Cached by DER: one chain is read by the facts, the
    verification, the findings and the evidence collector, and a scan meets the same
    intermediates on every endpoint."""
    try:
        cert = x509.load_der_x509_certificate(der)
        _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except MALFORMED:  # e.g. InvalidVersion, which is not a ValueError
        return None
    return cert


@lru_cache(maxsize=256)  # no larger than load's: its keys are the same DER
def sha256_hex(der: bytes) -> str:
    """SHA-256 of ``der`` in hex. Cached by DER: the facts, the verification's path and the
    findings each name the same certificates by fingerprint (issue 6)."""
    return hashlib.sha256(der).hexdigest()


def key_info(cert: x509.Certificate) -> KeyInfo | None:
    try:
        key = cert.public_key()
    except MALFORMED:
        return None
    if isinstance(key, rsa.RSAPublicKey):
        return KeyInfo("RSA", key.key_size)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return KeyInfo(f"EC-{key.curve.name}", key.key_size)
    if isinstance(key, dsa.DSAPublicKey):
        return KeyInfo("DSA", key.key_size)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyInfo("Ed25519", 256)
    if isinstance(key, ed448.Ed448PublicKey):
        return KeyInfo("Ed448", 456)
    return KeyInfo(type(key).__name__, 0)


def signature_algorithm(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    name = getattr(oid, "_name", None)
    return str(name) if name and name != "Unknown OID" else oid.dotted_string


def subject_alt_name(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    """The certificate's subjectAltName; raises as ``cert.extensions`` does, and
    ExtensionNotFound when there is none. ``get_extension_for_class`` without its
    isinstance test per extension (an ABC check each, ≈ 0.4 µs: issue 6): the extension is
    found by OID, the same one cryptography parses into this class."""
    ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    value = ext.value
    if not isinstance(value, x509.SubjectAlternativeName):  # not what that OID parses to
        raise x509.ExtensionNotFound("no subjectAltName", ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    return value


def san_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = subject_alt_name(cert)
    except x509.ExtensionNotFound:
        return ()
    except (ValueError, x509.DuplicateExtension):
        return ()
    out: list[str] = []
    for name in san:
        if isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            # str(), not an f-string: the same text without ipaddress's Python-level
            # __format__ (issue 6)
            out.append("IP:" + str(name.value))
        elif isinstance(name, x509.RFC822Name):
            out.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            out.append(f"URI:{name.value}")
    return tuple(out)


def _name(n: x509.Name) -> str:
    try:
        return n.rfc4514_string()
    except (ValueError, TypeError):
        return "<unparsable name>"


def describe(der: bytes, position: int, now: datetime) -> CertInfo:
    """CertInfo for one certificate as sent at ``position``, judged at ``now``."""
    facts = _facts(der)
    if facts.parse_error is None and facts.not_after is not None:
        days = round((facts.not_after - now).total_seconds() / _SECONDS_PER_DAY, 2)
    else:
        days = None
    if facts.position == position and facts.days_left == days:
        return facts
    if not _FIELDS_AS_EXPECTED:  # CertInfo changed shape: the generic (slower) copy
        return replace(facts, position=position, days_left=days)
    # dataclasses.replace re-reads the class's fields on every call (≈ 7 µs, twice per
    # endpoint: issue 6); this is the same copy, spelled out
    return CertInfo(
        position,
        facts.subject,
        facts.issuer,
        facts.serial,
        facts.sha256,
        facts.not_before,
        facts.not_after,
        days,
        facts.key,
        facts.signature_algorithm,
        facts.san,
        facts.parse_error,
    )


#: the positional order ``describe`` relies on; checked once at import
_FIELDS_AS_EXPECTED = tuple(f.name for f in fields(CertInfo)) == (
    "position",
    "subject",
    "issuer",
    "serial",
    "sha256",
    "not_before",
    "not_after",
    "days_left",
    "key",
    "signature_algorithm",
    "san",
    "parse_error",
)


@lru_cache(maxsize=256)
def _facts(der: bytes) -> CertInfo:
    # The time-independent facts, cached by DER: a scan meets the same intermediates on
    # every endpoint. ``describe`` fills in position and days_left.
    sha = sha256_hex(der)
    cert = load(der)
    if cert is None:
        return _unparsable(sha)
    try:
        return CertInfo(
            position=0,
            subject=_name(cert.subject),
            issuer=_name(cert.issuer),
            serial=format(cert.serial_number, "x"),
            sha256=sha,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            days_left=None,
            key=key_info(cert),
            signature_algorithm=signature_algorithm(cert),
            san=san_names(cert),
        )
    except MALFORMED:  # DER that loads but fails on field access
        return _unparsable(sha)


def _unparsable(sha: str) -> CertInfo:
    # Built only when needed: constructing it for every parse cost ≈2 µs per new leaf.
    return CertInfo(
        position=0,
        subject="<unparsable certificate>",
        issuer="",
        serial="",
        sha256=sha,
        not_before=None,
        not_after=None,
        days_left=None,
        key=None,
        signature_algorithm="",
        parse_error="not a valid DER X.509 certificate",
    )


def utcnow() -> datetime:
    return datetime.now(UTC)
