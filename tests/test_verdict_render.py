"""Renderers treat certificate fields as untrusted: Prometheus label escaping, Nagios
perfdata quoting, CSV formula neutralising and terminal control-character stripping —
on a certificate whose subject is built to break each of them."""

from __future__ import annotations

import csv
import io
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from rich.console import Console

from tests.support.verdict_pki import DAY, NOW, make
from tlswatch.analysis.evaluate import evaluate_target
from tlswatch.analysis.policy import Policy
from tlswatch.model import Observation, Status, TLSInfo
from tlswatch.render.csv import _safe, render_csv
from tlswatch.render.nagios import render_nagios
from tlswatch.render.prometheus import escape, render_prometheus
from tlswatch.render.table import render_table
from tlswatch.targets import parse_target
from tlswatch.x509.trust import Anchors

EVIL = '=cmd|"x"\\ \x1b[31mred\nline2 \u202e'


def _evil_leaf() -> bytes:
    ca = make("Render CA", ca=True)
    base = make("www.example.test", ca)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, EVIL)]))
        .issuer_name(ca.cert.subject)
        .public_key(base.key.public_key())
        .serial_number(7)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("www.example.test")]), critical=False
        )
        .not_valid_before(NOW - 80 * DAY)
        .not_valid_after(NOW + 10 * DAY)
        .sign(ca.key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def _result(warn: str | None = None):
    target = parse_target("tls://www.example.test:443" + (f"?warn={warn}" if warn else ""))
    obs = Observation("192.0.2.1", 443, (_evil_leaf(),), TLSInfo("TLSv1.2", "X"))
    return evaluate_target(
        target, [obs], NOW, policy=Policy("www.example.test", Anchors.of([], judged=False))
    )


def test_prometheus_escapes_label_values() -> None:
    """Backslash, quote and newline in a subject are escaped; every sample stays on one
    line and parses as name{labels} value."""
    text = render_prometheus([_result()])
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    for line in text.splitlines():
        if not line.startswith("#"):
            assert line.rsplit(" ", 1)[1].replace(".", "", 1).isdigit(), line
    info = next(line for line in text.splitlines() if line.startswith("probe_ssl_last_chain_info"))
    m = re.search(r'subject="((?:[^"\\]|\\.)*)"', info)
    assert m is not None
    unescaped = re.sub(r"\\(.)", lambda g: "\n" if g.group(1) == "n" else g.group(1), m.group(1))
    assert unescaped == _result().endpoints[0].chain[0].subject


def test_nagios_perfdata_and_status_line() -> None:
    """One status line without '|' from certificate text, perfdata with the thresholds of
    the URL (warn=20 → 20 days), a leaf 10 days from expiry is WARNING."""
    out = render_nagios([_result(warn="20")])
    first = out.splitlines()[0]
    status, _, perf = first.partition(" | ")
    assert status.startswith("TLSWATCH WARNING - ") and "|" not in status
    assert perf == "'days_left'=10.0;20;7;;"
    assert "\x1b" not in out


def test_csv_neutralises_formulas() -> None:
    """A subject starting with '=' is prefixed with an apostrophe; control characters go."""
    rows = list(csv.DictReader(io.StringIO(render_csv([_result()]))))
    (row,) = rows
    assert _safe("=1+1") == "'=1+1" and _safe("-2") == "'-2" and _safe("CN=a") == "CN=a"
    assert all(not v.startswith(("=", "+", "@")) for v in row.values())
    assert "\x1b" not in row["subject"] and "\n" not in row["subject"]
    assert row["status"] == Status.WARNING.value


def test_table_strips_control_characters() -> None:
    """The terminal table (and -v detail) never carries ESC, newlines from certificate
    fields or bidi overrides."""
    buf = io.StringIO()
    render_table([_result()], Console(file=buf, width=300, color_system=None), verbose=True)
    out = buf.getvalue()
    assert "\x1b" not in out and "\u202e" not in out
    assert "line2" in out
