"""haproxy serving one broken chain per frontend, for the end-to-end verdict tests:
good, expired (dates in the past), wrong host, self-signed, leaf only, and leaf only with
an AIA caIssuers URL that a loopback HTTP server answers with the missing intermediate.

Certificates come from tests/support/verdict_pki.py at the real current time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.httpfiles import Route, serve
from tests.support.processes import ServerProcess, free_ports, require_binary
from tests.support.verdict_pki import DAY, Issued, make

CHAINS = ("good", "expired", "wronghost", "selfsigned", "leafonly", "leafonly_aia")


@dataclass(frozen=True)
class VerdictServers:
    ports: dict[str, int]
    root_file: Path
    aia_hits: list[str]


@pytest.fixture(scope="session")
def verdict_haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerdictServers]:
    binary = require_binary("/usr/sbin/haproxy")
    work = tmp_path_factory.mktemp("verdict-haproxy")
    now = dt.datetime.now(dt.UTC)
    root = make("E2E Verdict Root", ca=True, now=now)
    inter = make("E2E Verdict Intermediate", root, ca=True, now=now)
    ids = {"dns": ("localhost",), "ips": ("127.0.0.1", "::1")}
    with serve({"/inter.der": Route(inter.der, "application/pkix-cert")}) as aia:
        chains: dict[str, list[Issued]] = {
            "good": [make("localhost", inter, now=now, **ids), inter],
            "expired": [
                make(
                    "localhost",
                    inter,
                    now=now,
                    start=now - 120 * DAY,
                    end=now - 20 * DAY,
                    slot=1,
                    **ids,
                ),
                inter,
            ],
            "wronghost": [
                make("other.example.test", inter, now=now, dns=("other.example.test",), ips=()),
                inter,
            ],
            "selfsigned": [make("localhost", None, now=now, slot=2, **ids)],
            "leafonly": [make("localhost", inter, now=now, slot=3, **ids)],
            "leafonly_aia": [
                make(
                    "localhost", inter, now=now, slot=4, ca_issuers=(aia.url("/inter.der"),), **ids
                )
            ],
        }
        root_file = work / "root.pem"
        root_file.write_bytes(root.pem)
        ports = dict(zip(CHAINS, free_ports(len(CHAINS)), strict=True))
        frontends = []
        for name, chain in chains.items():
            crt = work / f"{name}.pem"
            crt.write_bytes(b"".join(c.pem for c in chain) + chain[0].key_pem)
            frontends.append(
                f"frontend {name}\n    bind 127.0.0.1:{ports[name]} ssl crt {crt}\n    tcp-request content reject\n"
            )
        cfg = work / "haproxy.cfg"
        cfg.write_text(
            "global\n    maxconn 200\ndefaults\n    mode tcp\n    timeout connect 5s\n"
            "    timeout client 10s\n    timeout server 10s\n" + "".join(frontends)
        )
        server = ServerProcess("haproxy-verdict", [binary, "-db", "-f", str(cfg)], work)
        try:
            for port in ports.values():
                server.wait_port(port)
            yield VerdictServers(ports, root_file, aia.hits)
        finally:
            server.stop()
