"""CLV from the warehouse: purchases pulled as transactions, the three models fitted, and
each customer scored. Used by the `clv` report (CLI and API) and by the churn retention
list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER, Scope, user_events
from touchpoints.models.clv import (
    DAYS_PER_MONTH,
    WEEKS_PER_MONTH,
    BGNBDFit,
    GammaGammaFit,
    ParetoNBDFit,
    customer_lifetime_value,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
    predict,
)
from touchpoints.models.clv_summary import summary_from_transactions
from touchpoints.warehouse.connection import Warehouse

ORDER_EVENT = "Order Completed"


def warehouse_transactions(
    warehouse: Warehouse, order_event: str = ORDER_EVENT, end: datetime | None = None
) -> pd.DataFrame:
    """Every order as (customer_id, time, amount), the customer resolved as everywhere
    (`insights.frame`); an order without revenue counts as a purchase of 0."""
    events = user_events(warehouse, Scope(end=end))
    orders = events.filter((events.type == "track") & (events.event == order_event))
    table = orders.select(
        customer_id=orders[USER], time=orders.timestamp, amount=orders.revenue.fill_null(0.0)
    ).to_pandas()
    if table.empty:
        raise InvalidInput(f"the warehouse holds no {order_event!r} events", field="order_event")
    return table


@dataclass
class CLVFits:
    """The three models fitted on one summary, and the summary itself."""

    summary: pd.DataFrame
    bgnbd: BGNBDFit
    paretonbd: ParetoNBDFit
    gammagamma: GammaGammaFit | None
    period: str

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """One object per model: the papers' parameter names, log-likelihood, customers and
        (with a holdout) the mean absolute error of predicted holdout purchases."""
        out: dict[str, dict[str, Any]] = {}
        for name, fit in (("bgnbd", self.bgnbd), ("paretonbd", self.paretonbd),
                          ("gammagamma", self.gammagamma)):  # fmt: skip
            if fit is None:
                continue
            values = {**fit.params, "log_likelihood": fit.log_likelihood}
            if getattr(fit, "holdout_mae", None) is not None:
                values["holdout_mae"] = fit.holdout_mae
            out[name] = {k: float(v) for k, v in values.items()} | {"customers": fit.customers}
        return out


def fit_all(summary: pd.DataFrame, period: str = "day") -> CLVFits:
    """BG/NBD, Pareto/NBD and, when there are repeat buyers with spend, Gamma-Gamma."""
    spend = None
    if "monetary_value" in summary.columns:
        repeat = summary[(summary.frequency > 0) & (summary.monetary_value > 0)]
        spend = fit_gamma_gamma(repeat)
    return CLVFits(summary, fit_bgnbd(summary), fit_pareto_nbd(summary), spend, period)


def fit_from_transactions(
    transactions: pd.DataFrame, period: str = "day", calibration_end: str | None = None
) -> CLVFits:
    summary = summary_from_transactions(
        transactions,
        period=period,
        calibration_end=calibration_end,  # type: ignore[arg-type]
    )
    return fit_all(summary, period)


def score_customers(
    fits: CLVFits, horizon_months: int = 12, discount_rate: float = 0.01
) -> pd.DataFrame:
    """Per customer (BG/NBD for counts, Gamma-Gamma for value): expected purchases over the
    horizon, probability alive, expected order value and discounted CLV, by CLV."""
    step = DAYS_PER_MONTH if fits.period == "day" else WEEKS_PER_MONTH
    summary = fits.summary
    out = predict(fits.bgnbd, summary, horizon_months * step, fits.gammagamma)
    out.insert(0, "frequency", summary.frequency)
    out.insert(1, "recency", summary.recency)
    out.insert(2, "T", summary["T"])
    if fits.gammagamma is not None:
        out["clv"] = customer_lifetime_value(
            fits.bgnbd, fits.gammagamma, summary, horizon=horizon_months,
            discount_rate=discount_rate, step=step,
        )  # fmt: skip
        out = out.sort_values("clv", ascending=False)
    out.index.name = USER
    return out
