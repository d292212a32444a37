"""desim.console: piped output gets wide tables, a terminal's its own width."""

from __future__ import annotations

import io

from rich.table import Table

from desim import console as console_module


def test_piped_output_shows_a_wide_tables_numbers_whole(monkeypatch):
    """At rich's piped default of 80 columns a run's table with large numbers showed them
    cut short ("18679.4…"); piped consoles are PIPED_WIDTH wide unless COLUMNS says."""
    monkeypatch.delenv("COLUMNS", raising=False)
    table = Table(*(f"column {i}" for i in range(8)))
    table.add_row(*(f"{123_456_789.123 * (i + 1):,.3f}" for i in range(8)))
    out = console_module.console()
    assert not out.is_terminal and out.width == console_module.PIPED_WIDTH
    out.file = io.StringIO()
    out.print(table)
    printed = out.file.getvalue()
    assert "…" not in printed and "987,654,312.984" in printed
    monkeypatch.setenv("COLUMNS", "80")
    assert console_module.console().width == 80
