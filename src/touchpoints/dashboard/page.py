"""What a dashboard page shows: tiles, charts and the tables behind them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from touchpoints.insights.reports import ReportResult


@dataclass
class Tile:
    """One headline number, with the previous period's beside it when there is one."""

    key: str
    label: str
    value: float | int | None
    kind: str = "number"  # number, money, percent, seconds
    previous: float | int | None = None

    @property
    def change(self) -> float | None:
        if self.previous in (None, 0) or self.value is None:
            return None
        return (self.value - self.previous) / abs(self.previous)


@dataclass
class Table:
    """Rows with their columns; `key` names it for tests and links."""

    key: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    download: str | None = None

    @classmethod
    def of(cls, key: str, title: str, result: ReportResult, **extra: Any) -> Table:
        return cls(key, title, result.columns, result.rows, **extra)


@dataclass
class Control:
    """A page-specific input of the page's form (kept in the URL like the filters)."""

    name: str
    label: str
    value: str | list[str] = ""
    options: list[str] | None = None
    many: bool = False
    placeholder: str = ""


@dataclass
class Page:
    title: str
    tiles: list[Tile] = field(default_factory=list)
    charts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
