"""The shared-path cache of tlswatch.x509.verify (``_validate_shared``) changes speed, never
verdicts: every chain gets the verdict the uncached validation gives, with the cache cold,
warm from the same chain, and warm from *another* leaf under the same intermediate (the
scan case), including every failure; and a warm cache really skips the full validation
where it may."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.verdict_pki import DAY, NOW, Issued, corrupt_signature, key, make
from tests.test_verdict_verify import CASES, _der
from tlswatch.x509 import strength, verify
from tlswatch.x509.trust import Anchors
from tlswatch.x509.verify import ChainVerdict, verify_chain


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    verify.clear_tail_cache()
    yield
    verify.clear_tail_cache()
    verify.TAIL_CACHE = True


def _uncached(chain: list[bytes], anchors: Anchors, host: str, at: dt.datetime) -> ChainVerdict:
    verify.TAIL_CACHE = False
    try:
        return verify_chain(chain, anchors, host, at)
    finally:
        verify.TAIL_CACHE = True


class _Counter:
    """Counts full validations (the cache's fallback) while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = verify.validate

        def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(verify, "validate", counting)


@pytest.mark.parametrize("name", sorted(CASES))
def test_cold_and_warm_cache_give_the_uncached_verdict(name: str) -> None:
    """Each verdict-table chain: the same verdict uncached, with the cache cold and warm."""
    case = CASES[name]
    chain = [_der(c) for c in case.sent]
    anchors = Anchors.of(case.anchors)
    expected = _uncached(chain, anchors, case.host, NOW)
    assert verify_chain(chain, anchors, case.host, NOW) == expected
    assert verify_chain(chain, anchors, case.host, NOW) == expected


ROOT = make("Cache Root CA", ca=True)
INTER = make("Cache Intermediate CA", ROOT, ca=True)
GOOD = make("www.example.test", INTER, slot=101)
HOST = "www.example.test"


def _leaves() -> dict[str, x509.Certificate]:
    """Leaves under INTER (or claiming to be), each with one leaf-specific property."""
    impostor_ca = make("Cache Intermediate CA", ROOT, ca=True, slot=102)  # same name, other key
    return {
        "good_sibling": make("www.example.test", INTER, slot=103).cert,
        "expired": make("www.example.test", INTER, start=NOW - 99 * DAY, end=NOW - DAY).cert,
        "not_yet_valid": make("www.example.test", INTER, start=NOW + DAY, end=NOW + 9 * DAY).cert,
        "client_only_eku": make(
            "www.example.test", INTER, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), slot=104
        ).cert,
        "bad_signature": corrupt_signature(make("www.example.test", INTER, slot=105).cert),
        "other_name": make("mail.example.test", INTER, dns=("mail.example.test",), slot=106).cert,
        "weak_key": make("www.example.test", INTER, kind="rsa1024").cert,
        "signed_by_same_name_other_key": make("www.example.test", impostor_ca, slot=107).cert,
        "no_san": make("www.example.test", INTER, san=False, slot=108).cert,
        "ca_in_leaf_position": make("www.example.test", INTER, ca=True, slot=109).cert,
        "no_basic_constraints": make(
            "www.example.test", INTER, basic_constraints=False, slot=110
        ).cert,
    }


LEAVES = _leaves()


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_a_leaf_after_a_sibling_warmed_the_cache(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan case: a good leaf under INTER warms the cache, then another leaf sent with
    the same intermediate gets exactly its uncached verdict, failures included."""
    anchors = Anchors.of([ROOT.cert])
    leaf_chain = [_der(LEAVES[name]), INTER.der]
    expected = _uncached(leaf_chain, anchors, HOST, NOW)
    warm = verify_chain([GOOD.der, INTER.der], anchors, HOST, NOW)
    assert warm.code == "ok"
    assert verify_chain(leaf_chain, anchors, HOST, NOW) == expected


def test_a_warm_cache_skips_the_full_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Siblings under a cached intermediate are judged without a full path validation (the
    point of the cache), and a leaf the short check refuses falls back to it."""
    anchors = Anchors.of([ROOT.cert])
    verify_chain([GOOD.der, INTER.der], anchors, HOST, NOW)
    counter = _Counter(monkeypatch)
    v = verify_chain([_der(LEAVES["good_sibling"]), INTER.der], anchors, HOST, NOW)
    assert v.code == "ok" and [pc.position for pc in v.path] == [0, 1, None]
    assert counter.calls == 0
    verify_chain([_der(LEAVES["bad_signature"]), INTER.der], anchors, HOST, NOW)
    assert counter.calls == 1


def test_a_cached_path_is_not_reused_across_a_validity_boundary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cached while the intermediate is valid; checked after it expired, the chain gets the
    full validation and the uncached verdict (expired), not the cached path."""
    short_inter = make("Short Intermediate CA", ROOT, ca=True, start=NOW - DAY, end=NOW + DAY)
    leaf = make("www.example.test", short_inter, slot=111, start=NOW - DAY, end=NOW + 90 * DAY)
    sibling = make("www.example.test", short_inter, slot=112, start=NOW - DAY, end=NOW + 90 * DAY)
    anchors = Anchors.of([ROOT.cert])
    assert verify_chain([leaf.der, short_inter.der], anchors, HOST, NOW).code == "ok"
    later = NOW + 2 * DAY
    chain = [sibling.der, short_inter.der]
    expected = _uncached(chain, anchors, HOST, later)
    counter = _Counter(monkeypatch)
    got = verify_chain(chain, anchors, HOST, later)
    assert got == expected and got.code == "expired"
    assert counter.calls >= 1
    # within the same validity state the cached path is reused
    verify_chain([leaf.der, short_inter.der], anchors, HOST, NOW)  # re-cache at NOW
    counter.calls = 0
    assert verify_chain(chain, anchors, HOST, NOW + dt.timedelta(hours=1)).code == "ok"
    assert counter.calls == 0


def _constrained_root() -> Issued:
    """A root whose nameConstraints permit only example.test."""
    k = key("ec", 120)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Constrained Root")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 365 * DAY)
        .not_valid_after(NOW + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
        .add_extension(x509.NameConstraints([x509.DNSName("example.test")], None), critical=True)
        .sign(k, hashes.SHA256())
    )
    return Issued(cert, k)


def test_name_constraints_above_the_issuer_are_applied_to_every_leaf() -> None:
    """A root's nameConstraints depend on each leaf's names: a leaf outside them is refused
    after a permitted sibling validated, exactly as without the cache."""
    root = _constrained_root()
    inter = make("Constrained Intermediate CA", root, ca=True)
    inside = make("www.example.test", inter, slot=121)
    outside = make("www.other.test", inter, dns=("www.other.test",), ips=(), slot=122)
    anchors = Anchors.of([root.cert])
    assert verify_chain([inside.der, inter.der], anchors, HOST, NOW).code == "ok"
    chain = [outside.der, inter.der]
    expected = _uncached(chain, anchors, "www.other.test", NOW)
    assert expected.code == "invalid"
    assert verify_chain(chain, anchors, "www.other.test", NOW) == expected


def test_another_anchor_set_or_intermediate_list_is_another_entry() -> None:
    """The cache is keyed by anchor set and sent intermediates: a chain judged against
    anchors that do not hold the root is not helped by a path cached against ones that do."""
    trusting = Anchors.of([ROOT.cert])
    other = Anchors.of([make("Unrelated Cache Root", ca=True).cert])
    assert verify_chain([GOOD.der, INTER.der], trusting, HOST, NOW).code == "ok"
    chain = [_der(LEAVES["good_sibling"]), INTER.der]
    assert verify_chain(chain, other, HOST, NOW) == _uncached(chain, other, HOST, NOW)
    with_root = [*chain, ROOT.der]
    assert verify_chain(with_root, trusting, HOST, NOW) == _uncached(with_root, trusting, HOST, NOW)


def test_a_cached_path_carries_the_checks_of_its_certificates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A path taken from the cache brings the checks of the certificates above the leaf
    with it (computed once, not per endpoint); they are exactly what the certificates
    themselves give, and the leaf's are computed as usual."""
    anchors = Anchors.of([ROOT.cert])
    verify_chain([GOOD.der, INTER.der], anchors, HOST, NOW)
    counter = _Counter(monkeypatch)
    v = verify_chain([_der(LEAVES["good_sibling"]), INTER.der], anchors, HOST, NOW)
    assert counter.calls == 0 and len(v.path) == 3
    assert v.path[0].known is None and all(pc.known is not None for pc in v.path[1:])
    for pc in v.path:
        assert (pc.not_before, pc.not_after) == (
            pc.cert.not_valid_before_utc,
            pc.cert.not_valid_after_utc,
        )
        assert pc.weak_key == strength.weak_key(pc.cert)
        assert pc.weak_signature == strength.weak_signature(pc.cert)
        assert pc.self_signed == verify.self_signed(pc.cert)
    root_pc = v.path[2]
    assert root_pc.source == "store" and root_pc.self_signed
    assert root_pc.sha256 == hashlib.sha256(ROOT.der).hexdigest()


def test_a_certificate_sent_twice_is_named_by_its_last_position() -> None:
    """Path certificates are matched to the chain as sent by content: a certificate sent
    twice is the later copy (as a lookup table built from the chain gives), cached or
    not."""
    anchors = Anchors.of([ROOT.cert])
    chain = [GOOD.der, INTER.der, INTER.der]
    expected = _uncached(chain, anchors, HOST, NOW)
    assert [(pc.position, pc.source) for pc in expected.path] == [
        (0, "sent"),
        (2, "sent"),
        (None, "store"),
    ]
    assert verify_chain(chain, anchors, HOST, NOW) == expected
    assert verify_chain(chain, anchors, HOST, NOW) == expected
