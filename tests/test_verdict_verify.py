"""Chain verification codes (PRODUCT.md §3) on a generated PKI at a fixed check time, each
case cross-checked with ``openssl verify`` on the same files: OpenSSL's verifier is the
reference users trust, so both must reach the same code (mapping in
tlswatch.x509.verify.OPENSSL_ERRORS and docs/verdicts.md)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.processes import require_binary
from tests.support.verdict_pki import DAY, NOW, Issued, corrupt_signature, make, resign, write_pems
from tlswatch.x509.hostname import dns_name_matches, parse_ip
from tlswatch.x509.trust import Anchors
from tlswatch.x509.verify import OPENSSL_ERRORS, PRECEDENCE, openssl_code, verify_chain


@dataclass
class Case:
    sent: list[x509.Certificate]
    anchors: list[x509.Certificate]
    host: str
    code: str
    #: defects besides ``code`` that must also be reported
    also: set[str] = field(default_factory=set)


def _c(*items: Issued | x509.Certificate) -> list[x509.Certificate]:
    return [i.cert if isinstance(i, Issued) else i for i in items]


def build_cases() -> dict[str, Case]:
    root = make("Verdict Root CA", ca=True)
    other_root = make("Unrelated Root CA", ca=True)
    inter = make("Verdict Intermediate CA", root, ca=True)
    leaf = make("www.example.test", inter)
    host = "www.example.test"

    expired_inter = make(
        "Expired Intermediate CA", root, ca=True, start=NOW - 900 * DAY, end=NOW - DAY
    )
    rsa_inter = make("RSA Intermediate CA", root, ca=True, kind="rsa2048")
    weak_inter = make("Weak RSA-1024 Intermediate CA", root, ca=True, kind="rsa1024")
    not_ca_inter = make("Not-a-CA Intermediate", root, ca=False, san=False, eku=None)
    rsa_leaf = make("www.example.test", rsa_inter, slot=7)
    self_leaf = make("www.example.test", None, slot=8)
    nosan_leaf = make("cn.example.test", inter, san=False)
    return {
        "ok": Case(_c(leaf, inter), _c(root), host, "ok"),
        "ok_wildcard": Case(_c(leaf, inter), _c(root), "Host1.Wild.Example.Test", "ok"),
        "ok_ip_san": Case(_c(leaf, inter), _c(root), "192.0.2.10", "ok"),
        "ok_any_order_with_root": Case(_c(leaf, root, inter), _c(root), host, "ok"),
        "ok_cn_fallback_without_san": Case(
            _c(nosan_leaf, inter), _c(root), "cn.example.test", "ok"
        ),
        "ok_pinned_self_signed": Case(_c(self_leaf), _c(self_leaf), host, "ok"),
        "expired_leaf": Case(
            _c(make("www.example.test", inter, start=NOW - 100 * DAY, end=NOW - 10 * DAY), inter),
            _c(root),
            host,
            "expired",
        ),
        "expired_intermediate": Case(
            _c(make("www.example.test", expired_inter, start=NOW - 10 * DAY), expired_inter),
            _c(root),
            host,
            "expired",
        ),
        "not_yet_valid": Case(
            _c(make("www.example.test", inter, start=NOW + 10 * DAY, end=NOW + 100 * DAY), inter),
            _c(root),
            host,
            "not_yet_valid",
        ),
        "missing_intermediate": Case(_c(leaf), _c(root), host, "unable_to_get_issuer"),
        "unknown_ca": Case(_c(leaf, inter), _c(other_root), host, "unable_to_get_issuer"),
        "self_signed_leaf": Case(_c(self_leaf), _c(root), host, "self_signed"),
        "untrusted_root_sent": Case(
            _c(leaf, inter, root), _c(other_root), host, "self_signed_in_chain"
        ),
        "hostname_mismatch": Case(
            _c(leaf, inter), _c(root), "mail.example.test", "hostname_mismatch"
        ),
        "wildcard_spans_one_label_only": Case(
            _c(leaf, inter), _c(root), "a.b.wild.example.test", "hostname_mismatch"
        ),
        "no_cn_fallback_when_san": Case(
            _c(make("cn.example.test", inter, slot=9), inter),
            _c(root),
            "cn.example.test",
            "hostname_mismatch",
        ),
        "ip_mismatch": Case(_c(leaf, inter), _c(root), "192.0.2.99", "hostname_mismatch"),
        "ip_not_matched_by_dns_san": Case(
            _c(make("www.example.test", inter, dns=("192.0.2.10",), ips=(), slot=10), inter),
            _c(root),
            "192.0.2.10",
            "hostname_mismatch",
        ),
        "weak_leaf_key": Case(
            _c(make("www.example.test", inter, kind="rsa1024"), inter), _c(root), host, "weak_key"
        ),
        "weak_intermediate_key": Case(
            _c(make("www.example.test", weak_inter, slot=11), weak_inter),
            _c(root),
            host,
            "weak_key",
        ),
        "sha1_signature": Case(
            _c(resign(rsa_leaf.cert, rsa_inter.key, "sha1"), rsa_inter),  # type: ignore[arg-type]
            _c(root),
            host,
            "weak_signature",
        ),
        "md5_signature": Case(
            _c(resign(rsa_leaf.cert, rsa_inter.key, "md5"), rsa_inter),  # type: ignore[arg-type]
            _c(root),
            host,
            "weak_signature",
        ),
        "intermediate_not_a_ca": Case(
            _c(make("www.example.test", not_ca_inter, slot=12), not_ca_inter),
            _c(root),
            host,
            "invalid",
        ),
        "bad_signature": Case(_c(corrupt_signature(leaf.cert), inter), _c(root), host, "invalid"),
        "client_only_eku": Case(
            _c(
                make("www.example.test", inter, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), slot=13),
                inter,
            ),
            _c(root),
            host,
            "invalid",
        ),
        # two defects: the precedence decides, and both are reported
        "expired_and_self_signed": Case(
            _c(make("www.example.test", None, start=NOW - 100 * DAY, end=NOW - DAY, slot=14)),
            _c(root),
            host,
            "expired",
            {"self_signed"},
        ),
        "expired_and_wrong_host": Case(
            _c(make("www.example.test", inter, start=NOW - 100 * DAY, end=NOW - DAY), inter),
            _c(root),
            "mail.example.test",
            "expired",
            {"hostname_mismatch"},
        ),
    }


CASES = build_cases()


def _der(c: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return c.public_bytes(Encoding.DER)


def _ours(case: Case):
    return verify_chain([_der(c) for c in case.sent], Anchors.of(case.anchors), case.host, NOW)


@pytest.mark.parametrize("name", sorted(CASES))
def test_verification_code(name: str) -> None:
    """Each generated chain gets exactly the verification code its one defect calls for
    (and multi-defect chains the code of highest precedence, with the others recorded)."""
    case = CASES[name]
    v = _ours(case)
    assert v.code == case.code, (v.code, v.defects)
    assert case.also <= set(v.defects)
    assert v.trusted == (case.code in ("ok", "hostname_mismatch"))  # trust ignores the name
    assert v.hostname_match == ("hostname_mismatch" not in v.defects)
    if case.code != "ok":
        assert v.detail and v.detail == v.defects[case.code]


def test_every_code_has_a_case_that_produces_it() -> None:
    """The case table covers every verification code, and each code also has cases that
    must not produce it (every other case)."""
    produced = {c.code for c in CASES.values()}
    assert produced == {"ok", *PRECEDENCE}


def _openssl(case: Case, tmp: Path) -> tuple[str, list[int], str]:
    binary = require_binary("openssl")
    leaf = write_pems(tmp / "leaf.pem", case.sent[:1])
    cafile = write_pems(tmp / "ca.pem", case.anchors)
    args = [binary, "verify", "-no-CApath", "-no-CAstore", "-CAfile", str(cafile)]
    if len(case.sent) > 1:
        args += ["-untrusted", str(write_pems(tmp / "untrusted.pem", case.sent[1:]))]
    args += ["-attime", str(int(NOW.timestamp())), "-auth_level", "2", "-purpose", "sslserver"]
    args += ["-verify_ip" if parse_ip(case.host) else "-verify_hostname", case.host, str(leaf)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    out = proc.stdout + proc.stderr
    errors = [int(n) for n in re.findall(r"error (\d+) at \d+ depth lookup", out)]
    if proc.returncode != 0:
        assert errors, out  # a failure always names its error
    return openssl_code(errors), errors, out


# Multi-defect chains: OpenSSL stops at the first error its verify callback does not
# excuse (a hostname mismatch is checked before dates), so only cases whose errors it
# reports in full are compared.
OPENSSL_COMPARABLE = sorted(n for n in CASES if n != "expired_and_wrong_host")


@pytest.mark.parametrize("name", OPENSSL_COMPARABLE)
def test_same_verdict_as_openssl_verify(name: str, tmp_path: Path) -> None:
    """``openssl verify -CAfile -untrusted -attime -auth_level 2 -purpose sslserver
    -verify_hostname/-verify_ip`` on the same files reaches the same code."""
    case = CASES[name]
    code, errors, out = _openssl(case, tmp_path)
    assert code == _ours(case).code == case.code, (errors, out)


def test_openssl_stops_early_on_hostname_then_dates() -> None:
    """Documents the one known divergence: for an expired *and* misnamed leaf OpenSSL
    reports only the hostname error (62), tlswatch reports expired first (§3 precedence)
    and records the mismatch too."""
    case = CASES["expired_and_wrong_host"]
    assert _ours(case).code == "expired"
    assert openssl_code([62]) == "hostname_mismatch"


def test_openssl_mapping_table() -> None:
    """Every OpenSSL error the mapping names lands on a known code; unknown errors are
    'invalid'; the precedence applies across several errors."""
    assert set(OPENSSL_ERRORS.values()) <= set(PRECEDENCE)
    assert openssl_code([]) == "ok"
    assert openssl_code([24]) == "invalid"
    assert openssl_code([18, 10]) == "expired"
    assert openssl_code([20]) == "unable_to_get_issuer"


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("www.example.test", "WWW.Example.Test.", True),
        ("*.example.test", "a.example.test", True),
        ("*.example.test", "example.test", False),
        ("*.example.test", "a.b.example.test", False),
        ("*.test", "example.test", False),
        ("w*.example.test", "www.example.test", False),
        ("a.*.example.test", "a.b.example.test", False),
        ("", "example.test", False),
    ],
)
def test_dns_name_rules(pattern: str, host: str, expected: bool) -> None:
    """Wildcards only as the whole left-most label, one label deep, two labels after it."""
    assert dns_name_matches(pattern, host) is expected
