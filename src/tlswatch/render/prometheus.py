"""Prometheus text exposition (format 0.0.4) with the ``/probe`` names of PRODUCT.md §6,
close to blackbox_exporter's so existing alert rules and dashboards work:

    probe_success                                   1 when the target's status is ok or
                                                    warning (a blackbox module verifying TLS
                                                    fails on an expired or untrusted chain too)
    probe_duration_seconds                          slowest endpoint, all phases
    probe_ssl_earliest_cert_expiry                  earliest notAfter of any certificate sent
    probe_ssl_last_chain_expiry_timestamp_seconds   per endpoint the earliest notAfter of its
                                                    chain; the latest of those
    probe_ssl_last_chain_info{fingerprint_sha256,subject,issuer,subjectalternative,serialnumber}
    probe_tls_version_info{version}
    tlswatch_target_status{status}, tlswatch_finding{code,severity}

Certificate metrics are present whatever the verdict (an expired or untrusted chain still
has an expiry). Every sample carries a ``target`` label so one exposition can hold several
targets; pass ``target_label=False`` for a single-target ``/probe`` page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tlswatch.model import Status, TargetResult

_HELP = {
    "probe_success": ("gauge", "Whether the probe succeeded: status ok or warning"),
    "probe_duration_seconds": (
        "gauge",
        "Duration of the slowest endpoint probe (dns+connect+upgrade+handshake)",
    ),
    "probe_ssl_earliest_cert_expiry": (
        "gauge",
        "Earliest notAfter of any certificate sent, unix time",
    ),
    "probe_ssl_last_chain_expiry_timestamp_seconds": (
        "gauge",
        "Earliest notAfter of the chain that expires last, unix time",
    ),
    "probe_ssl_last_chain_info": ("gauge", "Leaf certificate of the chain served"),
    "probe_tls_version_info": ("gauge", "Negotiated TLS version"),
    "tlswatch_target_status": ("gauge", "Target status (1 for the current one)"),
    "tlswatch_finding": ("gauge", "Findings of the target by code and severity"),
}


def escape(value: str) -> str:
    """A label value escaped for the text format: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(v: float) -> str:
    return repr(float(v)) if v != int(v) else str(int(v))


def render_prometheus(results: Sequence[TargetResult], target_label: bool = True) -> str:
    samples: dict[str, list[str]] = {name: [] for name in _HELP}

    def add(name: str, labels: list[tuple[str, str]], value: float, r: TargetResult) -> None:
        base = [("target", r.target)] if target_label else []
        samples[name].append(f"{name}{_labels(base + labels)} {_num(value)}")

    for r in results:
        add("probe_success", [], 1 if r.status in (Status.OK, Status.WARNING) else 0, r)
        durations = [
            sum(
                v
                for v in (e.timings.dns, e.timings.connect, e.timings.upgrade, e.timings.handshake)
                if v
            )
            for e in r.endpoints
        ]
        add("probe_duration_seconds", [], round(max(durations, default=0.0) / 1000.0, 6), r)
        expiries = [c.not_after for e in r.endpoints for c in e.chain if c.not_after is not None]
        if expiries:
            add("probe_ssl_earliest_cert_expiry", [], min(expiries).timestamp(), r)
        per_chain = [
            min(c.not_after for c in e.chain if c.not_after is not None)
            for e in r.endpoints
            if any(c.not_after is not None for c in e.chain)
        ]
        if per_chain:
            add("probe_ssl_last_chain_expiry_timestamp_seconds", [], max(per_chain).timestamp(), r)
        seen: set[str] = set()
        for e in r.endpoints:
            if e.chain and e.chain[0].sha256 not in seen and not e.chain[0].parse_error:
                leaf = e.chain[0]
                seen.add(leaf.sha256)
                sans = ",".join(
                    s.split(":", 1)[1] for s in leaf.san if s.startswith(("DNS:", "IP:"))
                )
                add(
                    "probe_ssl_last_chain_info",
                    [
                        ("fingerprint_sha256", leaf.sha256),
                        ("subject", leaf.subject),
                        ("issuer", leaf.issuer),
                        ("subjectalternative", sans),
                        ("serialnumber", leaf.serial),
                    ],
                    1,
                    r,
                )
        versions = sorted({e.tls.version for e in r.endpoints if e.tls})
        for v in versions:
            add("probe_tls_version_info", [("version", v)], 1, r)
        for s in Status:
            add("tlswatch_target_status", [("status", s.value)], 1 if r.status is s else 0, r)
        counts: dict[tuple[str, str], int] = {}
        for f in [*r.findings, *(f for e in r.endpoints for f in e.findings)]:
            key = (f.code, f.severity.value)
            counts[key] = counts.get(key, 0) + 1
        for (code, sev), n in sorted(counts.items()):
            add("tlswatch_finding", [("code", code), ("severity", sev)], n, r)

    lines: list[str] = []
    for name, (kind, text) in _HELP.items():
        if not samples[name]:
            continue
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(samples[name])
    return "\n".join(lines) + "\n"


__all__ = ["escape", "render_prometheus"]
