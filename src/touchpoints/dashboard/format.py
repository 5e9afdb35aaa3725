"""How numbers read on the dashboard: thousands separated, rates as percentages."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

#: Columns holding a share of 1 (shown as a percentage).
RATES = ("rate", "ctr", "share", "probability", "risk")


def cell(value: Any, column: str = "") -> str:
    """A table cell as text."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if any(part in column for part in RATES):
            return f"{value:.1%}"
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    return str(value)


def tile_value(value: Any, kind: str) -> str:
    """A headline number as text, by its kind."""
    if value is None:
        return "–"
    if kind == "percent":
        return f"{value:.1%}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "seconds":
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes}m {seconds:02d}s"
    if kind == "ratio":
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
