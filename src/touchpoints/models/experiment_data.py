"""An experiment's data from the warehouse, as Ibis expressions (DuckDB and Spark alike):
exposures, each unit's metric values after its first exposure, and per-variant
sufficient statistics for `experiment_stats`.

- Exposures are `Experiment Viewed` track events (the Segment A/B testing spec) whose
  `experiment_id` (or `experiment_key`) is the experiment's key; the variant is
  `variation_id` (or `variant`, `variation_key`), so variants assigned by another tool
  count as well. Only exposures from `start` to `stop` (and before `as_of`) count.
- The unit is the raw id (`user_id`, else `anonymous_id`) for `unit: user`, and the
  resolved customer (`insights.frame.user_events`) for `unit: customer`.
- A unit counts from its first exposure in its variant; units seen in two variants are
  left out (and counted), as are variants the definition does not know.
- A metric sums a unit's matching events from its first exposure to `within_days`
  after it (or to `as_of`); the CUPED covariate is the same measure over the
  `cuped_days` before the first exposure.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir

from touchpoints.insights.frame import USER, Scope, event_field, user_events
from touchpoints.models.experiment_define import Experiment, Measure, Metric
from touchpoints.models.experiment_stats import Arm
from touchpoints.warehouse.connection import Warehouse
from touchpoints.warehouse.functions import json_text

EXPOSURE_EVENT = "Experiment Viewed"
EXPERIMENT_PROPERTIES = ("experiment_id", "experiment_key")
VARIANT_PROPERTIES = ("variation_id", "variant", "variation_key")
UNIT = "unit"


def unit_events(warehouse: Warehouse, experiment: Experiment, as_of: datetime) -> ir.Table:
    """Track events before `as_of`, each with its experiment unit (`UNIT`)."""
    if experiment.unit == "customer":
        events = user_events(warehouse, Scope(end=as_of))
        events = events.mutate(**{UNIT: events[USER]})
    else:
        events = warehouse.table("events")
        events = events.filter(events.timestamp < as_of)
        events = events.mutate(**{UNIT: ibis.coalesce(events.user_id, events.anonymous_id)})
    return events.filter((events.type == "track") & events[UNIT].notnull())


def first_exposures(events: ir.Table, experiment: Experiment) -> ir.Table:
    """One row per exposed unit: `UNIT`, `exposed` (its first exposure), `variant` and
    `variants` (how many distinct variants it was shown)."""
    seen = events.filter(events.event == EXPOSURE_EVENT)
    key = ibis.coalesce(*(json_text(seen.properties, p) for p in EXPERIMENT_PROPERTIES))
    variant = ibis.coalesce(*(json_text(seen.properties, p) for p in VARIANT_PROPERTIES))
    seen = seen.mutate(_key=key, _variant=variant).filter(lambda t: t._key == experiment.key)
    if experiment.start is not None:
        seen = seen.filter(seen.timestamp >= experiment.start)
    if experiment.stop is not None:
        seen = seen.filter(seen.timestamp < experiment.stop)
    return seen.group_by(UNIT).aggregate(
        exposed=seen.timestamp.min(),
        variant=seen._variant.min(),
        variants=seen._variant.nunique(),
    )


def _value(events: ir.Table, measure: Measure) -> ir.FloatingValue:
    """The measure's value on each event (0 where the event does not match)."""
    match = events.event == measure.event
    for condition in measure.where:
        value = event_field(events, condition.field)
        match &= (
            (value.isnull() | (value != condition.value))
            if condition.negate
            else (value == condition.value)
        )
    if measure.kind == "sum":
        assert measure.property is not None
        if measure.property == "revenue":
            amount = events.revenue
        else:
            amount = event_field(events, measure.property).try_cast("float64")
        return match.ifelse(amount.fill_null(0.0), 0.0)
    return match.ifelse(1.0, 0.0)


def _measures(metric: Metric) -> list[tuple[str, Measure]]:
    parts = [("num", metric.numerator)]
    return [*parts, ("den", metric.denominator)] if metric.denominator else parts


def unit_values(warehouse: Warehouse, experiment: Experiment, as_of: datetime) -> ir.Table:
    """One row per exposed unit: `UNIT`, `variant`, `variants`, `exposed`, and for metric
    number i the columns `m{i}_num` (`m{i}_den` for a ratio) and, with CUPED, `m{i}_pre`."""
    events = unit_events(warehouse, experiment, as_of)
    firsts = first_exposures(events, experiment)
    names = {m.event for metric in experiment.metrics for _, m in _measures(metric)}
    wanted = events.filter(events.event.isin(sorted(names)))
    columns: dict[str, Any] = {}
    for i, metric in enumerate(experiment.metrics):
        for part, measure in _measures(metric):
            columns[f"_v{i}_{part}"] = _value(wanted, measure)
    wanted = wanted.select(_u=wanted[UNIT], _t=wanted.timestamp, **columns)
    joined = firsts.left_join(wanted, firsts[UNIT] == wanted._u)
    pre_start = joined.exposed - ibis.interval(days=experiment.cuped_days)
    before = (joined._t >= pre_start) & (joined._t < joined.exposed)
    sums: dict[str, Any] = {}
    for i, metric in enumerate(experiment.metrics):
        after = joined._t >= joined.exposed
        if metric.within_days is not None:
            window = timedelta(days=metric.within_days)
            after &= joined._t < joined.exposed + ibis.interval(seconds=int(window.total_seconds()))
        for part, measure in _measures(metric):
            value = joined[f"_v{i}_{part}"]
            sums[f"m{i}_{part}"] = _reduce(after.ifelse(value, 0.0), measure)
            if part == "num" and _uses_cuped(experiment, metric):
                sums[f"m{i}_pre"] = _reduce(before.ifelse(value, 0.0), measure)
    return joined.group_by([UNIT, "variant", "variants", "exposed"]).aggregate(**sums)


def _reduce(value: ir.FloatingValue, measure: Measure) -> ir.FloatingValue:
    total = value.max() if measure.kind == "conversion" else value.sum()
    return ibis.coalesce(total, 0.0)


def _uses_cuped(experiment: Experiment, metric: Metric) -> bool:
    return metric.cuped and metric.denominator is None and experiment.cuped_days > 0


def variant_statistics(units: ir.Table, experiment: Experiment) -> ir.Table:
    """Per variant (units shown exactly one known variant): `n` and, per metric i,
    `m{i}_sum`, `m{i}_sum_sq`, and the denominator and covariate sums `experiment_stats`
    needs (`m{i}_den_sum`, `m{i}_den_sum_sq`, `m{i}_cross`, `m{i}_pre_sum`, ...)."""
    clean = units.filter((units.variants == 1) & units.variant.isin(experiment.variant_keys))
    aggs: dict[str, Any] = {"n": clean.count()}
    for i, metric in enumerate(experiment.metrics):
        num = clean[f"m{i}_num"]
        aggs |= {f"m{i}_sum": num.sum(), f"m{i}_sum_sq": (num * num).sum()}
        if metric.denominator is not None:
            den = clean[f"m{i}_den"]
            aggs |= {
                f"m{i}_den_sum": den.sum(),
                f"m{i}_den_sum_sq": (den * den).sum(),
                f"m{i}_cross": (num * den).sum(),
            }
        if _uses_cuped(experiment, metric):
            pre = clean[f"m{i}_pre"]
            aggs |= {
                f"m{i}_pre_sum": pre.sum(),
                f"m{i}_pre_sum_sq": (pre * pre).sum(),
                f"m{i}_pre_cross": (num * pre).sum(),
            }
    return clean.group_by("variant").aggregate(**aggs)


def exposure_counts(units: ir.Table, experiment: Experiment) -> dict[str, int]:
    """Units left out of the analysis: `several_variants` and `unknown_variant`."""
    several = units.variants > 1
    unknown = (units.variants == 1) & ~units.variant.isin(experiment.variant_keys)
    row = (
        units.aggregate(
            several_variants=several.ifelse(1, 0).sum(), unknown_variant=unknown.ifelse(1, 0).sum()
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    return {k: int(v or 0) for k, v in row.items()}


def arms(statistics: list[dict[str, Any]], experiment: Experiment, index: int) -> dict[str, Arm]:
    """The `Arm` of every variant for metric `index`, from `variant_statistics` rows
    (a variant nobody saw has n = 0)."""
    by_variant = {row["variant"]: row for row in statistics}
    metric = experiment.metrics[index]
    ratio, cuped = metric.denominator is not None, _uses_cuped(experiment, metric)
    out = {}
    for key in experiment.variant_keys:
        row = by_variant.get(key, {})
        values = {
            k[len(f"m{index}_") :]: float(v or 0.0)
            for k, v in row.items()
            if k.startswith(f"m{index}_")
        }
        den = [values.get(k, 0.0) for k in ("den_sum", "den_sum_sq", "cross")]
        pre = [values.get(k, 0.0) for k in ("pre_sum", "pre_sum_sq", "pre_cross")]
        out[key] = Arm(
            int(row.get("n", 0)),
            values.get("sum", 0.0),
            values.get("sum_sq", 0.0),
            *(den if ratio else [None] * 3),
            *(pre if cuped else [None] * 3),
        )
    return out
