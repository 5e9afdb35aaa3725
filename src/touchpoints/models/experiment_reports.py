"""The experiment reports, for `models.reports.REPORTS`: `experiment` (one experiment's
analysis: a row per variant and metric, SRM columns on every row) and `experiments`
(the saved definitions). The CLI and `/v1/insights/{report}` both reach them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import Scope
from touchpoints.insights.reports import Option, Report, ReportResult, parse_time, text
from touchpoints.models.experiment_stats import SEQUENTIAL_TUNING
from touchpoints.models.experiments import analyse, list_experiments
from touchpoints.warehouse.connection import Warehouse


def between(low: float, high: float) -> Callable[[str, str], float]:
    """A number strictly between `low` and `high`."""

    def parse(value: str, name: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None or not low < number < high:
            raise InvalidInput(
                f"{name} is a number between {low:g} and {high:g}, not {value!r}", field=name
            )
        return number

    return parse


def _no_scope(scope: Scope, name: str) -> None:
    if scope.start or scope.end or scope.where:
        raise InvalidInput(f"the {name} report takes no from, to or where; use as_of", field="from")


def _experiment(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ReportResult:
    _no_scope(scope, "experiment")
    report = analyse(
        warehouse,
        options["key"],
        options["as_of"],
        alpha=options["alpha"],
        target_mde=options["mde"],
        target_power=options["power"],
        tuning=options["tuning"],
    )
    rows = [{**row, "warnings": "; ".join(report.warnings) or None} for row in report.rows]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return ReportResult(columns, [{c: row.get(c) for c in columns} for row in rows])


def _experiments(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ReportResult:
    _no_scope(scope, "experiments")
    rows = list_experiments(warehouse)
    columns = ["key", "name", "unit", "variants", "start", "stop", "primary_metric", "updated_at"]
    return ReportResult(columns, rows)


REPORTS: dict[str, Report] = {
    "experiment": Report(
        "experiment",
        "an A/B test: each variant against control, every metric",
        _experiment,
        {
            "key": Option(text, required=True, help="the experiment's key"),
            "as_of": Option(parse_time, None, help="count events before this time (default now)"),
            "alpha": Option(between(0, 0.5), 0.05, help="significance level, two-sided"),
            "mde": Option(between(0, 10), 0.05, help="relative effect the power figures aim at"),
            "power": Option(between(0, 1), 0.8, help="power the sample size aims at"),
            "tuning": Option(
                between(1, 1e12),
                SEQUENTIAL_TUNING,
                help="units at which the sequential interval is tightest",
            ),
        },
    ),
    "experiments": Report("experiments", "the saved experiments", _experiments, {}),
}
