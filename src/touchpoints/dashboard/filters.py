"""The date range and filters every dashboard page shares, read from and kept in the URL
(so a view can be shared), and turned into the parameters of the insights reports."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from touchpoints.errors import InvalidInput

#: Filters offered on every page: URL name -> the report field it restricts.
FIELDS = {"channel": "channel", "campaign": "campaign", "device": "device"}
DEFAULT_DAYS = 30
MAX_DAYS = 3660


@dataclass(frozen=True)
class Filters:
    """A range of whole days (both ends included) and optional field filters."""

    start: date
    end: date
    where: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_query(cls, query: Mapping[str, str], last_day: Callable[[], date]) -> Filters:
        """From URL parameters `from`, `to` (YYYY-MM-DD) and the FIELDS; without `to`,
        the range ends on `last_day()` (the last day with events; asked only then)."""
        end = _day(query.get("to"), "to") or last_day()
        start = _day(query.get("from"), "from") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise InvalidInput("the range starts after it ends", field="from")
        if (end - start).days > MAX_DAYS:
            raise InvalidInput("the range is at most ten years", field="from")
        where = tuple(
            (name, query[name].strip()) for name in FIELDS if (query.get(name) or "").strip()
        )
        return cls(start, end, where)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Filters:
        """The same number of days just before, with the same filters."""
        return replace(
            self, start=self.start - timedelta(days=self.days), end=self.start - timedelta(days=1)
        )

    def params(self, **extra: Any) -> dict[str, Any]:
        """Report parameters: the range, the filters as `where`, and `extra`."""
        where = [f"{FIELDS[name]}={value}" for name, value in self.where]
        found: dict[str, Any] = {"from": self.start.isoformat(), "to": self.end.isoformat()}
        if where:
            found["where"] = where
        return {**found, **{k: v for k, v in extra.items() if v not in (None, "", [])}}

    def query(self, **extra: Any) -> str:
        """The URL query of these filters, plus `extra` (lists repeat their name)."""
        pairs: list[tuple[str, str]] = [
            ("from", self.start.isoformat()),
            ("to", self.end.isoformat()),
            *self.where,
        ]
        for name, value in extra.items():
            values = value if isinstance(value, list | tuple) else [value]
            pairs += [(name, str(v)) for v in values if v not in (None, "")]
        return urlencode(pairs)

    def value(self, name: str) -> str:
        return dict(self.where).get(name, "")


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise InvalidInput(
            f"{name} is a date as YYYY-MM-DD, not {text[:20]!r}", field=name
        ) from None
