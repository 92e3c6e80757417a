"""The policy a chain is judged under: trust anchors, the name to verify, expiry thresholds
and whether revocation is checked. Built from a target's URL options (PRODUCT.md §1), which
CLI flags have already overridden.

Thresholds (``warn=`` / ``crit=``) are days (``30``, ``30d``) or a share of the
certificate's lifetime (``33%``: warn when less than a third of its lifetime is left).
Defaults: 30 and 7 days; for short-lived certificates (lifetime of 47 days or less, the
CA/Browser Forum's 2029 maximum) 33 % and 10 % — the point where ACME clients renew (2/3 of
the lifetime) and a last tenth. Each threshold falls back to its default independently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tlswatch.targets import Target
from tlswatch.x509.trust import Anchors, load_anchors

SHORT_LIVED_DAYS = 47.0
_THRESHOLD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([d%]?)\s*$")


@dataclass(frozen=True, slots=True)
class Threshold:
    value: float
    percent: bool = False

    @classmethod
    def parse(cls, text: str) -> Threshold:
        m = _THRESHOLD.match(text)
        if not m:
            raise ValueError(
                f"threshold must be days (30, 30d) or a percentage (33%), not {text!r}"
            )
        value = float(m.group(1))
        percent = m.group(2) == "%"
        if percent and value > 100:
            raise ValueError(f"a percentage threshold must be at most 100%, not {text!r}")
        return cls(value, percent)

    def days(self, lifetime_days: float) -> float:
        """The threshold as days left, for a certificate of ``lifetime_days``."""
        return lifetime_days * self.value / 100.0 if self.percent else self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{self.value:g} days"


DEFAULT_WARN = Threshold(30.0)
DEFAULT_CRIT = Threshold(7.0)
SHORT_LIVED_WARN = Threshold(33.0, percent=True)
SHORT_LIVED_CRIT = Threshold(10.0, percent=True)


@dataclass(frozen=True)
class Policy:
    """Everything besides the observation and the clock that a verdict depends on."""

    name: str
    anchors: Anchors
    warn: Threshold | None = None  # None: the default for the certificate's lifetime
    crit: Threshold | None = None
    revocation: bool = False

    def thresholds(self, lifetime_days: float) -> tuple[Threshold, Threshold]:
        return effective_thresholds(self.warn, self.crit, lifetime_days)


def effective_thresholds(
    warn: Threshold | None, crit: Threshold | None, lifetime_days: float
) -> tuple[Threshold, Threshold]:
    """The warn and crit thresholds for a certificate of ``lifetime_days``: the ones given,
    else the defaults for its lifetime class."""
    short = lifetime_days <= SHORT_LIVED_DAYS
    return (
        warn or (SHORT_LIVED_WARN if short else DEFAULT_WARN),
        crit or (SHORT_LIVED_CRIT if short else DEFAULT_CRIT),
    )


def target_thresholds(url: str) -> tuple[Threshold | None, Threshold | None]:
    """``warn=``/``crit=`` of a target URL (as renderers see it: CLI flags already merged)."""
    from urllib.parse import parse_qsl, urlsplit

    try:
        opts = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    except ValueError:
        return None, None
    return _threshold(opts.get("warn")), _threshold(opts.get("crit"))


def policy_for(target: Target, anchors: Anchors | None = None) -> Policy:
    """The policy of ``target``'s options. Anchors are loaded (once per process) unless
    given. A threshold that does not parse falls back to the default (targets.py has
    already rejected malformed ones)."""
    opts = target.options
    if anchors is None:
        anchors = load_anchors(opts.get("trust", "system") or "system", opts.get("ca") or None)
    return Policy(
        name=target.verify_name,
        anchors=anchors,
        warn=_threshold(opts.get("warn")),
        crit=_threshold(opts.get("crit")),
        revocation=opts.get("revocation", "") == "ocsp",
    )


def _threshold(text: str | None) -> Threshold | None:
    if not text:
        return None
    try:
        return Threshold.parse(text)
    except ValueError:
        return None


__all__ = [
    "DEFAULT_CRIT",
    "DEFAULT_WARN",
    "SHORT_LIVED_CRIT",
    "SHORT_LIVED_DAYS",
    "SHORT_LIVED_WARN",
    "Policy",
    "Threshold",
    "effective_thresholds",
    "policy_for",
    "target_thresholds",
]
