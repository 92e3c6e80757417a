"""Session fixtures: the test PKI, and every real-server fixture module in tests/servers/.

Each module in tests/servers/ defines session-scoped fixtures for one server (started once
per test session on loopback high ports); they are loaded here as plugins so adding a server
is adding one module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.pki import TestPKI

# CI runs are derandomized: the same examples every run, so a landing never depends on luck.
# Locally, examples are random (and failures are kept in .hypothesis/ and replayed).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


pytest_plugins = sorted(
    f"tests.servers.{p.stem}"
    for p in (Path(__file__).parent / "servers").glob("*.py")
    if p.stem != "__init__"
)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))
