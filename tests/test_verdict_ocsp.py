"""Revocation (opt-in, revocation=ocsp) against real ``openssl ocsp`` responders on
loopback (tests/servers/openssl_ocsp.py): good, revoked and unknown answers, a delegated
and an issuer-signed responder, GET and POST, and a responder that is down. Plus pure
checks of what makes a response unusable (forged signature, staleness, wrong certificate).
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.servers.openssl_ocsp import OcspSetup
from tests.support.verdict_pki import DAY, NOW, make
from tlswatch.analysis.evaluate import evaluate_target
from tlswatch.model import Observation, Status, TLSInfo
from tlswatch.net.evidence import EvidenceOptions, gather_evidence
from tlswatch.targets import parse_target
from tlswatch.x509.ocsp import judge_response


async def _check(setup: OcspSetup, which: str, method: str = "auto", revocation: bool = True):
    leaf = setup.leaves[which]
    name = leaf.cert.subject.rfc4514_string().split("CN=")[1].split(",")[0]
    query = f"?trust=none&ca={setup.ca_file}" + ("&revocation=ocsp" if revocation else "")
    target = parse_target(f"tls://{name}:443{query}")
    obs = [Observation("127.0.0.1", 443, (leaf.der,), TLSInfo("TLSv1.3", "X"))]
    observed = await gather_evidence(target, obs, EvidenceOptions(timeout=5.0, ocsp_method=method))
    result = evaluate_target(target, observed, dt.datetime.now(dt.UTC))
    findings = {f.code: f for e in result.endpoints for f in e.findings}
    return result, findings


@pytest.mark.parametrize("method", ["get", "post"])
async def test_good(ocsp_responders: OcspSetup, method: str) -> None:
    """A good answer from the delegated responder: no revocation finding, status ok."""
    result, findings = await _check(ocsp_responders, "good", method)
    assert "REVOKED" not in findings and "OCSP_ERROR" not in findings, findings
    assert result.status is Status.OK


@pytest.mark.parametrize("method", ["get", "post"])
async def test_revoked(ocsp_responders: OcspSetup, method: str) -> None:
    """A revoked leaf: REVOKED (critical) with the date and reason."""
    result, findings = await _check(ocsp_responders, "revoked", method)
    assert findings["REVOKED"].severity is Status.CRITICAL
    assert "keyCompromise" in findings["REVOKED"].message
    assert result.status is Status.CRITICAL


async def test_revocation_is_opt_in(ocsp_responders: OcspSetup) -> None:
    """Without revocation=ocsp nothing is asked: the revoked leaf is just ok."""
    result, findings = await _check(ocsp_responders, "revoked", revocation=False)
    assert "REVOKED" not in findings and result.status is Status.OK


async def test_unknown(ocsp_responders: OcspSetup) -> None:
    """A certificate the responder does not know: OCSP_ERROR warning, never REVOKED."""
    result, findings = await _check(ocsp_responders, "unknown")
    assert findings["OCSP_ERROR"].severity is Status.WARNING
    assert "does not know" in findings["OCSP_ERROR"].message
    assert "REVOKED" not in findings and result.status is Status.WARNING


async def test_signed_by_the_issuer(ocsp_responders: OcspSetup) -> None:
    """A responder signing with the CA key itself is accepted."""
    result, findings = await _check(ocsp_responders, "good_by_ca")
    assert "OCSP_ERROR" not in findings and result.status is Status.OK


async def test_responder_down(ocsp_responders: OcspSetup) -> None:
    """A responder that is down: OCSP_ERROR warning 'unreachable', no exception."""
    _, findings = await _check(ocsp_responders, "down")
    assert findings["OCSP_ERROR"].severity is Status.WARNING
    assert "unreachable" in findings["OCSP_ERROR"].message


# --- pure judgement of responses ---------------------------------------------------

CA = make("Pure OCSP CA", ca=True)
LEAF = make("leaf.example.test", CA)
MALLORY = make("Mallory CA", ca=True)


def _response(
    signer=CA, status=ocsp.OCSPCertStatus.GOOD, this=NOW - DAY, nxt=NOW + DAY, cert=LEAF
) -> bytes:
    b = (
        ocsp.OCSPResponseBuilder()
        .add_response(cert.cert, CA.cert, hashes.SHA1(), status, this, nxt, None, None)
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
    )
    return b.sign(signer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_pure_good_response() -> None:
    """A fresh response signed by the issuer for this certificate is good."""
    assert judge_response(_response(), LEAF.cert, CA.cert, NOW).status == "good"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"signer": MALLORY}, "signed by neither the issuer"),
        ({"nxt": NOW - DAY, "this": NOW - 2 * DAY}, "stale response"),
        ({"this": NOW + DAY, "nxt": NOW + 2 * DAY}, "dated in the future"),
        ({"cert": make("other.example.test", CA, slot=77)}, "does not cover this certificate"),
    ],
    ids=["forged", "stale", "future", "other-cert"],
)
def test_pure_unusable_responses(kwargs: dict, reason: str) -> None:
    """Forged, stale, future-dated or foreign responses are errors, never 'good'."""
    v = judge_response(_response(**kwargs), LEAF.cert, CA.cert, NOW)
    assert v.status == "error" and reason in v.message


def test_pure_unsuccessful_status() -> None:
    """A responder error status (e.g. tryLater) is an error with its name."""
    data = ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.TRY_LATER
    ).public_bytes(serialization.Encoding.DER)
    v = judge_response(data, LEAF.cert, CA.cert, NOW)
    assert v.status == "error" and "try_later" in v.message
