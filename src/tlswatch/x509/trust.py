"""Trust anchors: the system store, Mozilla's (certifi), extra ``ca=`` PEM files, or none.

Loading a bundle is a file read and ~150 certificate parses, so every anchor set is built
once per process and cached (keyed by the files' modification times, so an edited ``ca=``
file is re-read). No network here.

``trust=`` selects the base store:

    system   /etc/ssl/certs/ca-certificates.crt (what local mail and database clients use)
    mozilla  certifi's bundle
    none     no base store: only ``ca=`` anchors; with no ``ca=`` either, trust is not
             judged at all (trust findings become informational)
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import Store

from tlswatch.x509.certinfo import MALFORMED

#: Debian's and Ubuntu's bundle; the first one found of these is the system store.
SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)
TRUST_CHOICES = ("system", "mozilla", "none")
#: a CA bundle larger than this is not a CA bundle
MAX_BUNDLE_BYTES = 16 * 1024 * 1024


def _spki(cert: x509.Certificate) -> bytes:
    try:
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except Exception:  # an unusable key just never matches
        return b""


@dataclass(frozen=True)
class Anchors:
    """A set of trust anchors with what path building needs: a cryptography ``Store`` and
    an index by subject name. ``errors`` says which sources could not be read."""

    certs: tuple[x509.Certificate, ...] = ()
    errors: tuple[str, ...] = ()
    #: False for ``trust=none`` without ``ca=``: nothing is trusted and that is intended
    judged: bool = True
    store: Store | None = field(default=None, compare=False)
    by_subject: dict[x509.Name, list[x509.Certificate]] = field(default_factory=dict, compare=False)
    _keys: frozenset[tuple[x509.Name, bytes]] = field(default=frozenset(), compare=False)
    _ders: frozenset[bytes] = field(default=frozenset(), compare=False)

    @classmethod
    def of(
        cls, certs: Iterable[x509.Certificate], errors: Iterable[str] = (), judged: bool = True
    ) -> Anchors:
        unique: dict[bytes, x509.Certificate] = {}
        for c in certs:
            unique.setdefault(c.public_bytes(serialization.Encoding.DER), c)
        cs = tuple(unique.values())
        index: dict[x509.Name, list[x509.Certificate]] = {}
        for c in cs:
            index.setdefault(c.subject, []).append(c)
        return cls(
            certs=cs,
            errors=tuple(errors),
            judged=judged,
            store=Store(list(cs)) if cs else None,
            by_subject=index,
            _keys=frozenset((c.subject, _spki(c)) for c in cs),
            _ders=frozenset(unique),
        )

    def contains(self, cert: x509.Certificate) -> bool:
        """True when ``cert`` is an anchor: the same certificate, or the same subject and
        key (a re-issued root is the same anchor, as RFC 5280 §6.1.1(d) defines one)."""
        # Either way an anchor has this subject: most certificates (every leaf) are ruled
        # out by one dictionary lookup, without re-encoding the certificate or its key.
        if cert.subject not in self.by_subject:
            return False
        if cert.public_bytes(serialization.Encoding.DER) in self._ders:
            return True
        return (cert.subject, _spki(cert)) in self._keys

    def issuers_of(self, cert: x509.Certificate) -> list[x509.Certificate]:
        return list(self.by_subject.get(cert.issuer, ()))


#: how long a CA file's modification time is trusted before it is looked at again: a scan
#: asks for the anchors on every target, and one stat per second notices an edited file
MTIME_TTL = 1.0

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class _Recent(Generic[_K, _V]):
    """Answers remembered for MTIME_TTL seconds; at most ``size`` of them (all forgotten
    when full), so bounded however many targets a scan has."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: dict[_K, tuple[float, _V]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: _K) -> _V | None:
        seen = self._items.get(key)
        if seen is not None and time.monotonic() - seen[0] < MTIME_TTL:
            return seen[1]
        return None

    def put(self, key: _K, value: _V, stamp: float) -> None:
        """Remember ``value`` as of ``stamp`` (a ``time.monotonic()`` reading)."""
        if len(self._items) >= self.size:
            self._items.clear()
        self._items[key] = (stamp, value)


_mtimes: _Recent[str, int] = _Recent(256)


def _mtime(path: str) -> int:
    seen = _mtimes.get(path)
    if seen is not None:
        return seen
    now = time.monotonic()
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = -1
    _mtimes.put(path, mtime, now)
    return mtime


def read_bundle(path: str) -> tuple[list[x509.Certificate], str | None]:
    """The certificates of a PEM (or single DER) file; an error message instead of an
    exception when it cannot be read or holds none."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        return [], f"cannot read CA file {path}: {exc.strerror or exc}"
    if len(data) > MAX_BUNDLE_BYTES:
        return [], f"CA file {path} is larger than {MAX_BUNDLE_BYTES} bytes"
    try:
        with warnings.catch_warnings():
            # a few system roots predate RFC 5280's positive-serial rule; they still anchor
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            if b"-----BEGIN" in data:
                certs = x509.load_pem_x509_certificates(data)
            else:
                certs = [x509.load_der_x509_certificate(data)]
    except MALFORMED as exc:
        return [], f"CA file {path} holds no usable certificate: {exc}"
    return certs, None


@lru_cache(maxsize=32)
def _load(path: str, _mtime_ns: int) -> tuple[tuple[x509.Certificate, ...], str | None]:
    certs, err = read_bundle(path)
    return tuple(certs), err


def _bundle(path: str) -> tuple[tuple[x509.Certificate, ...], str | None]:
    return _load(path, _mtime(path))


def system_bundle_path() -> str | None:
    override = os.environ.get("SSL_CERT_FILE")
    if override:
        return override
    return next((p for p in SYSTEM_BUNDLES if os.path.exists(p)), None)


def mozilla_bundle_path() -> str:
    import certifi

    return str(certifi.where())


@lru_cache(maxsize=64)
def _anchors(
    trust: str, ca: str | None, system_path: str | None, _stamp: tuple[int, ...]
) -> Anchors:
    # Keyed by the system bundle's path too (the one chosen by load_anchors, read here):
    # SSL_CERT_FILE switched to another file with the same mtime is another set of anchors.
    certs: list[x509.Certificate] = []
    errors: list[str] = []
    if trust == "system":
        path = system_path
        if path is None:
            errors.append(
                "no system CA bundle found (looked for " + ", ".join(SYSTEM_BUNDLES) + ")"
            )
        else:
            got, err = _bundle(path)
            certs.extend(got)
            if err:
                errors.append(err)
    elif trust == "mozilla":
        got, err = _bundle(mozilla_bundle_path())
        certs.extend(got)
        if err:
            errors.append(err)
    if ca:
        got, err = _bundle(ca)
        certs.extend(got)
        if err:
            errors.append(err)
    judged = not (trust == "none" and not ca)
    return Anchors.of(certs, errors, judged)


#: the anchors last returned for (trust, ca, $SSL_CERT_FILE), and when they were looked up.
#: A scan asks twice per endpoint (evidence, then policy); without SSL_CERT_FILE, choosing
#: the system bundle was a stat() syscall on every call, and each call also looked up every
#: file's mtime and the _anchors cache (issue 6: ≈ 19k instructions per endpoint even with
#: SSL_CERT_FILE set). Within MTIME_TTL the same answer is returned, so a file edited, created or
#: removed on disk is still noticed within a second, as _mtime already allowed; the
#: environment variable is part of the key, so changing it takes effect at once.
_MAX_RECENT = 64  # as many as _anchors keeps
_recent: _Recent[tuple[str, str | None, str | None], Anchors] = _Recent(_MAX_RECENT)


def load_anchors(trust: str = "system", ca: str | None = None) -> Anchors:
    """The anchors for ``trust=`` plus ``ca=``, built once per process per file version."""
    if trust not in TRUST_CHOICES:
        return Anchors.of((), (f"unknown trust {trust!r}",), True)
    key = (trust, ca, os.environ.get("SSL_CERT_FILE") if trust == "system" else None)
    seen = _recent.get(key)
    if seen is not None:
        return seen
    system_path = system_bundle_path() if trust == "system" else None
    paths = [p for p in (system_path, ca) if p]
    anchors = _anchors(trust, ca, system_path, tuple(_mtime(p) for p in paths))
    # stamped after the _mtime calls: when this expires, so have the mtimes it was built on
    _recent.put(key, anchors, time.monotonic())
    return anchors


__all__ = ["TRUST_CHOICES", "Anchors", "load_anchors", "read_bundle"]
