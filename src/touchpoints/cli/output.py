"""Printing rows as a rich table, JSON or CSV — the `--format` every data verb takes."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def render(
    rows: Sequence[dict[str, Any]] | dict[str, Any],
    fmt: Format,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Print `rows` (a list of row objects, or one object) in the chosen format."""
    if fmt is Format.json:
        sys.stdout.write(
            orjson.dumps(
                rows, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
            ).decode()
            + "\n"
        )
        return
    if isinstance(rows, dict) and fmt is Format.table:  # one object: a field per line
        rows, columns = [{"field": k, "value": v} for k, v in rows.items()], ["field", "value"]
    records = [rows] if isinstance(rows, dict) else list(rows)
    names = list(columns) if columns is not None else _columns(records)
    if fmt is Format.csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for record in records:
            writer.writerow([_text(record.get(n)) for n in names])
        sys.stdout.write(out.getvalue())
        return
    table = Table(title=title, show_lines=False)
    for name in names:
        table.add_column(name, overflow="fold")
    for record in records:
        table.add_row(*[_cell(record.get(n)) for n in names])
    Console().print(table)


def _columns(records: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(key)
    return list(seen)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _cell(value: Any) -> str:
    """A table cell: like `_text`, with floats rounded for reading (CSV keeps them whole)."""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4f}".rstrip("0").rstrip(".")
    return _text(value)
