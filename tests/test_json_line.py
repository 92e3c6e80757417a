"""``dumps_line`` writes the JSON Lines record directly instead of through ``result_dict``
and ``json.dumps`` (issue 6); it must stay the exact text json.dumps makes of the dict, for
real verdicts and for every type and value the model fields can hold."""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable

import pytest

from tests.support.verdict_pki import DAY, NOW, make
from tlswatch.analysis.evaluate import evaluate_target
from tlswatch.analysis.policy import Policy
from tlswatch.errors import Failure, FailureClass
from tlswatch.model import (
    CertInfo,
    EndpointResult,
    Finding,
    KeyInfo,
    Observation,
    Status,
    TargetResult,
    Timings,
    TLSInfo,
    Verification,
)
from tlswatch.render.jsonfmt import SCHEMA, dumps_line, iso, result_dict
from tlswatch.targets import parse_target
from tlswatch.x509.trust import Anchors


def reference(r: TargetResult) -> str:
    """The record as dumps_line wrote it before issue 6."""
    return json.dumps(
        {"schema": SCHEMA, "checked_at": iso(r.checked_at), **result_dict(r)},
        ensure_ascii=False,
        separators=(",", ":"),
    )


ROOT = make("Line Root CA", ca=True)
INTER = make("Line Intermediate CA", ROOT, ca=True)
TARGET = parse_target("tls://www.example.test:443")


# Results are built inside each test, not kept at module level: tests/test_scan.py counts
# the TargetResult objects alive in the process.
#: chain → the verification code it gets (so each case really covers what it is named for)
CHAINS = {
    "ok": "ok",
    "expired": "expired",
    "mismatch": "hostname_mismatch",
    "incomplete": "unable_to_get_issuer",
    "unparsable": "unable_to_get_issuer",
    "no_certificate": "invalid",
}


def _judged(name: str) -> TargetResult:
    good = make("www.example.test", INTER)
    expired = make("www.example.test", INTER, start=NOW - 99 * DAY, end=NOW - DAY)
    other = make("mail.example.test", INTER, dns=("mail.example.test",))
    chains = {
        "ok": [good.der, INTER.der],
        "expired": [expired.der, INTER.der],
        "mismatch": [other.der, INTER.der],
        "incomplete": [good.der],
        "unparsable": [good.der, b"\x30\x03\x02\x01\x00"],
        "no_certificate": [],
    }
    assert set(chains) == set(CHAINS)
    policy = Policy(name="www.example.test", anchors=Anchors.of([ROOT.cert]))
    obs = Observation(
        "192.0.2.1",
        443,
        tuple(chains[name]),
        TLSInfo("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", "h2"),
        timings=Timings(0.1, 1.25, None, 7.0),
        upgrade={"banner": "220 mail ESMTP ✓"},
    )
    return evaluate_target(TARGET, [obs], NOW, policy=policy)


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_judged_results_render_as_json_dumps_does(name: str) -> None:
    """Verdicts from the analysis: findings, details, parse errors, no chain at all."""
    r = _judged(name)
    assert dumps_line(r) == reference(r)
    assert json.loads(dumps_line(r))["endpoints"][0]["verification"]["code"] == CHAINS[name]


class Tint(enum.IntEnum):
    PORT = 8443


class Tstr(enum.StrEnum):
    SUBJECT = "CN=enum"


class Tfloat(float):
    pass


ODD_TEXT = 'quote " backslash \\ nul \x00 tab \t line\u2028sep é 日本 \ud800 \U0001f512'


def _cert(**kw: object) -> CertInfo:
    fields: dict[str, object] = {
        "position": 0,
        "subject": "CN=a",
        "issuer": "CN=b",
        "serial": "1f",
        "sha256": "00" * 32,
        "not_before": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "not_after": dt.datetime(2027, 1, 2, 3, 4, 5, 678, tzinfo=dt.UTC),
        "days_left": 12.34,
        "key": KeyInfo("EC-secp256r1", 256),
        "signature_algorithm": "ecdsa-with-SHA256",
        "san": ("DNS:a", "IP:192.0.2.1"),
    }
    fields.update(kw)
    return CertInfo(**fields)  # type: ignore[arg-type]


def _result(chain: tuple[CertInfo, ...], **kw: object) -> TargetResult:
    ep: dict[str, object] = {
        "address": "2001:db8::1",
        "port": 443,
        "status": Status.WARNING,
        "observation": Observation(
            "2001:db8::1", 443, (), TLSInfo("TLSv1.3", "TLS_AES_128_GCM_SHA256")
        ),
        "chain": chain,
        "verification": Verification("hostname_mismatch", False, False, ODD_TEXT),
        "findings": (Finding("HOSTNAME_MISMATCH", Status.CRITICAL, ODD_TEXT),),
    }
    ep.update(kw)
    return TargetResult(
        target="tls://[2001:db8::1]:443?sni=" + ODD_TEXT,
        protocol="tls",
        tls_mode="implicit",
        status=Status.CRITICAL,
        checked_at=dt.datetime(2026, 12, 4, 23, 30, 5, 123456, tzinfo=dt.UTC),
        endpoints=(EndpointResult(**ep),),  # type: ignore[arg-type]
        findings=(Finding("ENDPOINTS_DISAGREE", Status.WARNING, "x"),),
        days_left=-0.5,
        earliest_expiry=dt.datetime(2027, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    )


FAILED = Observation(
    "192.0.2.9",
    25,
    error=Failure(FailureClass.UPGRADE_REFUSED, "STARTTLS refused", "454 TLS not available"),
    timings=Timings(1, None, 2.5, None),
    upgrade={"banner": ODD_TEXT, "detected": "smtp"},
)

SYNTHETIC: dict[str, Callable[[], TargetResult]] = {
    "odd_text_everywhere": lambda: _result(
        (_cert(subject=ODD_TEXT, issuer=ODD_TEXT, san=(ODD_TEXT,)), _cert(position=1))
    ),
    "parse_error_and_no_key": lambda: _result(
        (_cert(key=None, not_before=None, not_after=None, days_left=None, parse_error="bad"),)
    ),
    "failed_probe": lambda: _result(
        (), observation=FAILED, status=Status.CRITICAL, verification=None, findings=()
    ),
    "no_tls_no_detail": lambda: _result(
        (),
        observation=Observation("192.0.2.1", 1, ()),
        verification=Verification("ok", True, True, ""),
    ),
    "subclasses_and_odd_numbers": lambda: _result(
        (
            _cert(position=Tint.PORT, subject=Tstr.SUBJECT, days_left=Tfloat(1.5)),
            _cert(days_left=float("nan"), key=KeyInfo("RSA", True)),  # type: ignore[arg-type]
            _cert(days_left=float("-inf"), serial=2**80),  # type: ignore[arg-type]
            _cert(days_left=7, position=-1),
        ),
        port=Tint.PORT,
    ),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_every_field_type_renders_as_json_dumps_does(name: str) -> None:
    """Escapes, non-ASCII, None in every optional field, failures with excerpts, int and
    float enum/subclass values, NaN and infinities, ints where floats usually are."""
    r = SYNTHETIC[name]()
    assert dumps_line(r) == reference(r)


def test_a_dns_failure_without_endpoints_renders_as_json_dumps_does() -> None:
    """No endpoints, a target-level error and no expiry."""
    failure = Failure(FailureClass.DNS, "no such host")
    r = evaluate_target(TARGET, [], NOW, failure)
    assert r.error is not None and not r.endpoints
    assert dumps_line(r) == reference(r)
