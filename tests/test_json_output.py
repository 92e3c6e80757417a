"""`tlswatch check --format json` against the document of PRODUCT.md §4, field by field.

Three results in one run: a collected chain (haproxy), a failed probe (nothing listens)
and a name that does not resolve. The verdict fields (status, verification, findings) are
checked for shape and vocabulary only: their values belong to the analysis.
"""

from __future__ import annotations

import json
import re
from typing import Any

from typer.testing import CliRunner

import tlswatch.cli.check  # noqa: F401 - registers the commands on the app
from tests.servers.haproxy import HaproxyServer
from tests.support.processes import free_port
from tlswatch.cli import app
from tlswatch.errors import FailureClass
from tlswatch.model import Status

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
STATUSES = {"ok", "warning", "critical", "unknown"}
FAILURES = {c.value for c in FailureClass}
VERIFICATION_CODES = {
    "ok", "expired", "not_yet_valid", "unable_to_get_issuer", "self_signed",
    "self_signed_in_chain", "hostname_mismatch", "weak_key", "weak_signature", "invalid",
}  # fmt: skip
FINDING_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_findings(findings: Any) -> None:
    assert isinstance(findings, list)
    for f in findings:
        assert set(f) >= {"code", "severity", "message"}
        assert FINDING_CODE.match(f["code"]), f
        assert f["severity"] in STATUSES
        assert isinstance(f["message"], str) and f["message"]


def check_cert(cert: dict[str, Any], position: int) -> None:
    assert cert["position"] == position
    for key in ("subject", "issuer", "signature_algorithm"):
        assert isinstance(cert[key], str) and cert[key], key
    assert re.fullmatch(r"[0-9a-fA-F]+", cert["serial"])
    assert re.fullmatch(r"[0-9a-f]{64}", cert["sha256"])
    assert ISO_Z.match(cert["not_before"]) and ISO_Z.match(cert["not_after"])
    assert is_number(cert["days_left"])
    assert isinstance(cert["key"]["type"], str) and isinstance(cert["key"]["bits"], int)
    assert isinstance(cert["san"], list) and all(isinstance(s, str) for s in cert["san"])


def check_endpoint(ep: dict[str, Any]) -> None:
    assert isinstance(ep["address"], str) and isinstance(ep["port"], int)
    assert ep["status"] in STATUSES
    if ep["error"] is not None:
        assert set(ep["error"]) >= {"code", "message"}
        assert ep["error"]["code"] in FAILURES
        assert ep["error"]["message"]
    if ep["tls"] is not None:
        assert ep["tls"]["version"].startswith("TLSv")
        assert isinstance(ep["tls"]["cipher"], str) and ep["tls"]["cipher"]
        assert ep["tls"]["alpn"] is None or isinstance(ep["tls"]["alpn"], str)
    assert isinstance(ep["chain"], list)
    for i, cert in enumerate(ep["chain"]):
        check_cert(cert, i)
    if ep["verification"] is not None:
        v = ep["verification"]
        assert v["code"] in VERIFICATION_CODES
        assert isinstance(v["trusted"], bool) and isinstance(v["hostname_match"], bool)
    check_findings(ep["findings"])
    assert set(ep["timings_ms"]) == {"dns", "connect", "upgrade", "handshake"}
    assert all(t is None or is_number(t) for t in ep["timings_ms"].values())


def test_check_json_document(haproxy_tls: HaproxyServer) -> None:
    """Every field of PRODUCT.md §4 is present with its type: schema, checked_at in UTC
    with Z, each result's target/protocol/tls_mode/status/days_left/endpoints/findings, each
    endpoint's address/port/status/error/tls/chain/verification/findings/timings_ms, each
    certificate's facts, in the order the server sent them."""
    good = f"tls://127.0.0.1:{haproxy_tls.port}?timeout=5"
    refused = f"tls://127.0.0.1:{free_port()}?timeout=2"
    unresolvable = "tls://nothing.invalid:443"
    run = CliRunner().invoke(app, ["check", "--format", "json", good, refused, unresolvable])
    assert run.exception is None or isinstance(run.exception, SystemExit), run.output
    doc = json.loads(run.stdout)

    assert doc["schema"] == "tlswatch.check/1"
    assert ISO_Z.match(doc["checked_at"])
    results = doc["results"]
    assert [r["target"] for r in results] == [good, refused, unresolvable]
    for r in results:
        assert r["protocol"] == "tls" and r["tls_mode"] == "implicit"
        assert r["status"] in STATUSES
        assert r["days_left"] is None or is_number(r["days_left"])
        assert isinstance(r["endpoints"], list)
        for ep in r["endpoints"]:
            check_endpoint(ep)
        check_findings(r["findings"])

    collected, failed, no_dns = results
    (ep,) = collected["endpoints"]
    assert (ep["address"], ep["port"], ep["error"]) == ("127.0.0.1", haproxy_tls.port, None)
    assert [c["sha256"] for c in ep["chain"]] == haproxy_tls.leaf.chain_sha256
    assert any("localhost" in name for name in ep["chain"][0]["san"])
    assert ep["tls"] is not None and ep["verification"] is not None
    assert is_number(collected["days_left"])
    t = ep["timings_ms"]
    assert t["dns"] is None and t["upgrade"] is None  # an IP literal; implicit TLS
    assert is_number(t["connect"]) and is_number(t["handshake"])

    (ep,) = failed["endpoints"]
    assert ep["error"]["code"] == "connect_refused"
    assert ep["status"] == "unknown" and ep["chain"] == [] and ep["tls"] is None
    assert failed["status"] == "unknown" and failed["days_left"] is None

    assert no_dns["endpoints"] == [] and no_dns["status"] == "unknown"
    assert any(f["code"] == "DNS" for f in no_dns["findings"])
    assert run.exit_code == Status.worst([Status(r["status"]) for r in results]).exit_code
