"""The voice-of-the-customer reports (`nps`, `csat`, `sentiment`, `themes`, `mentions`),
merged into `touchpoints.models.reports.REPORTS` so that the `touchpoints feedback`
verbs, `GET /v1/insights/{report}` and the dashboard run the same code."""

from __future__ import annotations

from typing import Any

import pandas as pd

from touchpoints.errors import InvalidInput
from touchpoints.insights import feedback
from touchpoints.insights.frame import Period, Scope
from touchpoints.insights.reports import PERIODS, Option, Report, ReportResult, choice, text, whole
from touchpoints.models import sentiment
from touchpoints.warehouse.connection import Warehouse


def _number(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, not {value!r}", field=name) from None


def _nps(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    view = options["view"]
    if view == "response_rate":
        return feedback.response_rate(warehouse, scope, options["period"])
    if view == "detractors":
        return feedback.before_detractors(warehouse, scope, options["days"], options["top"])
    return feedback.nps(feedback.answers(warehouse, scope), options["period"], options["by"])


def _csat(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    answered = feedback.answers(warehouse, scope)
    return feedback.satisfaction(answered, options["period"], options["by"])


def _frame(table: pd.DataFrame) -> ReportResult:
    """Rows of a DataFrame with NaN as null (JSON has no NaN)."""
    table = table.copy()
    for column in table.columns:
        if pd.api.types.is_datetime64_any_dtype(table[column]):
            moments = [t.to_pydatetime() if pd.notna(t) else None for t in table[column]]
            table[column] = pd.Series(moments, index=table.index, dtype=object)
    clean = table.astype(object).where(table.notna(), None)
    return ReportResult([str(c) for c in table.columns], clean.to_dict("records"))


def _texts(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> pd.DataFrame:
    scored = sentiment.texts(warehouse, scope, options.get("by"))
    source = options.get("source", "all")
    return scored if source == "all" else scored[scored["source"] == source]


def _sentiment(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    scored = _texts(warehouse, scope, options)
    if options["view"] == "texts":
        columns = ["timestamp", "source", "platform", "customer_id", "language", "compound",
                   "label", "text"]  # fmt: skip
        latest = scored.sort_values("timestamp", ascending=False).head(options["top"])
        return _frame(latest[columns])
    trend = sentiment.sentiment_trend(scored, options["period"], options["by"])
    if options["period"] == Period.all:
        trend = trend.drop(columns="period")
    return _frame(trend)


def _themes(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    scored = _texts(warehouse, scope, options)
    return _frame(sentiment.themes(scored, options["top"], options["examples"]))


def _mentions(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    scored = _texts(warehouse, scope, {"source": "mention"})
    view = options["view"]
    if view == "volume":
        return _frame(sentiment.mention_volume(scored, options["window"], options["threshold"]))
    if view == "platforms":
        return _frame(sentiment.by_platform(scored))
    return _frame(sentiment.share_of_voice(scored, options["term"]))


_PERIOD = Option(PERIODS, Period.all, help="day, week, month or all")
_BY = Option(text, None, help="break down by a field, property or trait")
_SOURCE = Option(choice("all", "survey", "mention"), "all")

REPORTS: dict[str, Report] = {
    "nps": Report("nps", "NPS with its 95% interval; response rate; what detractors did",
                  _nps, {
        "period": _PERIOD,
        "by": _BY,
        "view": Option(choice("score", "response_rate", "detractors"), "score"),
        "days": Option(whole(1, 365), 7, help="days before a detractor's answer"),
        "top": Option(whole(1, 1000), 20),
    }),
    "csat": Report("csat", "CSAT (share of 4-5 answers) and CES (mean effort)", _csat, {
        "period": _PERIOD,
        "by": _BY,
    }),
    "sentiment": Report("sentiment", "sentiment of survey comments and mentions (VADER)",
                        _sentiment, {
        "period": Option(PERIODS, Period.week),
        "by": _BY,
        "source": _SOURCE,
        "view": Option(choice("trend", "texts"), "trend"),
        "top": Option(whole(1, 10_000), 100, help="texts to list with view=texts"),
    }),
    "themes": Report("themes", "words and phrases characteristic of negative vs positive texts",
                     _themes, {
        "source": _SOURCE,
        "top": Option(whole(1, 200), 10),
        "examples": Option(whole(0, 20), 2),
    }),
    "mentions": Report("mentions", "share of voice by term, volume with spikes, platforms",
                       _mentions, {
        "view": Option(choice("share", "volume", "platforms"), "share"),
        "term": Option(text, many=True, help="brand and competitor terms (share of voice)"),
        "window": Option(whole(2, 365), 14, help="trailing days for spike detection"),
        "threshold": Option(_number, 3.5, help="robust z-score of a spike"),
    }),
}  # fmt: skip
