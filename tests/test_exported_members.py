"""The public API is curated (STYLE.md rule 8): ``tlswatch.__all__`` is pinned here, every
name in it resolves to the object of its home module, and ``import tlswatch`` stays cheap
(no asyncio, cryptography, rich or typer until a name that needs them is used)."""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys

import pytest

import tlswatch

EXPECTED = {
    "__version__",
    # targets
    "parse_target", "Target",
    # probing
    "check_target", "check_targets", "scan", "observe_target", "ProbeSettings",
    "Resolver", "Address",
    # the result model
    "Status", "Observation", "TLSInfo", "Timings", "KeyInfo", "CertInfo", "Verification",
    "Finding", "EndpointResult", "TargetResult",
    # failures and errors
    "Failure", "FailureClass", "TlswatchError", "TargetError", "ConfigError", "ProbeError",
}  # fmt: skip


def test_all_is_pinned() -> None:
    """Adding or removing a public name is a deliberate change to this list."""
    assert set(tlswatch.__all__) == EXPECTED
    assert len(tlswatch.__all__) == len(EXPECTED)  # no duplicates


@pytest.mark.parametrize("name", sorted(EXPECTED - {"__version__"}))
def test_member_is_the_home_object(name: str) -> None:
    """Each public name is the very object its home module defines (not a copy), and its
    home is a tlswatch module."""
    member = getattr(tlswatch, name)
    home = importlib.import_module(member.__module__)
    assert member.__module__.startswith("tlswatch.")
    assert getattr(home, name) is member
    assert inspect.isclass(member) or inspect.isfunction(member)


def test_unknown_attribute_raises() -> None:
    """A name that is not public is an AttributeError, as for any module."""
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tlswatch.nope  # type: ignore[attr-defined]


def test_dir_lists_the_public_names() -> None:
    """dir(tlswatch) shows the lazy names too (for completion and introspection)."""
    assert set(dir(tlswatch)) >= EXPECTED


def test_version_matches_the_distribution() -> None:
    """__version__ is the installed distribution's version."""
    assert tlswatch.__version__ == importlib.metadata.version("tlswatch")


def test_import_is_cheap() -> None:
    """A fresh ``import tlswatch`` loads none of the heavy dependencies, and using the probe
    API loads no rich or typer (cryptography it does: the TLS engine runs on the OpenSSL
    that cryptography ships, tlswatch/tls/context.py)."""
    heavy = ("asyncio", "cryptography", "rich", "typer", "dns", "ssl")
    code = (
        "import sys, tlswatch\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
        "from tlswatch import check_target, parse_target, scan\n"
        "print(sorted(m for m in ('OpenSSL', 'rich', 'typer') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == ["[]", "['OpenSSL']"]


def test_judging_loads_no_fetching_machinery() -> None:
    """The judging modules leave urllib.request (with http.client) and the PKCS#7 loaders
    (with email's MIME classes) until something is fetched: most scans never fetch, and
    every scan process would otherwise carry ≈ 4 MB more RSS (issue 6 memory goal)."""
    lazy = ("urllib.request", "http.client", "cryptography.hazmat.primitives.serialization.pkcs7")
    code = (
        "import sys\n"
        "import tlswatch.analysis.evaluate, tlswatch.net.evidence, tlswatch.probe\n"
        f"print(sorted(m for m in {lazy!r} if m in sys.modules))\n"
        "from tlswatch.x509.aia import parse_issuer_response\n"
        "try:\n"
        "    parse_issuer_response(b'not a certificate')\n"
        "except ValueError:\n"
        "    pass\n"
        "print('cryptography.hazmat.primitives.serialization.pkcs7' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == ["[]", "True"]
