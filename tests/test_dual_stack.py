"""Name resolution: every A and AAAA address is its own endpoint (PRODUCT.md §2).

A test DNS server (tests/support/dnsserver.py) answers ``dual.test`` with A 127.0.0.1 and
AAAA ::1; haproxy serves one port number on both addresses. The system resolver is tested
with ``localhost`` from /etc/hosts only (no query leaves the machine).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.haproxy import HaproxyServer
from tests.support.dnsserver import DNSServer, dns_server
from tlswatch.errors import FailureClass
from tlswatch.model import Status
from tlswatch.net.resolve import Address, Resolver
from tlswatch.probe import ProbeSettings, check_target
from tlswatch.targets import parse_target

TLSWATCH = str(Path(sys.executable).parent / "tlswatch")


@pytest.fixture(scope="module")
def dual_dns() -> Iterator[DNSServer]:
    with dns_server(
        {
            "dual.test": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
            "v6only.test": {"AAAA": ["::1"]},
        }
    ) as server:
        yield server


def test_cli_dual_stack_name_yields_two_endpoints(
    dual_dns: DNSServer, haproxy_tls: HaproxyServer
) -> None:
    """`tlswatch check --dns-server` on a name with A and AAAA records probes both
    addresses on the same port, each with its own result, chain and timings."""
    proc = subprocess.run(
        [
            TLSWATCH, "check", "--format", "json", "--dns-server", dual_dns.address,
            f"tls://dual.test:{haproxy_tls.dual_port}?timeout=5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode in (0, 1, 2), proc.stderr  # not 3: both endpoints were probed
    (result,) = json.loads(proc.stdout)["results"]
    endpoints = result["endpoints"]
    assert sorted(e["address"] for e in endpoints) == ["127.0.0.1", "::1"]
    for e in endpoints:
        assert e["port"] == haproxy_tls.dual_port
        assert e["error"] is None
        assert [c["sha256"] for c in e["chain"]] == haproxy_tls.leaf.chain_sha256
        assert e["timings_ms"]["dns"] is not None and e["timings_ms"]["handshake"] is not None
    assert dual_dns.questions[("dual.test", "A")] >= 1
    assert dual_dns.questions[("dual.test", "AAAA")] >= 1


async def test_endpoints_fail_separately(dual_dns: DNSServer, haproxy_tls: HaproxyServer) -> None:
    """When only the IPv4 address listens, the IPv6 endpoint fails on its own
    (connect_refused) while the IPv4 one yields its chain; the target takes the worst."""
    settings = ProbeSettings(Resolver(nameservers=[dual_dns.address]))
    result = await check_target(
        parse_target(f"tls://dual.test:{haproxy_tls.port}?timeout=5"), settings
    )
    by_address = {e.address: e for e in result.endpoints}
    assert set(by_address) == {"127.0.0.1", "::1"}
    assert by_address["127.0.0.1"].error is None
    assert by_address["127.0.0.1"].chain[0].sha256 == haproxy_tls.leaf.leaf_sha256
    v6_error = by_address["::1"].error
    assert v6_error is not None and v6_error.code is FailureClass.CONNECT_REFUSED
    assert by_address["::1"].status is Status.UNKNOWN
    assert result.status is Status.worst([e.status for e in result.endpoints])


@pytest.mark.parametrize(("family", "address"), [("4", "127.0.0.1"), ("6", "::1")])
async def test_family_option_selects_addresses(
    dual_dns: DNSServer, haproxy_tls: HaproxyServer, family: str, address: str
) -> None:
    """family=4 / family=6 probe only that family's address."""
    settings = ProbeSettings(Resolver(nameservers=[dual_dns.address]))
    url = f"tls://dual.test:{haproxy_tls.dual_port}?timeout=5&family={family}"
    result = await check_target(parse_target(url), settings)
    (ep,) = result.endpoints
    assert ep.address == address
    assert ep.error is None


async def test_family_without_addresses_is_dns_failure(dual_dns: DNSServer) -> None:
    """A name with only an AAAA record, asked for IPv4, is a dns failure naming the family."""
    settings = ProbeSettings(Resolver(nameservers=[dual_dns.address]))
    result = await check_target(parse_target("tls://v6only.test:443?family=4&timeout=2"), settings)
    assert result.endpoints == ()
    assert result.error is not None and result.error.code is FailureClass.DNS
    assert "no IPv4 address" in result.error.message


async def test_concurrent_lookups_of_one_name_ask_once(dual_dns: DNSServer) -> None:
    """Many probes of one name at once share one lookup (in flight, then cached): the DNS
    server sees one A and one AAAA question."""
    resolver = Resolver(nameservers=[dual_dns.address])
    before = dual_dns.questions[("dual.test", "A")]
    answers = await asyncio.gather(*(resolver.resolve("dual.test") for _ in range(20)))
    expected = [Address(socket.AF_INET, "127.0.0.1"), Address(socket.AF_INET6, "::1")]
    assert all(a == expected for a in answers)
    assert dual_dns.questions[("dual.test", "A")] == before + 1


async def test_system_resolver_uses_etc_hosts(haproxy_tls: HaproxyServer) -> None:
    """Without --dns-server the system resolver answers, as for the clients being
    monitored: localhost comes from /etc/hosts (RFC 6761 §6.3) and is probed."""
    addrs = await Resolver().resolve("localhost")
    assert isinstance(addrs, list)
    assert Address(socket.AF_INET, "127.0.0.1") in addrs
    result = await check_target(
        parse_target(f"tls://localhost:{haproxy_tls.port}?family=4&timeout=5")
    )
    (ep,) = result.endpoints
    assert ep.address == "127.0.0.1" and ep.error is None
    assert ep.chain[0].sha256 == haproxy_tls.leaf.leaf_sha256
