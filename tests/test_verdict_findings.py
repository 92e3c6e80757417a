"""Every finding code of PRODUCT.md §3 that one probe can show: a case that produces it and
one that must not, on generated chains judged at a fixed time (pure: no network)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.support.verdict_pki import DAY, NOW, Issued, make, resign
from tlswatch.analysis.evaluate import evaluate_endpoint, evaluate_target
from tlswatch.analysis.findings import ALL_CODES, CATALOGUE
from tlswatch.analysis.policy import Policy, Threshold
from tlswatch.errors import Failure, FailureClass
from tlswatch.model import EndpointResult, Fetched, Observation, Status, TLSInfo
from tlswatch.targets import parse_target
from tlswatch.x509.trust import Anchors, load_anchors

ROOT = make("Findings Root CA", ca=True)
OTHER_ROOT = make("Findings Other Root", ca=True)
INTER = make("Findings Intermediate CA", ROOT, ca=True)
LEAF = make("www.example.test", INTER)
TARGET = parse_target("tls://www.example.test:443")


def der(c: Issued | x509.Certificate | bytes) -> bytes:
    if isinstance(c, bytes):
        return c
    cert = c.cert if isinstance(c, Issued) else c
    return cert.public_bytes(serialization.Encoding.DER)


def judge(
    chain: Sequence[Issued | x509.Certificate | bytes],
    *,
    anchors: Anchors | None = None,
    name: str = "www.example.test",
    tls: str = "TLSv1.3",
    fetched: tuple[Fetched, ...] = (),
    warn: str | None = None,
    crit: str | None = None,
    now=NOW,
) -> EndpointResult:
    policy = Policy(
        name=name,
        anchors=anchors if anchors is not None else Anchors.of([ROOT.cert]),
        warn=Threshold.parse(warn) if warn else None,
        crit=Threshold.parse(crit) if crit else None,
    )
    obs = Observation(
        "192.0.2.1", 443, tuple(der(c) for c in chain), TLSInfo(tls, "X"), fetched=fetched
    )
    return evaluate_endpoint(TARGET, obs, now, policy)


def codes(r: EndpointResult) -> dict[str, Status]:
    """finding code → worst severity among findings with that code"""
    out: dict[str, Status] = {}
    for f in r.findings:
        if f.code not in out or f.severity.rank > out[f.code].rank:
            out[f.code] = f.severity
    return out


def leaf(start_days: float, end_days: float, issuer: Issued = INTER, **kw) -> Issued:
    return make(
        "www.example.test", issuer, start=NOW + start_days * DAY, end=NOW + end_days * DAY, **kw
    )


def test_good_chain_has_no_findings() -> None:
    """The baseline: a 90-day leaf 30 days in, full chain, trusted root, right name."""
    r = judge([LEAF, INTER])
    assert r.findings == () and r.status is Status.OK
    assert r.verification is not None and r.verification.code == "ok"


@pytest.mark.parametrize(
    ("chain_kw", "kw", "code", "severity"),
    [
        ({"start_days": -100, "end_days": -1}, {}, "CERT_EXPIRED", Status.CRITICAL),
        ({"start_days": 1, "end_days": 91}, {}, "CERT_NOT_YET_VALID", Status.CRITICAL),
        ({"start_days": -70, "end_days": 20}, {}, "CERT_EXPIRES_SOON", Status.WARNING),
        ({"start_days": -85, "end_days": 5}, {}, "CERT_EXPIRES_SOON", Status.CRITICAL),
        ({"start_days": -50, "end_days": 40}, {"warn": "50%"}, "CERT_EXPIRES_SOON", Status.WARNING),
        (
            {"start_days": -70, "end_days": 20},
            {"warn": "25", "crit": "20d"},
            "CERT_EXPIRES_SOON",
            Status.CRITICAL,
        ),
        # short-lived (≤ 47 days): 33% / 10% by default
        ({"start_days": -22, "end_days": 8}, {}, "CERT_EXPIRES_SOON", Status.WARNING),
        ({"start_days": -28, "end_days": 2}, {}, "CERT_EXPIRES_SOON", Status.CRITICAL),
        ({"start_days": -70, "end_days": 20}, {}, "RENEWAL_OVERDUE", Status.WARNING),
        ({"start_days": -265, "end_days": 100}, {}, "RENEWAL_OVERDUE", Status.OK),
    ],
)
def test_expiry_findings_produced(chain_kw: dict, kw: dict, code: str, severity: Status) -> None:
    """Expiry findings and their severities under default, day and percent thresholds."""
    r = judge([leaf(**chain_kw), INTER], **kw)
    assert codes(r).get(code) is severity, r.findings


@pytest.mark.parametrize(
    ("chain_kw", "kw", "code"),
    [
        ({"start_days": -30, "end_days": 60}, {}, "CERT_EXPIRED"),
        ({"start_days": -30, "end_days": 60}, {}, "CERT_NOT_YET_VALID"),
        ({"start_days": -50, "end_days": 40}, {}, "CERT_EXPIRES_SOON"),
        ({"start_days": -70, "end_days": 20}, {"warn": "10", "crit": "3"}, "CERT_EXPIRES_SOON"),
        ({"start_days": -50, "end_days": 40}, {"warn": "33%"}, "CERT_EXPIRES_SOON"),
        # a 47-day certificate with 20 days left is fine (days defaults would warn)
        ({"start_days": -27, "end_days": 20}, {}, "CERT_EXPIRES_SOON"),
        ({"start_days": -50, "end_days": 40}, {}, "RENEWAL_OVERDUE"),
        ({"start_days": -100, "end_days": -1}, {}, "RENEWAL_OVERDUE"),
    ],
)
def test_expiry_findings_not_produced(chain_kw: dict, kw: dict, code: str) -> None:
    """…and the cases just outside each threshold, which must stay quiet."""
    assert code not in codes(judge([leaf(**chain_kw), INTER], **kw))


def test_chain_cert_expired_and_expiring() -> None:
    """An expired intermediate is CHAIN_CERT_EXPIRED (critical); one expiring in 10 days
    is CHAIN_CERT_EXPIRES_SOON warning, in 3 days critical; a healthy one neither."""
    old = make("Expired Inter", ROOT, ca=True, start=NOW - 900 * DAY, end=NOW - DAY)
    assert codes(judge([leaf(-10, 80, old), old]))["CHAIN_CERT_EXPIRED"] is Status.CRITICAL
    soon = make("Soon Inter", ROOT, ca=True, start=NOW - 900 * DAY, end=NOW + 10 * DAY)
    assert codes(judge([leaf(-10, 80, soon), soon]))["CHAIN_CERT_EXPIRES_SOON"] is Status.WARNING
    sooner = make("Sooner Inter", ROOT, ca=True, start=NOW - 900 * DAY, end=NOW + 3 * DAY)
    assert (
        codes(judge([leaf(-10, 80, sooner), sooner]))["CHAIN_CERT_EXPIRES_SOON"] is Status.CRITICAL
    )
    fine = codes(judge([LEAF, INTER]))
    assert "CHAIN_CERT_EXPIRED" not in fine and "CHAIN_CERT_EXPIRES_SOON" not in fine


def test_extraneous_expired_certificate_is_a_warning() -> None:
    """An expired certificate the server sends but the path does not need is a warning,
    and the chain is still ok."""
    stale = make("Stale Cross-sign", OTHER_ROOT, ca=True, start=NOW - 900 * DAY, end=NOW - DAY)
    r = judge([LEAF, INTER, stale])
    assert codes(r)["CHAIN_CERT_EXPIRED"] is Status.WARNING
    assert r.verification is not None and r.verification.code == "ok"


def test_chain_untrusted() -> None:
    """Unknown CA and an untrusted root in the chain are CHAIN_UNTRUSTED; trusted is not."""
    assert (
        codes(judge([LEAF, INTER], anchors=Anchors.of([OTHER_ROOT.cert])))["CHAIN_UNTRUSTED"]
        is Status.CRITICAL
    )
    assert (
        codes(judge([LEAF, INTER, ROOT], anchors=Anchors.of([OTHER_ROOT.cert])))["CHAIN_UNTRUSTED"]
        is Status.CRITICAL
    )
    assert "CHAIN_UNTRUSTED" not in codes(judge([LEAF, INTER, ROOT]))


def _p7(certs: list[x509.Certificate]) -> bytes:
    return pkcs7.serialize_certificates(certs, serialization.Encoding.DER)


@pytest.mark.parametrize("form", ["der", "pkcs7", "pem"])
def test_chain_incomplete_when_aia_supplies_the_intermediate(form: str) -> None:
    """Leaf only + the intermediate fetched from AIA (DER, PKCS#7 or PEM): the verdict
    stays unable_to_get_issuer, the finding is CHAIN_INCOMPLETE, not CHAIN_UNTRUSTED."""
    data = {"der": INTER.der, "pkcs7": _p7([INTER.cert]), "pem": INTER.pem}[form]
    r = judge([LEAF], fetched=(Fetched("ca_issuers", "http://ca.example.test/i", data=data),))
    c = codes(r)
    assert c["CHAIN_INCOMPLETE"] is Status.CRITICAL and "CHAIN_UNTRUSTED" not in c
    assert r.verification is not None and r.verification.code == "unable_to_get_issuer"


def test_chain_incomplete_not_for_a_complete_chain_or_wrong_issuer() -> None:
    """A complete chain never gets CHAIN_INCOMPLETE; a fetched certificate that is not the
    issuer leaves the chain untrusted."""
    assert "CHAIN_INCOMPLETE" not in codes(
        judge([LEAF, INTER], fetched=(Fetched("ca_issuers", "http://x/i", data=INTER.der),))
    )
    c = codes(judge([LEAF], fetched=(Fetched("ca_issuers", "http://x/i", data=OTHER_ROOT.der),)))
    assert "CHAIN_INCOMPLETE" not in c and c["CHAIN_UNTRUSTED"] is Status.CRITICAL


def test_chain_incomplete_warning_when_only_the_store_has_the_intermediate() -> None:
    """The local store holds the intermediate: it validates here (code ok) but other
    clients will fail: CHAIN_INCOMPLETE as a warning."""
    r = judge([LEAF], anchors=Anchors.of([ROOT.cert, INTER.cert]))
    assert codes(r)["CHAIN_INCOMPLETE"] is Status.WARNING
    assert r.verification is not None and r.verification.code == "ok"


def test_aia_fetch_failed() -> None:
    """A failed or garbage AIA download is AIA_FETCH_FAILED (warning) next to the
    untrusted verdict; none when nothing was fetched."""
    c = codes(
        judge([LEAF], fetched=(Fetched("ca_issuers", "http://x/i", error="HTTP 404 Not Found"),))
    )
    assert c["AIA_FETCH_FAILED"] is Status.WARNING and c["CHAIN_UNTRUSTED"] is Status.CRITICAL
    c = codes(judge([LEAF], fetched=(Fetched("ca_issuers", "http://x/i", data=b"<html>"),)))
    assert c["AIA_FETCH_FAILED"] is Status.WARNING
    assert "AIA_FETCH_FAILED" not in codes(judge([LEAF]))


@pytest.mark.parametrize(
    ("chain", "produced"),
    [
        ([LEAF, ROOT, INTER], True),
        ([LEAF, INTER, INTER], True),
        ([LEAF, INTER, OTHER_ROOT], True),
        ([LEAF, INTER, ROOT], False),
        ([LEAF, INTER], False),
    ],
    ids=["reversed", "duplicate", "unrelated", "with-root", "plain"],
)
def test_chain_order(chain: list[Issued], produced: bool) -> None:
    """Out of order, duplicated or unrelated certificates are CHAIN_ORDER (warning)."""
    assert ("CHAIN_ORDER" in codes(judge(chain))) is produced


def test_self_signed() -> None:
    """An untrusted self-signed leaf is SELF_SIGNED critical; pinned through the anchors
    it is informational; a CA-issued leaf never is."""
    ss = make("www.example.test", None, slot=21)
    assert codes(judge([ss]))["SELF_SIGNED"] is Status.CRITICAL
    pinned = judge([ss], anchors=Anchors.of([ss.cert]))
    assert codes(pinned)["SELF_SIGNED"] is Status.OK and pinned.status is Status.OK
    assert "SELF_SIGNED" not in codes(judge([LEAF, INTER]))


def test_trust_none_does_not_judge_trust() -> None:
    """trust=none without ca=: trust findings are informational, expiry still counts."""
    ss = make("www.example.test", None, slot=22)
    r = judge([ss], anchors=Anchors.of([], judged=False))
    assert codes(r)["SELF_SIGNED"] is Status.OK and r.status is Status.OK
    old = make("www.example.test", None, slot=23, start=NOW - 90 * DAY, end=NOW - DAY)
    assert judge([old], anchors=Anchors.of([], judged=False)).status is Status.CRITICAL


def test_hostname_mismatch() -> None:
    """A name the leaf is not valid for is HOSTNAME_MISMATCH; a wildcard match is not."""
    assert (
        codes(judge([LEAF, INTER], name="mail.example.test"))["HOSTNAME_MISMATCH"]
        is Status.CRITICAL
    )
    assert "HOSTNAME_MISMATCH" not in codes(judge([LEAF, INTER], name="x.wild.example.test"))


def test_weak_key_and_signature() -> None:
    """RSA-1024 is WEAK_KEY, a SHA-1 signature WEAK_SIGNATURE (both critical); the
    self-signature of the root is not judged."""
    assert codes(judge([leaf(-30, 60, kind="rsa1024"), INTER]))["WEAK_KEY"] is Status.CRITICAL
    rsa_inter = make("Findings RSA Inter", ROOT, ca=True, kind="rsa2048")
    sha1 = resign(make("www.example.test", rsa_inter, slot=24).cert, rsa_inter.key, "sha1")  # type: ignore[arg-type]
    assert codes(judge([sha1, rsa_inter]))["WEAK_SIGNATURE"] is Status.CRITICAL
    good = codes(judge([LEAF, INTER, ROOT]))
    assert "WEAK_KEY" not in good and "WEAK_SIGNATURE" not in good


@pytest.mark.parametrize(
    ("version", "produced"),
    [("TLSv1", True), ("TLSv1.1", True), ("TLSv1.2", False), ("TLSv1.3", False)],
)
def test_legacy_tls_version(version: str, produced: bool) -> None:
    """TLS 1.0 and 1.1 are LEGACY_TLS_VERSION (warning); 1.2 and 1.3 are not."""
    c = codes(judge([LEAF, INTER], tls=version))
    assert ("LEGACY_TLS_VERSION" in c) is produced
    if produced:
        assert c["LEGACY_TLS_VERSION"] is Status.WARNING


@pytest.mark.parametrize("fc", list(FailureClass))
def test_failure_classes_are_findings(fc: FailureClass) -> None:
    """A failed probe carries its failure class upper-cased as the finding code; status
    unknown, except UPGRADE_NOT_OFFERED which is critical (the server answered: no TLS)."""
    obs = Observation("192.0.2.1", 25, error=Failure(fc, "what happened"))
    r = evaluate_endpoint(TARGET, obs, NOW)
    (f,) = r.findings
    assert f.code == fc.value.upper() and "what happened" in f.message
    expected = Status.CRITICAL if fc is FailureClass.UPGRADE_NOT_OFFERED else Status.UNKNOWN
    assert r.status is f.severity is expected


def test_cert_unparsable() -> None:
    """Garbage where a certificate should be is CERT_UNPARSABLE, never an exception;
    verification says invalid."""
    r = judge([b"\x30\x03\x02\x01\x00"])
    assert codes(r)["CERT_UNPARSABLE"] is Status.CRITICAL and r.status is Status.CRITICAL
    assert r.verification is not None and r.verification.code == "invalid"
    assert codes(judge([LEAF, b"junk"]))["CERT_UNPARSABLE"] is Status.CRITICAL
    assert "CERT_UNPARSABLE" not in codes(judge([LEAF, INTER]))


def test_cert_with_invalid_version_is_unparsable() -> None:
    """A certificate whose version (RFC 5280 §4.1.2.1: [0] EXPLICIT INTEGER, v3 = 2) is out
    of range makes cryptography raise InvalidVersion, which is not a ValueError: it is still
    CERT_UNPARSABLE with parse_error set, for the chain's facts, verification and evidence."""
    from tlswatch.x509.certinfo import describe, load

    v3 = b"\xa0\x03\x02\x01\x02"
    assert der(LEAF).count(v3) == 1
    bad = der(LEAF).replace(v3, b"\xa0\x03\x02\x01\x4e")
    assert load(bad) is None
    assert describe(bad, 0, NOW).parse_error == "not a valid DER X.509 certificate"
    r = judge([bad, INTER])
    assert codes(r)["CERT_UNPARSABLE"] is Status.CRITICAL
    assert r.chain[0].parse_error is not None and r.chain[1].parse_error is None


def test_no_certificate() -> None:
    """A handshake without a certificate is CHAIN_UNTRUSTED with verification invalid."""
    r = judge([])
    assert codes(r)["CHAIN_UNTRUSTED"] is Status.CRITICAL
    assert r.verification is not None and r.verification.code == "invalid"


def test_trust_store_error(tmp_path) -> None:
    """An unreadable ca= file is a TRUST_STORE_ERROR finding naming the file."""
    anchors = load_anchors("none", str(tmp_path / "missing.pem"))
    r = judge([LEAF, INTER], anchors=anchors)
    (f,) = [f for f in r.findings if f.code == "TRUST_STORE_ERROR"]
    assert "missing.pem" in f.message
    assert "TRUST_STORE_ERROR" not in codes(judge([LEAF, INTER]))


def test_trust_store_error_for_a_der_ca_file_with_invalid_version(tmp_path) -> None:
    """A DER ca= file that cryptography rejects with InvalidVersion (not a ValueError) is a
    TRUST_STORE_ERROR naming the file, not an exception."""
    bad = tmp_path / "bad-version.der"
    bad.write_bytes(der(ROOT).replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x4e", 1))
    r = judge([LEAF, INTER], anchors=load_anchors("none", str(bad)))
    (f,) = [f for f in r.findings if f.code == "TRUST_STORE_ERROR"]
    assert "bad-version.der" in f.message and "no usable certificate" in f.message


def _obs(address: str, chain: list[Issued]) -> Observation:
    return Observation(address, 443, tuple(c.der for c in chain), TLSInfo("TLSv1.3", "X"))


def test_endpoints_disagree_and_rollup() -> None:
    """Two addresses serving different leaves: ENDPOINTS_DISAGREE (warning) on the target,
    whose status is the worst endpoint's; identical leaves: no finding."""
    other = make("www.example.test", INTER, slot=31)
    policy = Policy("www.example.test", Anchors.of([ROOT.cert]))
    r = evaluate_target(
        TARGET,
        [_obs("192.0.2.1", [LEAF, INTER]), _obs("192.0.2.2", [other, INTER])],
        NOW,
        policy=policy,
    )
    assert [f.code for f in r.findings] == ["ENDPOINTS_DISAGREE"]
    assert r.status is Status.WARNING
    expired = leaf(-100, -1)
    r = evaluate_target(
        TARGET,
        [_obs("192.0.2.1", [LEAF, INTER]), _obs("192.0.2.2", [expired, INTER])],
        NOW,
        policy=policy,
    )
    assert r.status is Status.CRITICAL
    same = evaluate_target(
        TARGET,
        [_obs("192.0.2.1", [LEAF, INTER]), _obs("2001:db8::1", [LEAF, INTER])],
        NOW,
        policy=policy,
    )
    assert same.findings == () and same.status is Status.OK


def test_dns_failure_is_unknown() -> None:
    """No endpoints because name resolution failed: status unknown with a DNS finding."""
    r = evaluate_target(TARGET, [], NOW, Failure(FailureClass.DNS, "NXDOMAIN"))
    assert r.status is Status.UNKNOWN and [f.code for f in r.findings] == ["DNS"]


def test_messages_name_the_certificate() -> None:
    """Every certificate finding names position, subject and a fingerprint prefix."""
    r = judge([leaf(-100, -1), INTER], name="mail.example.test")
    for f in r.findings:
        assert "#0" in f.message and "CN=www.example.test" in f.message and "sha256 " in f.message


def test_catalogue_covers_every_code() -> None:
    """Every code the evaluator can emit is in the catalogue docs/verdicts.md is written
    from (failure classes included)."""
    assert "UPGRADE_NOT_OFFERED" in CATALOGUE and "CONNECT_REFUSED" in ALL_CODES
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "verdicts.md").read_text()
    for code in ALL_CODES:
        assert f"`{code}`" in doc, code
