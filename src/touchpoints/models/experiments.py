"""Experiments: saved definitions, assignment, and the analysis of every variant against
control on the primary and guardrail metrics (see docs/experiments.md).

Definitions live in the `experiments` table (key, definition as JSON text, created_at,
updated_at); only the functions under "storage" touch it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from touchpoints.errors import NotFound
from touchpoints.models.experiment_assign import assign
from touchpoints.models.experiment_checks import CORRECTIONS, SRM, power, srm
from touchpoints.models.experiment_data import (
    arms,
    exposure_counts,
    unit_values,
    variant_statistics,
)
from touchpoints.models.experiment_define import KEY, Experiment, Metric, parse_experiment
from touchpoints.models.experiment_stats import (
    SEQUENTIAL_TUNING,
    Arm,
    bayes,
    effect,
    proportions_test,
    sequential_test,
    t_test,
)
from touchpoints.warehouse.connection import Warehouse

EXPERIMENTS = "experiments"
#: The correction per family of comparisons: the primary metric decides (family-wise
#: error, Holm); guardrails watch for harm (false discovery rate, Benjamini–Hochberg).
CORRECTION = {"primary": "holm", "guardrail": "bh"}


# -- storage ---------------------------------------------------------------------------


def save_experiment(warehouse: Warehouse, definition: str | Mapping[str, Any]) -> dict[str, Any]:
    """Create or replace an experiment from its definition; returns it as stored."""
    experiment = parse_experiment(definition)
    stored = experiment.as_dict()
    text = json.dumps(stored, sort_keys=True)
    now = datetime.now(UTC)
    with warehouse.lock:
        table = warehouse.table(EXPERIMENTS)
        exists = table.filter(table.key == experiment.key).count().to_pyarrow().as_py()
        if exists:
            warehouse.update_rows(
                EXPERIMENTS, "key", experiment.key, {"definition": text, "updated_at": now}
            )
        else:
            stamp = pa.array([now], pa.timestamp("us", tz="UTC"))
            row = {
                "key": [experiment.key],
                "definition": [text],
                "created_at": stamp,
                "updated_at": stamp,
            }
            warehouse.insert(EXPERIMENTS, pa.table(row))
    return stored


def get_experiment(warehouse: Warehouse, key: str) -> Experiment:
    """The saved experiment `key` (`NotFound` when there is none)."""
    table = warehouse.table(EXPERIMENTS)
    found = table.filter(table.key == key).definition.to_pyarrow().to_pylist()
    if not found:
        raise NotFound(f"there is no experiment {key!r}", field="key")
    return parse_experiment(json.loads(found[0]))


def list_experiments(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Every saved experiment: key, name, unit, variants, start, stop, primary metric."""
    table = warehouse.table(EXPERIMENTS).order_by("key").to_pyarrow().to_pylist()
    out = []
    for row in table:
        definition = json.loads(row["definition"])
        out.append(
            {
                "key": row["key"],
                "name": definition["name"],
                "unit": definition["unit"],
                "variants": ", ".join(
                    f"{v['key']}:{v['weight']:g}" for v in definition["variants"]
                ),
                "start": definition["start"],
                "stop": definition["stop"],
                "primary_metric": definition["metrics"]["primary"]["name"],
                "updated_at": row["updated_at"],
            }
        )
    return out


def assignment(warehouse: Warehouse, key: str, unit: str) -> dict[str, Any]:
    """The variant of `unit` in the saved experiment `key` (None when coverage leaves
    it out): what a server-side caller shows, then records as `Experiment Viewed`."""
    experiment = get_experiment(warehouse, key)
    return assignment_for(experiment, unit)


def assignment_for(experiment: Experiment, unit: str) -> dict[str, Any]:
    """The variant of `unit` under a definition, with no warehouse (offline use)."""
    variant = assign(
        experiment.seed, unit, experiment.variant_keys, experiment.weights, experiment.coverage
    )
    return {
        "experiment": experiment.key,
        "unit": unit,
        "variant": variant,
        "in_experiment": variant is not None,
    }


# -- analysis ----------------------------------------------------------------------------


@dataclass
class ExperimentReport:
    """An analysis: units per variant, the SRM check, units left out, and one row per
    variant (other than control) and metric with every statistic."""

    experiment: Experiment
    as_of: datetime
    units: dict[str, int]
    excluded: dict[str, int]
    srm: SRM
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        out = []
        if not self.srm.ok:
            out.append(
                f"SAMPLE RATIO MISMATCH: units per variant {list(self.srm.observed)} do not fit "
                f"the weights (chi-square p = {self.srm.p_value:.2g} < {self.srm.threshold}); "
                "the assignment or the tracking is broken and the results cannot be trusted"
            )
        if self.excluded.get("several_variants"):
            out.append(
                f"{self.excluded['several_variants']} units saw several variants and are left out"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment.as_dict(),
            "as_of": self.as_of.isoformat(),
            "units": self.units,
            "excluded": self.excluded,
            "warnings": self.warnings,
            "srm": {
                "p_value": self.srm.p_value,
                "chi2": self.srm.chi2,
                "ok": self.srm.ok,
                "observed": list(self.srm.observed),
                "expected": list(self.srm.expected),
            },
            "results": self.rows,
        }


def analyse(
    warehouse: Warehouse,
    key_or_definition: str | Experiment | Mapping[str, Any],
    as_of: datetime | None = None,
    *,
    alpha: float = 0.05,
    target_mde: float = 0.05,
    target_power: float = 0.8,
    tuning: float = SEQUENTIAL_TUNING,
) -> ExperimentReport:
    """Every variant against control on every metric, from the events before `as_of`
    (default now; exposures count from the experiment's start to its stop, metrics up
    to `as_of`). A string is a saved experiment's key, or a definition in JSON/YAML."""
    experiment = _experiment(warehouse, key_or_definition)
    moment = as_of or datetime.now(UTC)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    units = unit_values(warehouse, experiment, moment)
    statistics = variant_statistics(units, experiment).to_pyarrow().to_pylist()
    excluded = exposure_counts(units, experiment)
    counts = {row["variant"]: int(row["n"]) for row in statistics}
    seen = {k: counts.get(k, 0) for k in experiment.variant_keys}
    check = srm(list(seen.values()), experiment.weights)
    report = ExperimentReport(experiment, moment, seen, excluded, check)
    for index, metric in enumerate(experiment.metrics):
        role = "primary" if index == 0 else "guardrail"
        by_variant = arms(statistics, experiment, index)
        control = by_variant[experiment.control]
        for variant, arm in by_variant.items():
            if variant == experiment.control:
                continue
            row = _compare(metric, role, control, arm, alpha, tuning)
            row = {
                "metric": metric.name,
                "role": role,
                "kind": metric.kind,
                "variant": variant,
                "control": experiment.control,
                **row,
            }
            if role == "primary":
                row |= _power(control, arm, alpha, target_power, target_mde)
            report.rows.append(row)
    _correct(report.rows, alpha)
    for row in report.rows:
        row |= {"srm_p_value": check.p_value, "srm_ok": check.ok}
    return report


def _experiment(warehouse: Warehouse, found: str | Experiment | Mapping[str, Any]) -> Experiment:
    if isinstance(found, Experiment):
        return found
    if isinstance(found, str) and KEY.fullmatch(found):
        return get_experiment(warehouse, found)
    return parse_experiment(found)


def _compare(
    metric: Metric, role: str, control: Arm, arm: Arm, alpha: float, tuning: float
) -> dict[str, Any]:
    found = effect(control, arm, cuped=metric.cuped)
    if metric.kind == "conversion" and not found.theta:
        test, name = proportions_test(control, arm, alpha), "two-proportion z"
    else:
        test, name = t_test(found.absolute, found.absolute_var, found.dof, alpha), "welch t"
    dof = math.inf if name.startswith("two") else found.dof
    relative = t_test(found.relative, found.relative_var, dof, alpha)
    n_total = control.n + arm.n
    sequential = sequential_test(found.absolute, found.absolute_var, n_total, alpha, tuning)
    sequential_rel = sequential_test(found.relative, found.relative_var, n_total, alpha, tuning)
    posterior = bayes(found.relative, found.relative_var, alpha, metric.higher_is_better)
    better = (found.absolute > 0) == metric.higher_is_better
    return {
        "n_control": control.n,
        "n_variant": arm.n,
        "mean_control": control.mean,
        "mean_variant": arm.mean,
        "absolute_effect": found.absolute,
        "absolute_low": test.low,
        "absolute_high": test.high,
        "relative_effect": found.relative,
        "relative_low": relative.low,
        "relative_high": relative.high,
        "test": name,
        "p_value": test.p_value,
        "sequential_p_value": sequential.p_value,
        "sequential_low": sequential.low,
        "sequential_high": sequential.high,
        "sequential_relative_low": sequential_rel.low,
        "sequential_relative_high": sequential_rel.high,
        "chance_to_beat_control": posterior.chance_to_beat,
        "expected_loss": posterior.expected_loss,
        "credible_low": posterior.low,
        "credible_high": posterior.high,
        "cuped_theta": found.theta,
        "direction": "better" if better else "worse",
    }


def _correct(rows: list[dict[str, Any]], alpha: float) -> None:
    """Adjust p-values within each family (`CORRECTION`) and flag what stays below alpha."""
    for role, method in CORRECTION.items():
        family = [row for row in rows if row["role"] == role]
        for column in ("p_value", "sequential_p_value"):
            adjusted = CORRECTIONS[method]([row[column] for row in family])
            for row, value in zip(family, adjusted, strict=True):
                row[f"{column}_adjusted"] = value
        for row in family:
            row["correction"] = f"{method} over {len(family)} {role} comparisons"
            row["significant"] = bool(row["p_value_adjusted"] < alpha)
            row["sequential_significant"] = bool(row["sequential_p_value_adjusted"] < alpha)


def _power(control: Arm, arm: Arm, alpha: float, target_power: float, mde: float) -> dict:
    if control.is_ratio:
        return {}
    found = power(
        control.mean,
        control.variance,
        control.n,
        arm.variance,
        arm.n,
        alpha=alpha,
        power=target_power,
        target_relative=mde,
    )
    return {
        "mde_relative": found.mde_relative,
        "target_mde_relative": mde,
        "units_needed_per_arm": found.needed_per_arm,
        "units_still_needed_per_arm": found.still_needed_per_arm,
    }
