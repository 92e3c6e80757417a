"""The Rich console tables are printed on.

On a terminal Rich uses the terminal's width. Piped into a file, a pager or a mail, Rich
would fall back to 80 columns and fold every URL and finding into slivers; use a wide,
fixed width instead (``COLUMNS`` still wins when set).
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPED_WIDTH = 200


def stdout_console() -> Console:
    width = None
    if not sys.stdout.isatty() and not os.environ.get("COLUMNS"):
        width = PIPED_WIDTH
    return Console(highlight=False, width=width)
