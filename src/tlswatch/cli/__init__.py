"""The command line: a thin shell over the library API (Typer + Rich)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

_app: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    # ``app`` is built on first use: a plain `tlswatch scan` never imports Typer
    # (tlswatch.cli.scanrun, docs/performance.md).
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        import typer

        _app = typer.Typer(
            name="tlswatch",
            help="Watch the TLS certificates of every service that speaks TLS.",
            no_args_is_help=True,
            add_completion=False,
            pretty_exceptions_enable=False,
        )
    return _app


#: commands whose module needs nothing else: `tlswatch check|scan` then skips importing the
#: other command modules (the daemon's pull in SQLAlchemy and pydantic: ~0.6 s and ~50 MB),
#: keeping start-up to first connection short (docs/performance.md)
_LIGHT_COMMANDS = frozenset({"check", "scan"})


def _register() -> None:
    # One import per command module; each adds its commands to ``app``.
    from tlswatch.cli import check  # noqa: F401

    if len(sys.argv) > 1 and sys.argv[1] in _LIGHT_COMMANDS:
        return
    from tlswatch.cli import daemon  # noqa: F401


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "scan":
        from tlswatch.cli.scanrun import parse_scan_args, run_standalone

        kwargs = parse_scan_args(sys.argv[2:])
        if kwargs is not None:  # a plain valid scan: no Typer (start-up, memory)
            run_standalone(kwargs)
    _register()
    try:
        __getattr__("app")()
    except KeyboardInterrupt:
        sys.exit(130)
