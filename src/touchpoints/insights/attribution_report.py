"""The `attribution` report: every attribution model side by side, per channel group,
campaign or source / medium, with spend. To be merged into the reports registry, so that
the CLI and `GET /v1/insights/attribution` read its parameters the same way."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from touchpoints.errors import InvalidInput
from touchpoints.insights.attribution import DEFAULT_HALF_LIFE, MODELS, attribute_warehouse
from touchpoints.insights.attribution_models import MAX_ORDER, SHAPLEY_VALUES
from touchpoints.insights.attribution_paths import DEFAULT_LOOKBACK, GROUPINGS
from touchpoints.insights.frame import Scope
from touchpoints.insights.funnels import parse_window
from touchpoints.insights.reports import Option, Report, ReportResult, choice, text, whole
from touchpoints.warehouse.connection import Warehouse


def _duration(value: str, name: str) -> timedelta:
    try:
        return parse_window(value)
    except InvalidInput as exc:  # it names the funnel's field; name ours
        raise InvalidInput(exc.message, field=name) from None


def _model(value: str, name: str) -> list[str]:
    """One model name or several separated by commas."""
    return [choice(*MODELS)(part.strip(), name) for part in value.split(",") if part.strip()]


def result_rows(frame: pd.DataFrame) -> ReportResult:
    """A frame as report rows, NaN as null."""
    clean = frame.astype(object).where(frame.notna(), None)
    return ReportResult(list(frame.columns), clean.to_dict(orient="records"))


def _attribution(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> ReportResult:
    models = [name for group in options["models"] for name in group] or None
    frame = attribute_warehouse(
        warehouse, scope, by=options["by"], lookback=options["lookback"],
        conversion_event=options["conversion_event"], models=models,
        markov_order=options["markov_order"], half_life=options["half_life"],
        shapley_value=options["shapley_value"],
    )  # fmt: skip
    return result_rows(frame)


REPORTS: dict[str, Report] = {
    "attribution": Report(
        "attribution",
        "conversions, revenue, CPA and ROAS per channel under every attribution model",
        _attribution,
        {
            "by": Option(choice(*GROUPINGS), "channel", help="channel, campaign or source_medium"),
            "lookback": Option(_duration, DEFAULT_LOOKBACK, help="touches this recent (30d)"),
            "conversion_event": Option(text, "Order Completed"),
            "models": Option(_model, many=True, help="a subset of " + ", ".join(MODELS)),
            "markov_order": Option(whole(1, MAX_ORDER), 1),
            "half_life": Option(_duration, DEFAULT_HALF_LIFE, help="time decay half-life (7d)"),
            "shapley_value": Option(choice(*SHAPLEY_VALUES), "conversions"),
        },
    )
}
