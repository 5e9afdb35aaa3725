"""Multi-touch attribution: every model side by side, per channel, with spend.

`attribute` runs the chosen models of `touchpoints.insights.attribution_models` on path
aggregates and puts, per channel, each model's attributed conversions and revenue and,
from the channel's cost, its cost per attributed conversion (`cpa`) and return on ad
spend (`roas`) next to each other, so that where the models disagree shows at a glance.
`attribute_warehouse` builds the paths from the event log (`attribution_paths`) and the
cost from the `spend` table; `read_paths` reads ad-hoc paths in ChannelAttribution's
notation (`a > b > c;conversions;value;nulls`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import pandas as pd

from touchpoints.errors import InvalidInput
from touchpoints.insights import attribution_models as m
from touchpoints.insights.attribution_paths import (
    DEFAULT_LOOKBACK,
    DIRECT_KEYS,
    NO_TOUCH,
    SEP,
    conversion_paths,
    time_decay_credit,
)
from touchpoints.insights.frame import Scope, user_events
from touchpoints.warehouse.connection import Warehouse

MODELS = ("first_touch", "last_touch", "last_non_direct", "linear", "time_decay",
          "position_based", "markov", "shapley")  # fmt: skip
#: Models that run on bare paths (time decay needs the touch times).
PATH_MODELS = tuple(name for name in MODELS if name != "time_decay")
METRICS = ("conversions", "revenue", "cpa", "roas")
DEFAULT_HALF_LIFE = timedelta(days=7)
_COLUMNS = {  # names a paths file may give each column, ChannelAttribution's first
    "path": ("path",),
    "conversions": ("total_conversions", "conversions", "conv"),
    "revenue": ("total_conversion_value", "revenue", "value", "conversion_value"),
    "nulls": ("total_null", "nulls", "null", "non_conversions"),
}


def check_models(models: Iterable[str] | None) -> tuple[str, ...]:
    """The chosen models in their usual order (all when none are named)."""
    chosen = set(models or MODELS)
    unknown = sorted(chosen - set(MODELS))
    if unknown:
        raise InvalidInput(f"there is no model {unknown[0]!r}; choose from {', '.join(MODELS)}",
                           field="models")  # fmt: skip
    return tuple(name for name in MODELS if name in chosen)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def attribute(
    paths: Sequence[m.PathRow],
    *,
    models: Iterable[str] | None = None,
    markov_order: int = 1,
    direct: str = m.DIRECT,
    time_decay: m.Attribution | None = None,
    spend: Mapping[str, float] | None = None,
    shapley_value: str = "conversions",
    key: str = "channel",
) -> pd.DataFrame:
    """One row per channel (`key`): `cost` (null without spend), then for each model
    `<model>_conversions`, `<model>_revenue`, `<model>_cpa` and `<model>_roas`, and the
    Markov removal effect. `time_decay` is that model's credit, computed from touch
    times beforehand (`time_decay_credit`); without it the model cannot run.
    Conversions without any touchpoint (the path `(no touchpoint)`) are no one's to
    share: every model leaves them on that row, and runs on the other paths."""
    chosen = check_models(models)
    untouched = [p for p in paths if p.channels == (NO_TOUCH,)]
    paths = [p for p in paths if p.channels != (NO_TOUCH,)]
    alone = m.Credit(sum(p.conversions for p in untouched), sum(p.revenue for p in untouched))
    results: dict[str, m.Attribution] = {}
    effects: dict[str, float] = {}
    for name in chosen:
        if name == "time_decay":
            if time_decay is None:
                raise InvalidInput("time decay needs the touch times, which paths alone lack; "
                                   "leave it out of the models", field="models")  # fmt: skip
            results[name] = time_decay
        elif name == "last_non_direct":
            results[name] = m.last_non_direct(paths, direct)
        elif name == "markov":
            markov = m.markov(paths, markov_order)
            results[name], effects = markov.attributed, markov.removal_effects
        elif name == "shapley":
            results[name] = m.shapley(paths, shapley_value)
        else:
            results[name] = getattr(m, name)(paths)
        if untouched:
            results[name] = {**results[name], NO_TOUCH: alone}
    spend = dict(spend or {})
    channels = {c for p in paths for c in p.channels} | set(spend)
    channels |= {NO_TOUCH} if untouched else set()
    rows: list[dict[str, Any]] = []
    for channel in channels:
        cost = spend.get(channel)
        row: dict[str, Any] = {key: channel, "cost": cost}
        for name in chosen:
            credit = results[name].get(channel, m.Credit(0.0, 0.0))
            conversions, revenue = float(credit.conversions), float(credit.revenue)
            row[f"{name}_conversions"] = conversions
            row[f"{name}_revenue"] = revenue
            row[f"{name}_cpa"] = _ratio(cost, conversions)
            row[f"{name}_roas"] = _ratio(revenue, cost)
        if "markov" in chosen:
            row["markov_removal_effect"] = effects.get(channel)
        rows.append(row)
    columns = [key, "cost", *[f"{n}_{k}" for n in chosen for k in METRICS]]
    if "markov" in chosen:
        columns.append("markov_removal_effect")
    frame = pd.DataFrame(rows, columns=columns)
    conv = [f"{n}_conversions" for n in chosen]
    frame["_mean"] = frame[conv].mean(axis=1) if conv else 0.0
    frame = frame.sort_values(["_mean", key], ascending=[False, True], kind="stable")
    return frame.drop(columns="_mean").reset_index(drop=True)


def paths_from_frame(frame: pd.DataFrame) -> list[m.PathRow]:
    """Path rows from a frame of `path` (`a > b`), `conversions`, `revenue`, `nulls`."""
    return [
        m.PathRow(split_path(str(row.path)), float(row.conversions), float(row.revenue),
                  float(row.nulls))
        for row in frame.itertuples(index=False)
    ]  # fmt: skip


def split_path(text: str) -> tuple[str, ...]:
    """`a > b > c` as its channels, white space around each removed."""
    return tuple(part.strip() for part in text.split(">") if part.strip())


def read_paths(file: str | Path) -> list[m.PathRow]:
    """Paths from a CSV file (`;`, `,` or tab separated, with a header) of a path in the
    `a > b > c` notation, its conversions and optionally its conversion value and the
    journeys that did not convert, as ChannelAttribution's example `Data.csv` has them
    (`path;total_conversions;total_conversion_value;total_null`). Rows of the same path
    add up. A bad row is reported with its line number."""
    path = Path(file)
    if not path.is_file():
        raise InvalidInput(f"no file {file}", field="paths")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {file}: {exc}", field="paths") from None
    return parse_paths(text, str(file))


def parse_paths(text: str, name: str = "paths") -> list[m.PathRow]:
    """`read_paths` on the text of a file."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InvalidInput(f"{name}: line 1: expected a header such as "
                           "path;total_conversions;total_conversion_value;total_null",
                           field="paths")  # fmt: skip
    delimiter = max(";,\t", key=lines[0].count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    where: dict[str, int] = {}
    for field, names in _COLUMNS.items():
        found = next((header.index(n) for n in names if n in header), None)
        if found is not None:
            where[field] = found
    for needed in ("path", "conversions"):
        if needed not in where:
            raise InvalidInput(f"{name}: line 1: no {needed} column (expected one of "
                               f"{', '.join(_COLUMNS[needed])})", field="paths")  # fmt: skip
    totals: dict[tuple[str, ...], list[float]] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise InvalidInput(f"{name}: line {line}: {len(row)} fields, the header has "
                               f"{len(header)}", field="paths", line=line)  # fmt: skip
        channels = split_path(row[where["path"]])
        if not channels:
            raise InvalidInput(f"{name}: line {line}: the path is empty", field="paths", line=line)
        values = []
        for field in ("conversions", "revenue", "nulls"):
            cell = row[where[field]].strip() if field in where else ""
            try:
                number = float(cell) if cell else 0.0
            except ValueError:
                number = -1.0
            if not number >= 0:
                raise InvalidInput(f"{name}: line {line}: {field} must be a number ≥ 0, not "
                                   f"{cell!r}", field="paths", line=line)  # fmt: skip
            values.append(number)
        sums = totals.setdefault(channels, [0.0, 0.0, 0.0])
        for i, number in enumerate(values):
            sums[i] += number
    if not totals:
        raise InvalidInput(f"{name}: no paths", field="paths")
    return [m.PathRow(channels, *sums) for channels, sums in totals.items()]


def format_path(channels: Sequence[str]) -> str:
    return SEP.join(channels)


def warehouse_spend(warehouse: Warehouse, by: str, scope: Scope = Scope()) -> dict[str, float]:
    """Cost per channel group or campaign from the `spend` table, within the scope's
    dates; none per source / medium (the spend table does not say)."""
    if by not in ("channel", "campaign"):
        return {}
    spend = warehouse.table("spend")
    if scope.start is not None:
        spend = spend.filter(spend.date >= scope.start.date())
    if scope.end is not None:
        spend = spend.filter(spend.date < scope.end.date())
    keyed = spend.mutate(_key=spend[by].cast("string").fill_null(DIRECT_KEYS["campaign"]))
    costs = keyed.group_by("_key").aggregate(cost=keyed.cost.sum()).to_pandas()
    return {str(k): float(v) for k, v in zip(costs._key, costs.cost, strict=True) if pd.notna(v)}


def attribute_warehouse(
    warehouse: Warehouse,
    scope: Scope = Scope(),
    *,
    by: str = "channel",
    lookback: timedelta = DEFAULT_LOOKBACK,
    conversion_event: str = "Order Completed",
    models: Iterable[str] | None = None,
    markov_order: int = 1,
    half_life: timedelta = DEFAULT_HALF_LIFE,
    shapley_value: str = "conversions",
) -> pd.DataFrame:
    """`attribute` on the conversions in `scope` (their touches may reach `lookback`
    before its start), with the cost of each channel group or campaign from `spend`."""
    chosen = check_models(models)
    since = ibis.literal(scope.start) if scope.start is not None else None
    wide = Scope(_earlier(scope.start, lookback), scope.end, scope.where)
    events = user_events(warehouse, wide)
    table = conversion_paths(events, by, lookback, conversion_event, since).to_pandas()
    decay = None
    if "time_decay" in chosen:
        credit = time_decay_credit(
            events, by, lookback, conversion_event, half_life, since
        ).to_pandas()
        decay = {
            str(r.key): m.Credit(float(r.conversions), float(r.revenue))
            for r in credit.itertuples(index=False)
        }
    return attribute(
        paths_from_frame(table), models=chosen, markov_order=markov_order,
        direct=DIRECT_KEYS[by], time_decay=decay, spend=warehouse_spend(warehouse, by, scope),
        shapley_value=shapley_value, key=by,
    )  # fmt: skip


def _earlier(start: datetime | None, lookback: timedelta) -> datetime | None:
    return None if start is None else start - lookback
