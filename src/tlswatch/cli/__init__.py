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


def _register() -> None:
    # One import per command module; each adds its commands to ``app``.
    from tlswatch.cli import check  # noqa: F401, PLC0415


def main() -> None:
    _register()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
