"""Sanitising untrusted text (certificate fields, server banners) for a terminal."""

from __future__ import annotations

import re

# C0/C1 control characters (ESC starts every terminal escape sequence) and the bidi
# overrides that can reorder what a terminal shows.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str | None) -> str:
    """Text safe to print on a terminal: control and escape characters removed."""
    if not text:
        return ""
    return _CONTROL.sub("", text)
