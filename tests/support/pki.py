"""Test PKI generated at run time (STYLE.md rule 5: never commit keys).

One session root CA with one intermediate; each server gets its own leaf so every probe can
be checked against exactly the certificate its server was given.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509


@dataclass(frozen=True)
class IssuedLeaf:
    """A leaf and the files a server needs, plus the facts a probe must report."""

    cert_file: Path  # leaf only
    key_file: Path
    chain_file: Path  # leaf + intermediate (what a well-configured server sends)
    fullchain_key_file: Path  # leaf + intermediate + key in one PEM (haproxy)
    chain_der: tuple[bytes, ...]  # leaf, intermediate

    @property
    def leaf_sha256(self) -> str:
        return hashlib.sha256(self.chain_der[0]).hexdigest()

    @property
    def chain_sha256(self) -> list[str]:
        return [hashlib.sha256(d).hexdigest() for d in self.chain_der]

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.chain_der[0])


class TestPKI:
    __test__ = False

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.root = trustme.CA(organization_name="tlswatch test root")
        self.intermediate = self.root.create_child_ca()
        self.root_file = self.dir / "root.pem"
        self.root.cert_pem.write_to_path(str(self.root_file))
        self._n = 0

    def issue(
        self,
        name: str,
        *identities: str,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key_type: trustme.KeyType = trustme.KeyType.ECDSA,
        issuer: trustme.CA | None = None,
        organization_unit: str | None = None,
    ) -> IssuedLeaf:
        """Issue a leaf for ``identities`` (default: localhost, 127.0.0.1, ::1).
        ``organization_unit``: a fixed OU (trustme's default is random per certificate), so
        two leaves can share a subject, as a renewal does."""
        self._n += 1
        ca = issuer or self.intermediate
        ids = identities or ("localhost", "127.0.0.1", "::1")
        kwargs: dict[str, object] = {"common_name": ids[0], "key_type": key_type}
        if not_before is not None:
            kwargs["not_before"] = not_before
        if not_after is not None:
            kwargs["not_after"] = not_after
        if organization_unit is not None:
            kwargs["organization_unit_name"] = organization_unit
        leaf = ca.issue_cert(*ids, **kwargs)  # type: ignore[arg-type]
        base = self.dir / f"{self._n:02d}-{name}"
        cert_file = base.with_suffix(".crt")
        key_file = base.with_suffix(".key")
        chain_file = base.with_suffix(".chain.pem")
        combined = base.with_suffix(".pem")
        leaf.cert_chain_pems[0].write_to_path(str(cert_file))
        leaf.private_key_pem.write_to_path(str(key_file))
        chain_pem = b"".join(p.bytes() for p in leaf.cert_chain_pems)
        chain_file.write_bytes(chain_pem)
        combined.write_bytes(chain_pem + leaf.private_key_pem.bytes())
        for f in (key_file, combined):
            f.chmod(0o644)  # servers drop privileges before reading in some setups
        ders = tuple(
            x509.load_pem_x509_certificate(p.bytes()).public_bytes(
                encoding=__import__(
                    "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
                ).Encoding.DER
            )
            for p in leaf.cert_chain_pems
        )
        return IssuedLeaf(cert_file, key_file, chain_file, combined, ders)
