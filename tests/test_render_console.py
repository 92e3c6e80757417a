"""The console tables are printed on: wide when piped, the terminal's width otherwise."""

from __future__ import annotations

import pytest

from tlswatch.render.console import PIPED_WIDTH, stdout_console


def test_piped_output_is_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped (pytest captures stdout) and no COLUMNS: rows are not folded at 80 columns."""
    monkeypatch.delenv("COLUMNS", raising=False)
    assert stdout_console().width == PIPED_WIDTH


def test_columns_wins_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """COLUMNS set by the user keeps its meaning."""
    monkeypatch.setenv("COLUMNS", "97")
    assert stdout_console().width == 97
