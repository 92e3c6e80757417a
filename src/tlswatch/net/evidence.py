"""Side fetches a verdict needs: missing issuers from AIA and, when asked for, the leaf's
OCSP status. The results are attached to each Observation (``fetched``) so the pure
evaluation — now or a re-evaluation next month — needs no network.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509

from tlswatch.model import Fetched, Observation
from tlswatch.net import aia as net_aia
from tlswatch.net import ocsp as net_ocsp
from tlswatch.net.http import DEFAULT_CAP, DEFAULT_TIMEOUT
from tlswatch.net.runcache import RunCache
from tlswatch.targets import Target
from tlswatch.x509 import aia
from tlswatch.x509 import ocsp as x509_ocsp
from tlswatch.x509.certinfo import load
from tlswatch.x509.trust import Anchors, load_anchors
from tlswatch.x509.verify import signed_by


@dataclass
class EvidenceOptions:
    """Run-wide switches and the per-run cache."""

    fetch_issuers: bool = True
    timeout: float = DEFAULT_TIMEOUT
    cap: int = DEFAULT_CAP
    ocsp_method: str = "auto"  # auto | get | post
    cache: RunCache[Fetched] = field(default_factory=RunCache)


def _issuer_of(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], anchors: Anchors
) -> x509.Certificate | None:
    for cand in [*pool, *anchors.issuers_of(leaf)]:
        if cand.subject == leaf.issuer and signed_by(leaf, cand):
            return cand
    return None


async def _for_endpoint(
    obs: Observation, anchors: Anchors, revocation: bool, opts: EvidenceOptions
) -> Observation:
    if obs.error is not None or not obs.chain:
        return obs
    certs = [c for c in (load(d) for d in obs.chain) if c is not None]
    leaf = load(obs.chain[0])
    if leaf is None:
        return obs
    fetched: list[Fetched] = []
    if opts.fetch_issuers:
        fetched.extend(
            await net_aia.complete_chain(
                [leaf, *certs[1:]], anchors, opts.cache, opts.timeout, opts.cap
            )
        )
    if revocation:
        fetched.append(await _ocsp(leaf, obs.chain[0], certs[1:], fetched, anchors, opts))
    if not fetched:
        return obs
    return dataclasses.replace(obs, fetched=obs.fetched + tuple(fetched))


async def _ocsp(
    leaf: x509.Certificate,
    leaf_der: bytes,
    sent: Sequence[x509.Certificate],
    fetched: Sequence[Fetched],
    anchors: Anchors,
    opts: EvidenceOptions,
) -> Fetched:
    sha = hashlib.sha256(leaf_der).hexdigest()
    if not opts.fetch_issuers:
        return Fetched("ocsp", "", error="fetching is disabled (--no-fetch)", subject_sha256=sha)
    pool = list(sent)
    for f in fetched:
        if f.data:
            try:
                pool.extend(aia.parse_issuer_response(f.data))
            except ValueError:
                # already reported: the analysis turns this download into AIA_FETCH_FAILED
                continue
    urls = [u for u in aia.ocsp_urls(leaf) if u.lower().startswith(("http://", "https://"))]
    if not urls:
        return Fetched(
            "ocsp", "", error="the certificate names no http OCSP responder", subject_sha256=sha
        )
    issuer = _issuer_of(leaf, pool, anchors)
    if issuer is None:
        return Fetched(
            "ocsp",
            urls[0],
            error="its issuer is not known, so no OCSP request can be built",
            subject_sha256=sha,
        )
    request = x509_ocsp.build_request(leaf, issuer)
    return await net_ocsp.query(
        urls[0], request, sha, opts.cache, opts.timeout, opts.cap, opts.ocsp_method
    )


async def gather_evidence(
    target: Target, observations: Sequence[Observation], opts: EvidenceOptions | None = None
) -> list[Observation]:
    """``observations`` with the AIA issuers and OCSP answers their verdicts need."""
    opts = opts or EvidenceOptions()
    revocation = target.options.get("revocation", "") == "ocsp"
    if not opts.fetch_issuers and not revocation:
        return list(observations)
    if not any(o.chain for o in observations):
        return list(observations)
    anchors = load_anchors(
        target.options.get("trust", "system") or "system", target.options.get("ca") or None
    )
    out = []
    for obs in observations:
        out.append(await _for_endpoint(obs, anchors, revocation, opts))
    return out


__all__ = ["EvidenceOptions", "gather_evidence"]
