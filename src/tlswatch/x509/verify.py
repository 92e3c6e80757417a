"""Chain verification: the chain as sent + trust anchors + name + check time in, one verdict
out (PRODUCT.md §3 ``verification``). Pure: no network, no clock.

Two verifiers work together:

1. ``cryptography.x509.verification`` is the authority on whether a valid path exists (RFC
   5280 path validation: signatures, validity, basicConstraints, path length, name
   constraints, key usage). It says *whether*, with a free-text reason.
2. A small diagnostic path builder walks leaf → issuer → … the way OpenSSL's
   ``build_chain`` does (trust store first, then the certificates the server sent, in any
   order) to say *why*: which certificate is expired, whose issuer is missing, whether the
   chain ends in a self-signed certificate nobody trusts.

Every defect found is recorded; ``code`` is the first of :data:`PRECEDENCE` present. The
mapping to ``openssl verify`` errors is in :data:`OPENSSL_ERRORS` and docs/verdicts.md.

Profile: RFC 5280 as OpenSSL's default (non ``-x509_strict``) verifier applies it with
``-purpose sslserver``: CA certificates need basicConstraints cA=TRUE and, when they carry
keyUsage, keyCertSign; an extendedKeyUsage, when present, must allow serverAuth; the leaf
needs no subjectAltName (the CN is the fallback, see :mod:`tlswatch.x509.hostname`). Any
certificate in the anchor set is a trust anchor (like OpenSSL's ``-partial_chain``).
Algorithms: RSA and ECDSA P-256/P-384/P-521 as the Web PKI uses them; cryptography's
verifier refuses Ed25519/Ed448 chains, which are reported ``invalid`` with that reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Generic, TypeVar, overload

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    VerificationError,
)
from cryptography.x509.verification import Store as _Store

from tlswatch.x509 import hostname, strength
from tlswatch.x509.certinfo import load, sha256_hex
from tlswatch.x509.trust import Anchors

#: verification codes, most important first (PRODUCT.md §3)
PRECEDENCE = (
    "expired",
    "not_yet_valid",
    "unable_to_get_issuer",
    "self_signed",
    "self_signed_in_chain",
    "hostname_mismatch",
    "weak_key",
    "weak_signature",
    "invalid",
)
CODES = ("ok", *PRECEDENCE)

#: ``openssl verify`` error numbers (X509_V_ERR_*, OpenSSL 3) → our code. An OpenSSL result
#: maps to the code of highest precedence among the errors it printed.
OPENSSL_ERRORS: Mapping[int, str] = {
    10: "expired",  # X509_V_ERR_CERT_HAS_EXPIRED
    9: "not_yet_valid",  # X509_V_ERR_CERT_NOT_YET_VALID
    2: "unable_to_get_issuer",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
    20: "unable_to_get_issuer",  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "unable_to_get_issuer",  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
    18: "self_signed",  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
    19: "self_signed_in_chain",  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
    62: "hostname_mismatch",  # X509_V_ERR_HOSTNAME_MISMATCH
    64: "hostname_mismatch",  # X509_V_ERR_IP_ADDRESS_MISMATCH
    66: "weak_key",  # X509_V_ERR_EE_KEY_TOO_SMALL (needs -auth_level 2)
    67: "weak_key",  # X509_V_ERR_CA_KEY_TOO_SMALL
    68: "weak_signature",  # X509_V_ERR_CA_MD_TOO_WEAK
}
#: any other OpenSSL error number maps to ``invalid``
OPENSSL_OTHER = "invalid"

MAX_DEPTH = 12


def openssl_code(errors: Sequence[int]) -> str:
    """Our code for the set of errors ``openssl verify`` printed (none: ``ok``)."""
    codes = {OPENSSL_ERRORS.get(e, OPENSSL_OTHER) for e in errors}
    return next((c for c in PRECEDENCE if c in codes), "ok")


_T = TypeVar("_T")


class _once(Generic[_T]):
    """functools.cached_property without its lock: Python 3.11 takes an RLock on every
    first read (≈1 µs), more than most of the values cached with it here cost to compute.
    Computing a value twice in a race is harmless: they are pure."""

    def __init__(self, compute: Callable[[Any], _T]) -> None:
        self.compute = compute
        self.name = compute.__name__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _once[_T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _T: ...

    def __get__(self, obj: object, owner: type | None = None) -> _T | _once[_T]:
        if obj is None:
            return self
        value = self.compute(obj)
        # a non-data descriptor: from now on the instance dict answers, without a call
        obj.__dict__[self.name] = value
        return value


@dataclass(frozen=True, slots=True)
class CertChecks:
    """What a verdict reads of one certificate besides where it sits in the chain."""

    fingerprint: str
    not_before: datetime
    not_after: datetime
    weak_key: str | None
    weak_signature: str | None
    self_signed: bool

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertChecks:
        return cls(
            _fingerprint(cert),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            strength.weak_key(cert),
            strength.weak_signature(cert),
            self_signed(cert),
        )


@dataclass(frozen=True)
class PathCert:
    """One certificate of a built path and where it came from."""

    cert: x509.Certificate
    sha256: str
    #: position in the chain as sent; None when it came from the store or a fetch
    position: int | None
    source: str  # "sent" | "store" | "fetched"
    #: the checks of ``cert`` when already known (certificates of a cached path above the
    #: leaf); None: computed when first read. Not part of equality: they follow from cert.
    known: CertChecks | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        known = self.known
        if known is not None:
            # answered from the instance dict from the start (see below)
            self.__dict__.update(
                not_before=known.not_before,
                not_after=known.not_after,
                weak_key=known.weak_key,
                weak_signature=known.weak_signature,
                self_signed=known.self_signed,
            )

    @property
    def label(self) -> str:
        return label(self.cert, self.position, self.sha256, self.source)

    # The checks below are read by verify_chain and again by the evaluation's findings for
    # the same path: computed once per PathCert and kept in the instance dict, which a
    # frozen dataclass allows; equality and repr see only the fields. (cryptography builds
    # a new datetime on every read of a validity date.)

    @_once
    def not_before(self) -> datetime:
        return self.cert.not_valid_before_utc

    @_once
    def not_after(self) -> datetime:
        return self.cert.not_valid_after_utc

    @_once
    def weak_key(self) -> str | None:
        if self.source == "fetched":  # parsed anew for each endpoint: the cache pays
            return strength.weak_key(self.cert)
        # a sent certificate is certinfo.load's object and a store one the anchors' own:
        # the same object recurs and keeps its decoded key, and a new leaf would only miss
        # the cache (issue 6)
        return strength.key_weakness(self.cert)

    @_once
    def weak_signature(self) -> str | None:
        return strength.weak_signature(self.cert)

    @_once
    def self_signed(self) -> bool:
        return self_signed(self.cert)


@dataclass(frozen=True)
class ChainVerdict:
    code: str
    trusted: bool
    hostname_match: bool
    detail: str | None = None
    #: every defect found: code → what and which certificate
    defects: Mapping[str, str] = field(default_factory=dict)
    #: leaf first, up to the anchor (when anchored) or as far as issuers were found
    path: tuple[PathCert, ...] = ()
    anchored: bool = False
    leaf_self_signed: bool = False
    #: cryptography's reason when it refused the chain
    validator_error: str | None = None


def name_text(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except Exception:  # untrusted input
        return "<unparsable name>"


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@lru_cache(maxsize=1024)
def _fingerprint(cert: x509.Certificate) -> str:
    # Cached: the anchors and fetched issuers of a scan recur on every endpoint.
    return hashlib.sha256(der_of(cert)).hexdigest()


def label(
    cert: x509.Certificate | None,
    position: int | None,
    sha256: str,
    source: str = "sent",
) -> str:
    """How a message names a certificate: position, subject, fingerprint prefix."""
    where = f"#{position}" if position is not None else ("store" if source == "store" else "AIA")
    subject = name_text(cert.subject) if cert is not None else "<unparsable>"
    return f"certificate {where} '{subject}' (sha256 {sha256[:16]})"


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer``'s key verifies ``cert``'s signature (names must chain too)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, ValueError, TypeError, unsupported
        return False
    return True


def self_signed(cert: x509.Certificate) -> bool:
    # Only a self-issued certificate can be self-signed. Comparing the names first keeps
    # leaves and intermediates (most calls) away from the cache below: hashing a
    # certificate for the lookup costs more than the comparison (issue 6).
    return cert.subject == cert.issuer and _self_signature_ok(cert)


@lru_cache(maxsize=128)
def _self_signature_ok(cert: x509.Certificate) -> bool:
    # Cached (certificates hash and compare by their DER): a scan checks the same roots on
    # every endpoint, and each check is a signature verification.
    # Keep maxsize at most half of certinfo.load's: an entry here keeps its *key* object
    # alive, so a larger cache outlives load's entry for the same DER and, on a long scan
    # that meets the same leaves again, holds a second parsed copy of each (memory grew
    # with the number of targets: issue 6, 1k -> 10k targets).
    return signed_by(cert, cert)


def _require_ca(policy: Any, cert: x509.Certificate, bc: x509.BasicConstraints) -> None:
    # the path builder itself checks cA and pathLenConstraint; presence is all we require
    return None


def _ca_key_usage(policy: Any, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("CA keyUsage lacks keyCertSign")


def _ee_key_usage(policy: Any, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    # OpenSSL's sslserver purpose: a TLS server key must sign or encipher/agree.
    if ku is not None and not (ku.digital_signature or ku.key_encipherment or ku.key_agreement):
        raise ValueError("leaf keyUsage allows neither digitalSignature nor keyEncipherment")


def _server_eku(policy: Any, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
    if eku is None:
        return
    allowed = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if not allowed.intersection(eku):
        raise ValueError("extendedKeyUsage does not allow serverAuth")


@lru_cache(maxsize=1)
def _policies() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    ca = (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _require_ca)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_eku)
    )
    ee = (
        ExtensionPolicy.permit_all()
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ee_key_usage)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_eku)
    )
    return ca, ee


def validate(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Anchors,
    at: datetime,
) -> tuple[list[x509.Certificate] | None, str | None]:
    """cryptography's path validation at ``at`` (no hostname check): the path, or why not."""
    if anchors.store is None:
        return None, "no trust anchors"
    ca, ee = _policies()
    try:
        verifier = (
            PolicyBuilder()
            .store(anchors.store)
            .time(at)
            .max_chain_depth(MAX_DEPTH)
            .extension_policies(ca_policy=ca, ee_policy=ee)
            .build_client_verifier()
        )
        return list(verifier.verify(leaf, list(intermediates)).chain), None
    except VerificationError as exc:
        return None, _short(str(exc))
    except Exception as exc:  # odd keys/encodings must not escape
        return None, f"{type(exc).__name__}: {exc}"


def _short(message: str) -> str:
    # cryptography appends "(encountered processing <Certificate(...)>)": our messages name
    # the certificate themselves.
    head, sep, _ = message.partition(" (encountered processing")
    return head if sep else message


# --- validating the shared part of a path once ------------------------------------------
#
# A scan meets the same intermediate on thousands of endpoints. cryptography's path builder
# (a depth-first search, trusted candidates first) re-verifies "intermediate ← root" for
# each. What it does above the leaf's issuer X does not depend on the leaf, except through
# name constraints (evaluated against the leaf's names) and the check time; so once a full
# validation of some leaf succeeded through X, a later leaf whose *only* issuer candidate
# is X (the builder could not go anywhere else) reaches the same path, provided:
#
# * no certificate the search can visit above X carries nameConstraints (X's own are
#   applied by the short check below, which sees X exactly as the full search does);
# * every certificate the search can visit (X, its candidate issuers, theirs, ...) is
#   inside or outside its validity period at the new time exactly as at the cached one;
# * the leaf is not itself an anchor, and the same anchor set and sent intermediates.
#
# The short check is cryptography's own verifier with X as the only anchor: the leaf's EE
# policy, X's CA policy at depth 0, the leaf's signature by X, X's name constraints, the
# leaf's validity. If it refuses anything, the full validation runs and gives the verdict
# and message, so failures are always judged the uncached way. tests/test_verify_cache.py
# compares cached and uncached verdicts.


@dataclass(frozen=True, slots=True)
class _Tail:
    """A validated path above the leaf, and when it may be reused."""

    #: the anchor set validated against (held so its id() cannot be reused while cached)
    store: Any
    #: the path above the leaf, the leaf's issuer first (as the validator returned it)
    certs: tuple[x509.Certificate, ...]
    #: the short check's verifier settings, all but the time (which changes per endpoint):
    #: the leaf's issuer as the only anchor. A PolicyBuilder is immutable (each call returns
    #: a new one), so it is shared; half the cost of building it per endpoint (issue 6).
    issuer_policy: PolicyBuilder
    #: validity (not before, not after) of every certificate the search can visit
    windows: tuple[tuple[datetime, datetime], ...]
    #: inside each window at the validation time, and not before / not after it
    state: tuple[tuple[bool, bool], ...]
    #: the checks of each of ``certs``: the same on every endpoint, so computed once here
    #: rather than looked up per endpoint in caches keyed by certificate (whose hash costs
    #: as much as a check)
    checks: tuple[CertChecks, ...]


#: switch for tests comparing cached and uncached verdicts
TAIL_CACHE = True
_MAX_TAILS = 256
_tails: dict[tuple[int, tuple[bytes, ...]], _Tail] = {}


def clear_tail_cache() -> None:
    _tails.clear()


def _window_state(
    windows: Sequence[tuple[datetime, datetime]], at: datetime
) -> tuple[tuple[bool, bool], ...]:
    # cryptography validates at whole seconds (an ASN.1 time): nb <= t <= na
    t = at.replace(microsecond=0)
    return tuple((nb <= t, t <= na) for nb, na in windows)


def _sole_issuer(
    cert: x509.Certificate, intermediates: Sequence[x509.Certificate], anchors: Anchors
) -> x509.Certificate | None:
    """The one certificate path building can try as ``cert``'s issuer, or None when there
    are none or several. Python's Name equality is at least as loose as cryptography's, so
    one candidate here means at most one there."""
    found = anchors.by_subject.get(cert.issuer, ())
    count = len(found)
    only = found[0] if found else None
    for c in intermediates:
        if c.subject == cert.issuer:
            count += 1
            only = c
    return only if count == 1 else None


def _reachable(
    start: x509.Certificate, intermediates: Sequence[x509.Certificate], anchors: Anchors
) -> list[x509.Certificate]:
    """``start`` and every certificate path building may visit above it (a superset)."""
    seen = {start}
    todo = [start]
    while todo:
        cur = todo.pop()
        cands = [*anchors.by_subject.get(cur.issuer, ()), *intermediates]
        for c in cands:
            if c not in seen and c.subject == cur.issuer:
                seen.add(c)
                todo.append(c)
    return list(seen)


def _cacheable_tail(
    chain: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    anchors: Anchors,
    at: datetime,
) -> _Tail | None:
    if len(chain) < 2 or _sole_issuer(chain[0], intermediates, anchors) != chain[1]:
        return None
    issuer = chain[1]
    try:
        visited = _reachable(issuer, intermediates, anchors)
        for c in visited:
            if c is issuer or c == issuer:
                continue
            try:
                c.extensions.get_extension_for_class(x509.NameConstraints)
            except x509.ExtensionNotFound:
                continue
            return None  # constraints above the issuer are applied to each leaf's names
        windows = tuple((c.not_valid_before_utc, c.not_valid_after_utc) for c in visited)
        ca, ee = _policies()
        return _Tail(
            anchors.store,
            tuple(chain[1:]),
            PolicyBuilder()
            .store(_Store([issuer]))
            .max_chain_depth(MAX_DEPTH)
            .extension_policies(ca_policy=ca, ee_policy=ee),
            windows,
            _window_state(windows, at),
            tuple(CertChecks.of(c) for c in chain[1:]),
        )
    except Exception:  # an odd certificate: just do not cache
        return None


def _validate_shared(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    key: tuple[bytes, ...],
    anchors: Anchors,
    at: datetime,
) -> tuple[list[x509.Certificate] | None, str | None, tuple[CertChecks, ...]]:
    """:func:`validate`, reusing a validated path above the leaf's issuer when that gives
    the same answer (see the comment above); ``key`` identifies ``intermediates`` (DER).
    Also returns the checks of the path's certificates above the leaf when they are known
    (the path is a cached tail's), else ()."""
    if not TAIL_CACHE or anchors.store is None:
        return (*validate(leaf, intermediates, anchors, at), ())
    cache_key = (id(anchors.store), key)
    tail = _tails.get(cache_key)
    if (
        tail is not None
        and tail.store is anchors.store
        and _window_state(tail.windows, at) == tail.state
        and not anchors.contains(leaf)
        and _same(_sole_issuer(leaf, intermediates, anchors), tail.certs[0])
    ):
        try:
            tail.issuer_policy.time(at).build_client_verifier().verify(leaf, [])
        except Exception:  # noqa: S110 - refused: the full validation judges and explains it
            pass
        else:
            return [leaf, *tail.certs], None, tail.checks
    path, error = validate(leaf, intermediates, anchors, at)
    if path is not None and not anchors.contains(leaf):
        new = _cacheable_tail(path, intermediates, anchors, at)
        if new is not None:
            if len(_tails) >= _MAX_TAILS:
                del _tails[next(iter(_tails))]
            _tails[cache_key] = new
            return path, error, new.checks  # new.certs are path[1:]
    return path, error, ()


def _same(a: x509.Certificate | None, b: x509.Certificate) -> bool:
    # Certificates compare by content, and cryptography does not shortcut comparing an
    # object with itself (it costs about what hashing does); a scan's certificates above
    # the leaf are usually the very same objects (certinfo.load's cache).
    return a is b or a == b


@dataclass
class _Sent:
    position: int
    der: bytes
    cert: x509.Certificate | None


def verify_chain(
    chain: Sequence[bytes],
    anchors: Anchors,
    name: str,
    now: datetime,
    fetched: Sequence[x509.Certificate] = (),
) -> ChainVerdict:
    """Judge ``chain`` (DER, as sent, leaf first) for a client connecting to ``name``."""
    sent = [_Sent(i, der, load(der)) for i, der in enumerate(chain)]
    if not sent:
        return ChainVerdict(
            "invalid", False, False, "server sent no certificate", {"invalid": "no certificate"}
        )
    leaf = sent[0].cert
    if leaf is None:
        detail = "certificate #0 (the leaf) is not a valid DER X.509 certificate"
        return ChainVerdict("invalid", False, False, detail, {"invalid": detail})
    others = [s.cert for s in sent[1:] if s.cert is not None]
    # Certificates compare by their DER: no re-encoding to find one. Found by a linear
    # search, not a dict or set: hashing a certificate walks all of it (issue 6), an
    # identity or inequality test stops early, and a chain is a handful of certificates.
    # Searched from the end so that, as in a dict built from the chain, the last copy of a
    # certificate sent twice is the one found.
    sent_last_first = [s for s in reversed(sent) if s.cert is not None]

    def path_cert(cert: x509.Certificate, known: CertChecks | None = None) -> PathCert:
        for s in sent_last_first:
            if _same(s.cert, cert):
                return PathCert(cert, sha256_hex(s.der), s.position, "sent", known)
        fp = known.fingerprint if known is not None else _fingerprint(cert)
        if any(_same(f, cert) for f in fetched) and not anchors.contains(cert):
            return PathCert(cert, fp, None, "fetched", known)
        return PathCert(cert, fp, None, "store", known)

    defects: dict[str, str] = {}
    intermediates = [*others, *fetched]
    tail_checks: tuple[CertChecks, ...] = ()
    if fetched:
        valid_path, validator_error = validate(leaf, intermediates, anchors, now)
    else:
        key = tuple(s.der for s in sent[1:] if s.cert is not None)
        valid_path, validator_error, tail_checks = _validate_shared(leaf, others, key, anchors, now)
    if valid_path is not None:
        if tail_checks:
            above = zip(valid_path[1:], tail_checks, strict=True)
            path = (path_cert(valid_path[0]), *(path_cert(c, k) for c, k in above))
        else:
            path = tuple(path_cert(c) for c in valid_path)
        anchored = True
    else:
        path, anchored, end, link_error = _diagnose(leaf, intermediates, anchors, path_cert)
        if end is not None:
            defects[end[0]] = end[1]
        if link_error:
            defects["invalid"] = link_error
    leaf_pc = path[0]

    # Validity periods of every certificate on the path (RFC 5280 §6.1.3(a)(2)); OpenSSL
    # checks the trust anchor's too, and so do we.
    for pc in path:
        if now > pc.not_after:
            defects.setdefault("expired", f"{pc.label} expired {_when(pc.not_after)}")
        elif now < pc.not_before:
            defects.setdefault(
                "not_yet_valid", f"{pc.label} is not valid before {_when(pc.not_before)}"
            )

    host_ok = hostname.matches(leaf, name)
    if not host_ok:
        ids = ", ".join(hostname.identities(leaf)[:8]) or "nothing"
        defects["hostname_mismatch"] = f"{leaf_pc.label} is valid for {ids}, not {name}"

    for pc in path:
        weak = pc.weak_key
        if weak:
            defects.setdefault("weak_key", f"{pc.label}: {weak}")
    for i, pc in enumerate(path):
        top_self_signed = i == len(path) - 1 and pc.self_signed
        weak = None if top_self_signed else pc.weak_signature
        if weak:
            defects.setdefault("weak_signature", f"{pc.label}: {weak}")

    issuer_trouble = {"unable_to_get_issuer", "self_signed", "self_signed_in_chain"} & set(defects)
    if valid_path is None and anchored and not issuer_trouble and "invalid" not in defects:
        # Our walk reached an anchor but the validator refused: is it only the dates (already
        # reported) or weak crypto (already reported), or something else (basicConstraints,
        # path length, EKU, name constraints, an unsupported algorithm)?
        reason = validator_error
        window = _common_validity(path)
        if ("expired" in defects or "not_yet_valid" in defects) and window is not None:
            again, reason = validate(leaf, intermediates, anchors, window)
            if again is not None:
                reason = None
        if reason and not {"weak_key", "weak_signature"} & set(defects):
            defects["invalid"] = f"{leaf_pc.label}: {reason}"

    # most chains have no defect: then neither scan of the codes is needed (issue 6)
    code = next((c for c in PRECEDENCE if c in defects), "ok") if defects else "ok"
    trusted = anchored and not (defects and set(defects) - {"hostname_mismatch"})
    return ChainVerdict(
        code=code,
        trusted=trusted,
        hostname_match=host_ok,
        detail=defects.get(code),
        defects=defects,
        path=path,
        anchored=anchored,
        leaf_self_signed=self_signed(leaf),
        validator_error=validator_error,
    )


def _diagnose(
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    anchors: Anchors,
    path_cert: Any,
) -> tuple[tuple[PathCert, ...], bool, tuple[str, str] | None, str | None]:
    """Walk issuers from the leaf as OpenSSL's build_chain does (trusted first). Returns
    the path, whether it reached an anchor, the issuer defect that stopped it, and a broken
    signature link if one was crossed."""
    path: list[PathCert] = [path_cert(leaf)]
    seen = {der_of(leaf)}
    link_error: str | None = None
    while True:
        cur = path[-1]
        if anchors.contains(cur.cert):
            return tuple(path), True, None, link_error
        if self_signed(cur.cert):
            if len(path) == 1:
                return (
                    tuple(path),
                    False,
                    ("self_signed", f"{cur.label} is self-signed and not trusted"),
                    link_error,
                )
            return (
                tuple(path),
                False,
                ("self_signed_in_chain", f"{cur.label} is a self-signed root that is not trusted"),
                link_error,
            )
        if len(path) >= MAX_DEPTH:
            return (
                tuple(path),
                False,
                ("invalid", f"chain longer than {MAX_DEPTH} certificates"),
                link_error,
            )
        trusted_cands = anchors.issuers_of(cur.cert)
        sent_cands = [c for c in pool if c.issuer is not None and c.subject == cur.cert.issuer]
        sent_cands = [c for c in sent_cands if der_of(c) not in seen]
        chosen = next((c for c in trusted_cands if signed_by(cur.cert, c)), None)
        if chosen is None:
            chosen = next((c for c in sent_cands if signed_by(cur.cert, c)), None)
        if chosen is None and (trusted_cands or sent_cands):
            # a certificate with the issuer's name whose key does not verify the signature
            chosen = (trusted_cands or sent_cands)[0]
            link_error = (
                link_error or f"{cur.label}: signature does not verify with its issuer's key"
            )
        if chosen is None:
            return (
                tuple(path),
                False,
                (
                    "unable_to_get_issuer",
                    f"the issuer '{name_text(cur.cert.issuer)}' of {cur.label} was neither sent nor trusted",
                ),
                link_error,
            )
        seen.add(der_of(chosen))
        path.append(path_cert(chosen))


def _common_validity(path: Sequence[PathCert]) -> datetime | None:
    start = max(pc.not_before for pc in path)
    end = min(pc.not_after for pc in path)
    if start >= end:
        return None
    return start + min(timedelta(seconds=1), (end - start) / 2)


def _when(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%SZ")


__all__ = [
    "CODES",
    "OPENSSL_ERRORS",
    "PRECEDENCE",
    "ChainVerdict",
    "PathCert",
    "label",
    "openssl_code",
    "self_signed",
    "signed_by",
    "validate",
    "verify_chain",
]
