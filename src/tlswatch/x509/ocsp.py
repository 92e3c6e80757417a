"""OCSP (RFC 6960): building the request for a leaf and judging the response. Pure: the
request is bytes out, the response bytes in; :mod:`tlswatch.net.ocsp` carries them.

A response counts only when (RFC 6960 §3.2):

1. it is ``successful`` and answers for exactly this certificate (serial number, issuer
   name hash and issuer key hash under the response's own hash algorithm);
2. its signature verifies with the key of the issuer itself, or of a delegated responder
   certificate included in the response that the issuer signed and that carries the
   id-kp-OCSPSigning extended key usage (§4.2.2.2) and is valid at the check time;
3. it is fresh (§4.2.2.1, RFC 5019 §4): ``thisUpdate`` not in the future and
   ``nextUpdate`` not in the past (five minutes of clock skew allowed either way); a
   response without ``nextUpdate`` is accepted up to :data:`MAX_AGE_WITHOUT_NEXT_UPDATE`
   after ``thisUpdate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from tlswatch.x509.verify import name_text, signed_by

CLOCK_SKEW = timedelta(minutes=5)
MAX_AGE_WITHOUT_NEXT_UPDATE = timedelta(days=7)


@dataclass(frozen=True)
class OcspVerdict:
    status: str  # "good" | "revoked" | "unknown" | "error"
    message: str
    revoked_at: datetime | None = None


def build_request(leaf: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """A DER OCSPRequest for ``leaf``. CertID hashed with SHA-1, as RFC 5019 §2.1.1
    requires of clients of the lightweight profile every public responder implements."""
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()  # noqa: S303
    return req.public_bytes(serialization.Encoding.DER)


def _cert_id(
    leaf: x509.Certificate, issuer: x509.Certificate, algorithm: hashes.HashAlgorithm
) -> tuple[bytes, bytes]:
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, algorithm).build()
    return req.issuer_name_hash, req.issuer_key_hash


def _key_sha1(cert: x509.Certificate) -> bytes:
    # RFC 6960 §4.2.1 ResponderID byKey: SHA-1 of the subjectPublicKey BIT STRING value,
    # which is what RFC 5280 §4.2.1.2 method (1) key identifiers are.
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _is_responder(resp: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    try:
        if resp.responder_key_hash is not None:
            return resp.responder_key_hash == _key_sha1(cert)
        return resp.responder_name == cert.subject
    except Exception:
        return False


def _signature_ok(resp: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    try:
        key = signer.public_key()
        data = resp.tbs_response_bytes
        sig = resp.signature
        digest = resp.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and digest is not None:
            key.verify(sig, data, padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and digest is not None:
            key.verify(sig, data, ec.ECDSA(digest))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(sig, data)
        else:
            return False
    except Exception:  # InvalidSignature and unsupported algorithms alike
        return False
    return True


def _signer(
    resp: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime
) -> tuple[x509.Certificate | None, str]:
    if _is_responder(resp, issuer):
        return issuer, "the issuer"
    for cert in resp.certificates:
        if not _is_responder(resp, cert):
            continue
        if not signed_by(cert, issuer):
            return (
                None,
                f"responder certificate '{name_text(cert.subject)}' is not signed by the issuer",
            )
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except Exception:
            eku = None
        if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            return (
                None,
                f"responder certificate '{name_text(cert.subject)}' lacks id-kp-OCSPSigning",
            )
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return None, f"responder certificate '{name_text(cert.subject)}' is not valid now"
        return cert, f"delegated responder '{name_text(cert.subject)}'"
    return (
        None,
        "the response is signed by neither the issuer nor a delegated responder it includes",
    )


def judge_response(
    data: bytes, leaf: x509.Certificate, issuer: x509.Certificate, now: datetime
) -> OcspVerdict:
    """What an OCSP response says about ``leaf`` at ``now`` — ``error`` whenever it cannot
    be relied on, with the reason."""
    try:
        resp = ocsp.load_der_ocsp_response(data)
    except Exception as exc:  # arbitrary bytes from the network
        return OcspVerdict("error", f"malformed OCSP response ({len(data)} bytes): {exc}")
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return OcspVerdict("error", f"responder answered {resp.response_status.name.lower()}")
    try:
        single = next(
            (
                s
                for s in resp.responses
                if s.serial_number == leaf.serial_number
                and (s.issuer_name_hash, s.issuer_key_hash)
                == _cert_id(leaf, issuer, s.hash_algorithm)
            ),
            None,
        )
    except Exception as exc:
        return OcspVerdict("error", f"unreadable OCSP response: {exc}")
    if single is None:
        return OcspVerdict("error", "the response does not cover this certificate")
    signer, who = _signer(resp, issuer, now)
    if signer is None:
        return OcspVerdict("error", who)
    if not _signature_ok(resp, signer):
        return OcspVerdict("error", f"the response signature does not verify with {who}'s key")
    this_update = single.this_update_utc
    next_update = single.next_update_utc
    if this_update > now + CLOCK_SKEW:
        return OcspVerdict(
            "error", f"the response is dated in the future ({this_update:%Y-%m-%d %H:%M}Z)"
        )
    if next_update is not None and next_update < now - CLOCK_SKEW:
        return OcspVerdict(
            "error", f"stale response: nextUpdate {next_update:%Y-%m-%d %H:%M}Z has passed"
        )
    if next_update is None and this_update < now - MAX_AGE_WITHOUT_NEXT_UPDATE:
        return OcspVerdict(
            "error", f"stale response from {this_update:%Y-%m-%d %H:%M}Z without nextUpdate"
        )
    status = single.certificate_status
    if status == ocsp.OCSPCertStatus.GOOD:
        return OcspVerdict("good", f"good (signed by {who})")
    if status == ocsp.OCSPCertStatus.REVOKED:
        when = single.revocation_time_utc
        reason = single.revocation_reason
        why = f", reason {reason.value}" if reason is not None else ""  # RFC 5280 §5.3.1 name
        at = f" on {when:%Y-%m-%d %H:%M}Z" if when else ""
        return OcspVerdict("revoked", f"revoked{at}{why}", when)
    return OcspVerdict("unknown", "the responder does not know this certificate")


__all__ = ["OcspVerdict", "build_request", "judge_response"]
