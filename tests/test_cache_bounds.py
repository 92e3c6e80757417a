"""The per-certificate caches stay bounded together, and the speed-ups of issue 6 phase 3
give the same answers as the generic code they replace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from tlswatch.render.jsonfmt import iso
from tlswatch.x509 import certinfo, strength, verify


def test_certificate_keyed_caches_fit_inside_the_parse_cache() -> None:
    """A cache keyed by certificate objects keeps its keys alive; if it outlives
    certinfo.load's entry for the same DER, a long scan holds a second parsed copy of each
    leaf and memory grows with the number of targets. So those caches are at most half
    of load's."""
    parsed = certinfo.load.cache_info().maxsize
    assert parsed is not None
    for cached in (verify._self_signature_ok, strength.weak_key):
        size = cached.cache_info().maxsize
        assert size is not None and size * 2 <= parsed, cached.__name__


def test_describe_relies_on_the_current_certinfo_field_order() -> None:
    """describe() copies cached facts positionally; that is only taken while CertInfo's
    fields are the ones it spells out (otherwise dataclasses.replace is used)."""
    assert certinfo._FIELDS_AS_EXPECTED


def test_iso_renders_utc_and_other_zones_alike() -> None:
    """The cached UTC path and the generic path render the same instant identically, for
    a UTC datetime, the same instant in another zone, and repeated calls."""
    moment = datetime(2027, 3, 4, 22, 17, 41, 987654, tzinfo=UTC)
    shifted = moment.astimezone(timezone(timedelta(hours=-5, minutes=-30)))
    assert iso(moment) == "2027-03-04T22:17:41Z"
    assert iso(moment) == iso(shifted) == "2027-03-04T22:17:41Z"
    assert iso(None) is None
