"""PostgreSQL SSLRequest against real PostgreSQL 15 clusters, and ``direct=1`` against a
TLS terminator offering ALPN postgresql (tests/servers/postgresql.py)."""

from __future__ import annotations

from tests.servers.postgresql import DirectTLSServer, PostgresServer
from tests.support.realchain import assert_exact_chain, probe_one
from tlswatch.errors import FailureClass
from tlswatch.probe import check_target
from tlswatch.targets import parse_target


async def test_postgres_sslrequest_yields_exact_chain(postgres_tls: PostgresServer) -> None:
    """postgres:// sends SSLRequest, gets 'S' and yields the cluster's exact chain."""
    assert postgres_tls.leaf is not None
    ep = await probe_one(f"postgres://127.0.0.1:{postgres_tls.port}")
    assert_exact_chain(ep, postgres_tls.leaf)
    assert ep.timings.upgrade is not None
    assert ep.tls is not None and ep.tls.alpn is None


async def test_postgresql_scheme_alias(postgres_tls: PostgresServer) -> None:
    """postgresql:// is the same protocol as postgres://."""
    assert postgres_tls.leaf is not None
    ep = await probe_one(f"postgresql://127.0.0.1:{postgres_tls.port}")
    assert_exact_chain(ep, postgres_tls.leaf)


async def test_postgres_ssl_off_refuses(postgres_no_tls: PostgresServer) -> None:
    """A cluster with ssl=off answers 'N': upgrade_refused saying TLS is off."""
    ep = await probe_one(f"postgres://127.0.0.1:{postgres_no_tls.port}?timeout=5")
    assert ep.error is not None
    assert ep.error.code is FailureClass.UPGRADE_REFUSED
    assert "ssl=off" in ep.error.message
    assert ep.chain == ()


async def test_postgres_direct_offers_alpn_postgresql(
    postgres_direct_tls: DirectTLSServer,
) -> None:
    """direct=1 starts TLS at once (no SSLRequest) offering ALPN postgresql; a server that
    selects it reports it, with the exact chain."""
    result = await check_target(
        parse_target(f"postgres://127.0.0.1:{postgres_direct_tls.port}?direct=1")
    )
    assert result.tls_mode == "implicit"
    (ep,) = result.endpoints
    assert_exact_chain(ep, postgres_direct_tls.leaf)
    assert ep.tls is not None and ep.tls.alpn == "postgresql"
    assert ep.timings.upgrade is None


async def test_sslrequest_at_a_direct_tls_port_is_classified(
    postgres_direct_tls: DirectTLSServer,
) -> None:
    """postgres:// without direct=1 at a TLS-first port ends classified (the TLS server
    rejects our 8 plaintext bytes), never an upgrade timeout, never a chain."""
    ep = await probe_one(f"postgres://127.0.0.1:{postgres_direct_tls.port}?timeout=5")
    assert ep.error is not None
    assert ep.error.code in (FailureClass.PROTOCOL_ERROR, FailureClass.CLOSED)
    assert ep.chain == ()
