"""The model reports (`clv`, and those of later models), added to the insights reports
so the CLI verbs and `/v1/insights/{report}` reach both through one `run_report`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from touchpoints.errors import InvalidInput
from touchpoints.insights.attribution_report import REPORTS as ATTRIBUTION_REPORTS
from touchpoints.insights.frame import Scope
from touchpoints.insights.reports import (
    REPORTS as INSIGHT_REPORTS,
)
from touchpoints.insights.reports import (
    Option,
    Params,
    Report,
    ReportResult,
    choice,
    flag,
    parse_time,
    text,
    whole,
)
from touchpoints.insights.reports import run_report as _run
from touchpoints.insights.segment_reports import SEGMENT_REPORTS
from touchpoints.models.churn_service import current_risk, evaluation, retention_targets
from touchpoints.models.churn_service import rows as churn_rows
from touchpoints.models.clv_data import fit_from_transactions, score_customers
from touchpoints.models.clv_data import warehouse_transactions as _transactions
from touchpoints.models.experiment_reports import REPORTS as EXPERIMENT_REPORTS
from touchpoints.models.feedback_reports import REPORTS as FEEDBACK_REPORTS
from touchpoints.models.offer_results import REPORTS as OFFER_REPORTS
from touchpoints.models.persona_data import customer_personas, persona_breakdown, trait_values
from touchpoints.models.recommend_service import MODELS as RECOMMENDERS
from touchpoints.models.recommend_service import recommend_for
from touchpoints.warehouse.connection import Warehouse


def rate(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not 0 <= number < 1:
        raise InvalidInput(f"{name} is a rate from 0 to 1 (0.01 = 1%), not {value!r}", field=name)
    return number


def _clv(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    if scope.where:
        raise InvalidInput("the clv report takes no where conditions", field="where")
    transactions = _transactions(warehouse, end=scope.end)
    if scope.start is not None:
        transactions = transactions[transactions.time >= scope.start]
    end = options["calibration_end"]
    fits = fit_from_transactions(
        transactions, options["period"], end.isoformat() if end is not None else None
    )
    if not options["customers"]:
        rows = [{"model": name, **fit} for name, fit in fits.as_dict().items()]
        columns = list(dict.fromkeys(k for row in rows for k in row))
        return ReportResult(columns, rows)
    scored = score_customers(fits, options["horizon"], options["discount_rate"])
    return scored.head(options["top"]).reset_index()


def _recommend(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    if scope.where or scope.start or scope.end:
        raise InvalidInput("recommendations take no from, to or where", field="where")
    found = recommend_for(warehouse, options["identifier"], options["k"], options["model"])
    rows = [{"customer_id": found["customer_id"], "known": found["known"], **item}
            for item in found["items"]]  # fmt: skip
    return ReportResult(["customer_id", "known", "rank", "item_id", "score"], rows)


def _days(value: str, name: str) -> timedelta:
    return timedelta(days=whole(1, 3650)(value, name))


def _churn(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    if scope.where or scope.start or scope.end:
        raise InvalidInput("churn takes no from, to or where", field="where")
    horizon, target = options["horizon_days"], options["target"]
    if options["view"] == "metrics":
        return evaluation(warehouse, horizon, target)
    if options["view"] == "retention":
        table = retention_targets(warehouse, horizon, target)
    else:
        table = current_risk(warehouse, horizon, target)
    return ReportResult(*churn_rows(table, options["top"]))


def _personas(warehouse: Warehouse, scope: Scope, options: dict[str, Any]) -> Any:
    if scope.where or scope.start or scope.end:
        raise InvalidInput("personas take no from, to or where", field="where")
    found = customer_personas(warehouse, max_clusters=options["max_clusters"])
    if options["trait"]:
        rows = persona_breakdown(found, trait_values(warehouse, options["trait"]))
        return ReportResult(["cluster", "name", "value", "share"], rows)
    rows = [{"cluster": p.cluster, "name": p.name, "customers": p.size, "share": p.share,
             **{f"mean_{k}": v for k, v in p.means.items()}} for p in found.personas]  # fmt: skip
    return ReportResult(list(rows[0]) if rows else [], rows)


MODEL_REPORTS: dict[str, Report] = {
    "clv": Report("clv", "BG/NBD, Pareto/NBD and Gamma-Gamma fits, or customers by CLV", _clv, {
        "period": Option(choice("day", "week"), "day"),
        "calibration_end": Option(parse_time, None),
        "customers": Option(flag, False),
        "horizon": Option(whole(1, 120), 12, help="months of CLV"),
        "discount_rate": Option(rate, 0.01, help="a month"),
        "top": Option(whole(1, 1_000_000), 20),
    }),
    "churn": Report("churn", "churn risk per customer, its test metrics, the retention list",
                    _churn, {
        "horizon_days": Option(_days, timedelta(days=90)),
        "target": Option(choice("purchase", "activity"), "purchase"),
        "view": Option(choice("customers", "metrics", "retention"), "customers"),
        "top": Option(whole(1, 1_000_000), 50),
    }),
    "personas": Report("personas", "customers clustered by behaviour, described", _personas, {
        "max_clusters": Option(whole(2, 20), 8),
        "trait": Option(text, None, help="a profile trait to break each persona down by"),
    }),
    "recommend": Report("recommend", "the products a customer is likeliest to want", _recommend, {
        "identifier": Option(text, required=True),
        "k": Option(whole(1, 1000), 10),
        "model": Option(choice(*RECOMMENDERS), "als"),
    }),
}  # fmt: skip

REPORTS: dict[str, Report] = {
    **INSIGHT_REPORTS,
    **SEGMENT_REPORTS,
    **ATTRIBUTION_REPORTS,
    **MODEL_REPORTS,
    **EXPERIMENT_REPORTS,
    **FEEDBACK_REPORTS,
    **OFFER_REPORTS,
}


def run_report(warehouse: Warehouse, name: str, params: Params) -> ReportResult:
    """Any report, insight or model, by name."""
    return _run(warehouse, name, params, REPORTS)
