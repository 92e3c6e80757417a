"""INN 2.7's nnrpd on loopback: NNTP with STARTTLS, and NNTP over implicit TLS (nntps).

nnrpd runs standalone (``-D``: its own listener, ``-f``: in the foreground) with a private
inn.conf named by the ``INNCONF`` environment variable, so the system's INN configuration is
never used or touched. innd is not needed: ``readerswhenstopped`` lets nnrpd serve without
it. Started as root, nnrpd binds its port and then switches to the ``news`` user, so its
files live in a directory of ours under /tmp that ``news`` can read (pytest's temporary
directory is private to root), and the TLS key is private to ``news``: nnrpd refuses a key
others can read (it answers STARTTLS with ``580 Error initializing TLS``).

The reader configuration is the smallest nnrpd accepts: one group in the active file, a
tradindexed overview built by ``makehistory -O``, anonymous read access (readers.conf).

- ``starttls_port``: ``201`` greeting, CAPABILITIES lists STARTTLS, STARTTLS answers 382
- ``tls_port``: ``nnrpd -S``: TLS from the first byte (nntps://)
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.pki import IssuedLeaf, TestPKI
from tests.support.processes import ServerProcess, free_ports, require_binary

NNRPD = "/usr/lib/news/bin/nnrpd"
MAKEHISTORY = "/usr/lib/news/bin/makehistory"
PATHHOST = "news.tlswatch.test"


@dataclass(frozen=True)
class InnServer:
    starttls_port: int
    tls_port: int
    leaf: IssuedLeaf


def _inn_conf(work: Path, cert: Path, key: Path) -> str:
    paths = {
        "pathnews": "/usr/lib/news",
        "pathbin": "/usr/lib/news/bin",
        "pathcontrol": "/usr/lib/news/bin/control",
        "pathfilter": "/usr/lib/news/bin/filter",
        "pathetc": work / "etc",
        "pathdb": work / "db",
        "pathrun": work / "run",
        "pathlog": work / "log",
        "pathtmp": work / "tmp",
        "pathhttp": work / "tmp",
        "pathspool": work / "spool",
        "patharticles": work / "spool/articles",
        "pathoverview": work / "spool/overview",
        "pathincoming": work / "spool/incoming",
        "pathoutgoing": work / "spool/outgoing",
        "patharchive": work / "spool/archive",
    }
    settings = {
        "domain": "tlswatch.test",
        "pathhost": PATHHOST,
        "organization": '"tlswatch test"',
        "mta": '"/bin/false %s"',
        "readerswhenstopped": "true",
        "nnrpdloadlimit": "0",
        "ovmethod": "tradindexed",
        "hismethod": "hisv6",
        "tlscertfile": cert,
        "tlskeyfile": key,
        **paths,
    }
    return "".join(f"{k}: {v}\n" for k, v in settings.items())


@pytest.fixture(scope="session")
def inn(pki: TestPKI) -> Iterator[InnServer]:
    nnrpd = require_binary(NNRPD)
    makehistory = require_binary(MAKEHISTORY)
    news = pwd.getpwnam("news")
    work = Path(tempfile.mkdtemp(prefix="tlswatch-inn-"))
    servers: list[ServerProcess] = []
    try:
        work.chmod(0o755)
        for sub in ("etc", "db", "run", "log", "tmp", "spool/articles", "spool/overview"):
            (work / sub).mkdir(parents=True)
        leaf = pki.issue("inn")
        cert, key = work / "cert.pem", work / "key.pem"
        shutil.copyfile(leaf.chain_file, cert)
        shutil.copyfile(leaf.key_file, key)
        key.chmod(0o600)
        conf = work / "etc/inn.conf"
        conf.write_text(_inn_conf(work, cert, key))
        (work / "etc/storage.conf").write_text(
            "method tradspool {\n    newsgroups: *\n    class: 0\n}\n"
        )
        (work / "etc/readers.conf").write_text(
            'auth "all" {\n    hosts: "*"\n    default: "<all>"\n}\n'
            'access "all" {\n    users: "*"\n    newsgroups: "*"\n    access: "R"\n}\n'
        )
        (work / "db/active").write_text("local.test 0000000000 0000000001 y\n")
        (work / "db/active.times").write_text("")
        (work / "db/newsgroups").write_text("")
        for path in [work, *work.rglob("*")]:
            os.chown(path, news.pw_uid, news.pw_gid)
        env = {**os.environ, "INNCONF": str(conf)}
        # An empty tradindexed overview: nnrpd opens it read-only and refuses to serve
        # ("400 NNTP server unavailable") when it does not exist.
        subprocess.run(
            ["runuser", "-u", "news", "--", makehistory, "-O", "-x"],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        starttls_port, tls_port = free_ports(2)
        for name, port, extra in (("nnrpd", starttls_port, []), ("nnrpd-tls", tls_port, ["-S"])):
            argv = [nnrpd, "-D", "-f", "-p", str(port), "-b", "127.0.0.1", *extra]
            servers.append(ServerProcess(name, argv, work / "log", env={"INNCONF": str(conf)}))
        servers[0].wait_port(starttls_port)
        servers[1].wait_port(tls_port)
        yield InnServer(starttls_port, tls_port, leaf)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
