"""InspIRCd 3 on loopback: a plaintext client port with IRCv3 STARTTLS and a TLS port (ircs).

One inspircd process in the foreground (``--nofork``; ``--runasroot`` because the test
session may run as root) with a config in the session's temporary directory. TLS comes from
the ssl_gnutls module (Debian builds no ssl_openssl) with one ``sslprofile`` holding the test
leaf; the starttls module uses that profile and the cap module advertises it as the ``tls``
capability. Host-name and ident lookups are off so nothing leaves loopback.

- ``plain_port``: plaintext; ``CAP LS`` lists ``tls``, ``STARTTLS`` answers 670
- ``tls_port``: TLS from the first byte (ircs://)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary

SERVER_NAME = "irc.tlswatch.test"


@dataclass(frozen=True)
class InspircdServer:
    plain_port: int
    tls_port: int
    leaf: IssuedLeaf


@pytest.fixture(scope="session")
def inspircd(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InspircdServer]:
    binary = require_binary("/usr/sbin/inspircd")
    work = tmp_path_factory.mktemp("inspircd")
    leaf = pki.issue("inspircd")
    plain, tls = free_ports(2)
    cfg = work / "inspircd.conf"
    cfg.write_text(
        f"""
<server name="{SERVER_NAME}" description="tlswatch test" network="tlswatch">
<admin name="tlswatch" nick="tlswatch" email="tlswatch@tlswatch.test">
<module name="ssl_gnutls">
<module name="starttls">
<module name="cap">
<sslprofile name="tlswatch" provider="gnutls" certfile="{leaf.chain_file}"
            keyfile="{leaf.key_file}" dhfile="" hash="sha256" requestclientcert="no">
<starttls provider="tlswatch">
<bind address="127.0.0.1" port="{plain}" type="clients">
<bind address="127.0.0.1" port="{tls}" type="clients" sslprofile="tlswatch">
<connect allow="*" resolvehostnames="no" useident="no" timeout="60" pingfreq="120"
         recvq="8192" localmax="1000" globalmax="1000">
<pid file="{work}/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{work}/ircd.log">
"""
    )
    server = ServerProcess(
        "inspircd", [binary, "--config", str(cfg), "--nofork", "--runasroot"], work
    )
    try:
        server.wait_port(plain)
        server.wait_port(tls)
        yield InspircdServer(plain, tls, leaf)
    finally:
        server.stop()
