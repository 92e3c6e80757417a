"""Certificates for the verdict tests, built with cryptography at a given check time.

Every verification code and finding needs a chain with exactly one defect (expired leaf,
missing intermediate, SHA-1 signature, ...). :class:`Forge` makes them: keys are cached per
kind (RSA key generation is the slow part), certificates are cheap. Nothing is committed;
everything is generated in the test session (STYLE.md rule 5).

cryptography refuses to *sign* with SHA-1 or MD5, so :func:`resign` builds such
certificates by hand: same TBSCertificate with the signature AlgorithmIdentifier swapped
(RFC 5280 §4.1.1.2 — the OID appears in the TBS and outside it), signed with
PKCS#1 v1.5 over the weak digest.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

#: the fixed check time of the offline verdict tests
NOW = dt.datetime(2030, 6, 1, 12, 0, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)

_KEYS: dict[str, object] = {}


def key(kind: str = "ec", slot: int = 0) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """A private key of ``kind`` (ec, rsa2048, rsa1024), cached per (kind, slot)."""
    k = _KEYS.get(f"{kind}/{slot}")
    if k is None:
        if kind == "ec":
            k = ec.generate_private_key(ec.SECP256R1())
        elif kind.startswith("rsa"):
            k = rsa.generate_private_key(65537, int(kind[3:]))
        else:
            raise ValueError(kind)
        _KEYS[f"{kind}/{slot}"] = k
    return k  # type: ignore[return-value]


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tlswatch verdict tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make(
    cn: str,
    issuer: Issued | None = None,
    *,
    kind: str = "ec",
    slot: int | None = None,
    ca: bool = False,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    now: dt.datetime = NOW,
    dns: tuple[str, ...] = ("www.example.test", "*.wild.example.test"),
    ips: tuple[str, ...] = ("192.0.2.10",),
    san: bool = True,
    eku: tuple[x509.ObjectIdentifier, ...] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    ca_issuers: tuple[str, ...] = (),
    ocsp: tuple[str, ...] = (),
    basic_constraints: bool = True,
) -> Issued:
    """A certificate for ``cn`` issued by ``issuer`` (None: self-signed).

    Defaults: leaf valid from 30 days before ``now`` to 60 days after (a 90-day ACME-style
    certificate); CA valid ten years around ``now``."""
    slot = slot if slot is not None else abs(hash(cn)) % 1000
    k = key(kind, slot)
    if start is None:
        start = now - (365 * DAY if ca else 30 * DAY)
    if end is None:
        end = now + (3650 * DAY if ca else 60 * DAY)
    signer_key = issuer.key if issuer else k
    issuer_name = issuer.cert.subject if issuer else _name(cn)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if basic_constraints:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if ca:
        b = b.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        if san and (dns or ips):
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    access = [
        x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u)
        )
        for u in ca_issuers
    ] + [
        x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u)
        )
        for u in ocsp
    ]
    if access:
        b = b.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    return Issued(b.sign(signer_key, hashes.SHA256()), k)


# --- hand-made weak signatures ------------------------------------------------------

_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b")  # 1.2.840.113549.1.1.11
_WEAK_RSA = {
    "sha1": (bytes.fromhex("06092a864886f70d010105"), hashes.SHA1()),  # sha1WithRSAEncryption
    "md5": (bytes.fromhex("06092a864886f70d010104"), hashes.MD5()),  # md5WithRSAEncryption
}


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def resign(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey, digest: str) -> x509.Certificate:
    """``cert`` re-signed by ``issuer_key`` with ``digest`` (sha1 or md5) over RSA."""
    oid, algo = _WEAK_RSA[digest]
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(_SHA256_RSA) == 1, "expected an RSA/SHA-256 signed template"
    tbs = tbs.replace(_SHA256_RSA, oid)
    sig = issuer_key.sign(tbs, padding.PKCS1v15(), algo)
    alg_id = _tlv(0x30, oid + b"\x05\x00")
    der = _tlv(0x30, tbs + alg_id + _tlv(0x03, b"\x00" + sig))
    return x509.load_der_x509_certificate(der)


def corrupt_signature(cert: x509.Certificate) -> x509.Certificate:
    """``cert`` with one bit of its signature flipped (the last byte of the DER)."""
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return x509.load_der_x509_certificate(bytes(der))


def write_pems(path: Path, certs: list[Issued] | list[x509.Certificate]) -> Path:
    out = b""
    for c in certs:
        cert = c.cert if isinstance(c, Issued) else c
        out += cert.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(out)
    return path
