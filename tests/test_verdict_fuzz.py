"""Hypothesis: arbitrary bytes and mutated DER where certificates, AIA downloads or OCSP
responses should be never raise out of the analysis; they become findings."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.verdict_pki import NOW, make
from tlswatch.analysis.evaluate import evaluate_endpoint
from tlswatch.analysis.policy import Policy
from tlswatch.model import Fetched, Observation, Status, TLSInfo
from tlswatch.targets import parse_target
from tlswatch.x509.ocsp import judge_response
from tlswatch.x509.trust import Anchors

ROOT = make("Fuzz Root", ca=True)
INTER = make("Fuzz Intermediate", ROOT, ca=True)
LEAF = make(
    "www.example.test", INTER, ca_issuers=("http://127.0.0.1:9/i",), ocsp=("http://127.0.0.1:9/o",)
)
TARGET = parse_target("tls://www.example.test:443")
POLICY = Policy("www.example.test", Anchors.of([ROOT.cert]), revocation=True)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _judge(chain: tuple[bytes, ...], fetched: tuple[Fetched, ...] = ()):
    obs = Observation("192.0.2.1", 443, chain, TLSInfo("TLSv1.2", "X"), fetched=fetched)
    return evaluate_endpoint(TARGET, obs, NOW, POLICY)


@st.composite
def mutated(draw: st.DrawFn, der: bytes) -> bytes:
    data = bytearray(der)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos]
    return bytes(data)


@FAST
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_arbitrary_bytes_as_chain(chain: list[bytes]) -> None:
    """Random bytes as a chain: a CERT_UNPARSABLE finding and a critical status."""
    r = _judge(tuple(chain))
    assert r.status is Status.CRITICAL
    assert any(f.code == "CERT_UNPARSABLE" for f in r.findings)


@FAST
@given(mutated(LEAF.der))
def test_mutated_leaf(der: bytes) -> None:
    """A mutated leaf never raises; any change is a non-ok finding (it no longer parses,
    or its signature no longer verifies)."""
    r = _judge((der, INTER.der))
    if der != LEAF.der:
        assert any(f.severity is not Status.OK for f in r.findings), r.findings
        assert r.status is not Status.OK


@FAST
@given(mutated(INTER.der))
def test_mutated_intermediate(der: bytes) -> None:
    """A mutated intermediate never raises and the chain is no longer ok."""
    r = _judge((LEAF.der, der))
    if der != INTER.der:
        assert r.status is not Status.OK


@FAST
@given(st.binary(max_size=400) | mutated(INTER.der))
def test_garbage_aia_and_ocsp_downloads(data: bytes) -> None:
    """Whatever an AIA or OCSP URL serves, the analysis returns findings, never raises."""
    fetched = (
        Fetched("ca_issuers", "http://127.0.0.1:9/i", data=data),
        Fetched(
            "ocsp",
            "http://127.0.0.1:9/o",
            data=data,
            subject_sha256=__import__("hashlib").sha256(LEAF.der).hexdigest(),
        ),
    )
    r = _judge((LEAF.der,), fetched)
    assert r.findings
    assert judge_response(data, LEAF.cert, INTER.cert, NOW).status in (
        "error",
        "good",
        "revoked",
        "unknown",
    )
