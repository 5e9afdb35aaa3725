"""The `spend` importer: ad platforms' cost rows into the `spend` table (not events).

Rows with the same (source, date, channel, campaign) are added up (an export by ad group
or by ad becomes one row a campaign a day), so memory holds one aggregate per such key,
never the rows. Each key's `import_key` is a hash of it: the warehouse skips a key it
holds already, so importing a file twice adds nothing, and an import never changes a
day that is loaded (delete those rows first to load a corrected export).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa

from touchpoints.collect.importers.reading import Column, Row, open_table
from touchpoints.collect.importers.runner import EventSink, ImportReport, Options, Tally
from touchpoints.collect.importers.values import (
    RowError,
    currency,
    digest,
    optional_count,
    parse_day,
    parse_decimal,
    text,
)
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import SPEND

SPEND_ARROW = SPEND.to_pyarrow()
_LOOKUP_BATCH = 5_000


def columns(channel_given: bool) -> tuple[Column, ...]:
    """The columns read; `channel` may be absent when `channel=` names it for all rows."""
    return (
        Column("date", True, ("day", "report_date", "date_start")),
        Column("channel", not channel_given, ("channel_group", "channel_name")),
        Column("campaign", False, ("campaign_name",)),
        Column("impressions", False, ("impr", "impressions_count")),
        Column("clicks", False, ("link_clicks", "clicks_all")),
        Column("cost", True, ("spend", "amount", "amount_spent")),
        Column("currency", False, ("currency_code", "account_currency")),
        Column("source", False, ("platform", "network", "ad_platform", "publisher")),
    )


def import_key(source: str, day: date, channel: str, campaign: str | None) -> str:
    """The row's unique key: a hash of (source, date, channel, campaign)."""
    return "imp-spend-" + digest("spend", source, day.isoformat(), channel, campaign or "")[:32]


@dataclass(slots=True)
class _Total:
    day: date
    channel: str
    source: str
    campaign: str | None
    impressions: int | None
    clicks: int | None
    cost: Decimal
    currency: str
    line: int


def _add(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b


def import_spend(warehouse: Warehouse, options: Options) -> ImportReport:
    """Load ad cost rows (CSV or Parquet) into `spend`, bad rows into rejected_events."""
    default_source = options.source_name or "import"
    tally = Tally(options.kind)
    totals: dict[str, _Total] = {}
    table = open_table(
        options.path, columns(options.channel is not None), options.mapping, options.chunk_rows
    )
    try:
        with EventSink(
            warehouse, "spend", None, "ads", tally, unit=table.unit, columns=table.columns
        ) as sink:
            for chunk in table.chunks():
                for row in chunk:
                    tally.rows_read += 1
                    if row.problem is not None:
                        sink.reject(row.line, *row.problem, row.raw)
                        continue
                    try:
                        _aggregate(totals, row, table.unit, options.channel, default_source)
                    except RowError as exc:
                        sink.reject(row.line, exc.column, exc.reason, row.raw)
                sink.write()
                options.report_progress(table.done(), table.total)
            rows = _table(totals.values())
            fresh = _without_loaded(warehouse, rows)
            warehouse.insert("spend", fresh)
    finally:
        table.close()
    tally.spend_rows = rows.num_rows
    if rows.num_rows - fresh.num_rows:
        tally.skipped["already_imported"] = rows.num_rows - fresh.num_rows
    options.report_progress(table.total, table.total)
    return tally.report()


def _aggregate(
    totals: dict[str, _Total],
    row: Row,
    unit: str,
    channel_option: str | None,
    default_source: str,
) -> None:
    values = row.values
    day = parse_day(values.get("date"), "date")
    channel = text(values.get("channel")) or channel_option
    if channel is None:
        raise RowError("channel", "no value")
    cost = parse_decimal(values.get("cost"), "cost")
    impressions = optional_count(values.get("impressions"), "impressions")
    clicks = optional_count(values.get("clicks"), "clicks")
    money = currency(values.get("currency"))
    source = text(values.get("source")) or default_source
    campaign = text(values.get("campaign"))
    key = import_key(source, day, channel, campaign)
    total = totals.get(key)
    if total is None:
        totals[key] = _Total(
            day, channel, source, campaign, impressions, clicks, cost, money, row.line
        )
        return
    if total.currency != money:
        raise RowError(
            "currency",
            f"{money} differs from {total.currency} on {unit} {total.line} for the same day, "
            "channel, campaign and source",
        )
    total.impressions = _add(total.impressions, impressions)
    total.clicks = _add(total.clicks, clicks)
    total.cost += cost


def _table(totals: Any) -> pa.Table:
    rows = [
        {
            "date": t.day,
            "channel": t.channel,
            "source": t.source,
            "campaign": t.campaign,
            "impressions": t.impressions,
            "clicks": t.clicks,
            "cost": float(t.cost),
            "currency": t.currency,
            "import_key": import_key(t.source, t.day, t.channel, t.campaign),
        }
        for t in totals
    ]
    return pa.Table.from_pylist(rows, schema=SPEND_ARROW)


def _without_loaded(warehouse: Warehouse, rows: pa.Table) -> pa.Table:
    """The rows whose import_key the warehouse does not hold (DuckDB would skip them on
    its own; other engines append, so the check is made here for all)."""
    keys = rows.column("import_key").to_pylist()
    if not keys:
        return rows
    spend = warehouse.table("spend")
    loaded: set[str] = set()
    for start in range(0, len(keys), _LOOKUP_BATCH):
        batch = keys[start : start + _LOOKUP_BATCH]
        found = spend.filter(spend.import_key.isin(batch)).import_key.to_pyarrow().to_pylist()
        loaded.update(found)
    if not loaded:
        return rows
    keep = pa.array([key not in loaded for key in keys])
    return rows.filter(keep)
