"""Key and signature strength, judged as OpenSSL's security level 2 does (the default of
Debian, Ubuntu and RHEL clients: 112-bit security), with the issue's thresholds:

- weak key: RSA or DSA modulus below 2048 bits, elliptic curve below 256 bits
  (OpenSSL ``X509_V_ERR_EE_KEY_TOO_SMALL`` / ``X509_V_ERR_CA_KEY_TOO_SMALL``);
- weak signature: MD2, MD4, MD5 or SHA-1 digests (``X509_V_ERR_CA_MD_TOO_WEAK``). The
  self-signature of a trust anchor is not judged: it protects nothing (RFC 5280 §6.1.1).
"""

from __future__ import annotations

from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

MIN_RSA_BITS = 2048
MIN_DSA_BITS = 2048
MIN_EC_BITS = 256

# Signature algorithm OIDs whose digest is broken (RFC 3279 §2.2, RFC 5758 §3.2).
_WEAK_SIG_OIDS = {
    "1.2.840.113549.1.1.2": "MD2",  # md2WithRSAEncryption
    "1.2.840.113549.1.1.3": "MD4",  # md4WithRSAEncryption
    "1.2.840.113549.1.1.4": "MD5",  # md5WithRSAEncryption
    "1.2.840.113549.1.1.5": "SHA-1",  # sha1WithRSAEncryption
    "1.3.14.3.2.29": "SHA-1",  # sha1WithRSA (OIW)
    "1.2.840.10040.4.3": "SHA-1",  # dsa-with-sha1
    "1.2.840.10045.4.1": "SHA-1",  # ecdsa-with-SHA1
}
_RSASSA_PSS = "1.2.840.113549.1.1.10"
_WEAK_HASH_NAMES = {"md5": "MD5", "sha1": "SHA-1"}


@lru_cache(maxsize=128)  # <= half of certinfo.load's: see verify._self_signature_ok (memory)
def weak_key(cert: x509.Certificate) -> str | None:
    """A description of why the public key is too weak, or None. Cached per certificate
    (they hash by their DER, so a re-parsed copy such as an issuer fetched again from AIA
    hits too): decoding a key costs more than the rest of this check."""
    return key_weakness(cert)


def key_weakness(cert: x509.Certificate) -> str | None:
    """:func:`weak_key` without its cache, for a certificate object that is itself reused:
    cryptography keeps an object's decoded key, so a repeat costs ≈ 0.7 µs, while the
    cache's lookup hashes the whole certificate (≈ 2 µs) and misses for every new leaf
    (issue 6)."""
    try:
        key = cert.public_key()
    except Exception:  # unknown algorithms are not "weak", just unknown
        return None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return f"RSA {key.key_size}-bit key (minimum {MIN_RSA_BITS})"
    if isinstance(key, dsa.DSAPublicKey) and key.key_size < MIN_DSA_BITS:
        return f"DSA {key.key_size}-bit key (minimum {MIN_DSA_BITS})"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
        return f"EC {key.curve.name} {key.curve.key_size}-bit key (minimum {MIN_EC_BITS})"
    return None


def weak_signature(cert: x509.Certificate) -> str | None:
    """A description of why the certificate's signature digest is too weak, or None."""
    oid = cert.signature_algorithm_oid.dotted_string
    if oid in _WEAK_SIG_OIDS:
        return f"signed with {_WEAK_SIG_OIDS[oid]}"
    if oid == _RSASSA_PSS:
        try:
            params = cert.signature_algorithm_parameters
        except Exception:
            return None
        if isinstance(params, padding.PSS):
            try:
                digest = cert.signature_hash_algorithm
            except Exception:
                return None
            if digest is not None and digest.name in _WEAK_HASH_NAMES:
                return f"signed with RSASSA-PSS over {_WEAK_HASH_NAMES[digest.name]}"
    return None


__all__ = ["key_weakness", "weak_key", "weak_signature"]
