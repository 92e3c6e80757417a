"""Sans-IO (STYLE.md): the protocol negotiators, the TLS engine and framers, and the X.509
analysis never do I/O themselves. No module under protocols/, tls/, x509/ or analysis/
imports socket, asyncio (or their relatives selectors, socketserver, http.client,
urllib.request), nor tlswatch's own I/O layer (tlswatch.net, tlswatch.probe), in any form:
``import x``, ``import x.y``, ``from x import y``, ``from x.y import z``, relative imports,
or a string handed to ``importlib.import_module`` / ``__import__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "tlswatch"
SANS_IO_PACKAGES = ("protocols", "tls", "x509", "analysis")
FORBIDDEN = frozenset(
    {
        "socket", "asyncio", "selectors", "socketserver", "http.client", "urllib.request",
        "tlswatch.net", "tlswatch.probe",
    }
)  # fmt: skip
DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})


def _forbidden(module: str | None) -> bool:
    if not module:
        return False
    parts = module.split(".")
    return any(".".join(parts[:i]) in FORBIDDEN for i in range(1, len(parts) + 1))


def _absolute(node: ast.ImportFrom, package: str) -> str | None:
    """The absolute module of a ``from`` import (relative ones resolved in ``package``)."""
    if node.level == 0:
        return node.module
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def io_imports(
    source: str, filename: str = "<test>", package: str = "tlswatch.tls"
) -> list[tuple[int, str]]:
    """(line, module) of every forbidden import in ``source`` (a module of ``package``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            names = [f"{module}.{a.name}" for a in node.names]
            if _forbidden(module) or any(_forbidden(n) for n in names):
                found.append((node.lineno, str(module)))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in DYNAMIC_IMPORTERS and node.args:
                arg = node.args[0]
                if (
                    isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and _forbidden(arg.value)
                ):
                    found.append((node.lineno, arg.value))
    return found


def sans_io_modules() -> list[Path]:
    return sorted(p for pkg in SANS_IO_PACKAGES for p in (PACKAGE / pkg).rglob("*.py"))


def test_the_packages_exist() -> None:
    """The check looks where the code is (an empty glob would pass vacuously)."""
    modules = sans_io_modules()
    for pkg in SANS_IO_PACKAGES:
        assert any(p.parent.name == pkg or pkg in p.parts for p in modules), pkg
    assert any(p.name == "engine.py" for p in modules)


@pytest.mark.parametrize("path", sans_io_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_does_no_io(path: Path) -> None:
    """This sans-IO module imports no socket/asyncio in any form."""
    package = ".".join(("tlswatch", *path.parent.relative_to(PACKAGE).parts))
    assert io_imports(path.read_text(encoding="utf-8"), str(path), package) == []


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import os, asyncio.streams",
        "from asyncio import StreamReader",
        "from socket import AF_INET as X",
        "def f():\n    import selectors",
        "import importlib\nimportlib.import_module('asyncio')",
        "from importlib import import_module\nimport_module('socket')",
        "__import__('socketserver')",
        "from tlswatch.net.driver import probe_endpoint",
        "from tlswatch import net",
        "from ..net import resolve",
        "from .. import probe",
        "import urllib.request",
    ],
)
def test_detector_catches_every_form(source: str) -> None:
    """The detector itself sees each way of importing I/O (so a pass above means something)."""
    assert io_imports(source)


@pytest.mark.parametrize(
    "source",
    [
        "import ssl",
        "from tlswatch import errors",
        "from . import framing",
        "x = 'socket'",
        "import urllib.parse",
        "from .chain import unverified_chain_der",
    ],
)
def test_detector_allows_the_rest(source: str) -> None:
    """ssl (memory BIOs), pure modules and mere strings are not I/O imports."""
    assert io_imports(source) == []
