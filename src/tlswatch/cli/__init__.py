"""The command line: a thin shell over the library API (Typer + Rich)."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="tlswatch",
    help="Watch the TLS certificates of every service that speaks TLS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    _register()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
