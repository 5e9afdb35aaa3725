"""The RFM summary the CLV models fit on, built from a table of transactions.

Definitions follow the `lifetimes` package (and the BG/NBD papers), counted in periods
(`period="day"` or `"week"`, weeks starting on Monday, times in UTC):

- frequency: number of periods with a purchase, minus the first one (repeat periods);
- recency: period of the last purchase minus period of the first;
- T: period of the calibration end minus period of the first purchase;
- monetary_value: mean spend of the repeat periods (amounts summed within a period),
  0 without repeat purchases.

With a `calibration_end`, purchases after it up to `observation_end` form the holdout:
frequency_holdout counts each calibration customer's purchase periods there and
duration_holdout is its length in periods. Customers first seen in the holdout are left out.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from touchpoints.errors import InvalidInput

Period = Literal["day", "week"]


def summary_from_transactions(
    transactions: pd.DataFrame,
    *,
    customer_col: str = "customer_id",
    time_col: str = "time",
    amount_col: str | None = "amount",
    period: Period = "day",
    calibration_end: str | pd.Timestamp | None = None,
    observation_end: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per customer (indexed by id): frequency, recency, T, monetary_value and,
    with a calibration end, frequency_holdout and duration_holdout. See the module doc."""
    if period not in ("day", "week"):
        raise InvalidInput(f"period must be 'day' or 'week', got {period!r}", field="period")
    for col in (customer_col, time_col, amount_col):
        if col is not None and col not in transactions.columns:
            raise InvalidInput(f"transactions have no column {col!r}", field=col)
    if transactions[customer_col].isna().any():
        raise InvalidInput("customer ids must not be missing", field=customer_col)
    times = _utc(transactions[time_col], time_col)
    amounts = None
    if amount_col is not None:
        amounts = pd.to_numeric(transactions[amount_col], errors="coerce")
        if amounts.isna().any() or not np.all(np.isfinite(amounts.to_numpy(dtype=float))):
            raise InvalidInput("amounts must be numbers", field=amount_col)
    if len(times) == 0:
        raise InvalidInput("there are no transactions", field=time_col)

    obs_end = times.max() if observation_end is None else _timestamp(observation_end, "end")
    cal_end = obs_end if calibration_end is None else _timestamp(calibration_end, "cal")
    if cal_end > obs_end:
        raise InvalidInput("calibration_end is after observation_end", field="calibration_end")

    frame = pd.DataFrame(
        {
            "customer": transactions[customer_col].to_numpy(),
            "period": _periods(times, period),
            "amount": 0.0 if amounts is None else amounts.to_numpy(dtype=float),
        }
    )
    in_calibration = (times <= cal_end).to_numpy()
    in_holdout = ((times > cal_end) & (times <= obs_end)).to_numpy()
    cal = frame[in_calibration]
    if cal.empty:
        raise InvalidInput("no transaction falls before calibration_end", field="calibration_end")

    per_period = cal.groupby(["customer", "period"], sort=True)["amount"].sum().reset_index()
    by_customer = per_period.groupby("customer", sort=True)
    first = by_customer["period"].transform("min")
    repeat_amount = per_period["amount"].where(per_period["period"] != first, 0.0)
    stats = by_customer.agg(first=("period", "min"), last=("period", "max"), n=("period", "size"))
    frequency = stats["n"] - 1
    end_period = int(_periods(pd.Series([cal_end]), period)[0])
    summary = pd.DataFrame(
        {
            "frequency": frequency.astype(float),
            "recency": (stats["last"] - stats["first"]).astype(float),
            "T": (end_period - stats["first"]).astype(float),
        }
    )
    if amounts is not None:
        repeat_sum = repeat_amount.groupby(per_period["customer"]).sum()
        summary["monetary_value"] = np.where(frequency > 0, repeat_sum / frequency.clip(1), 0.0)
    if calibration_end is not None:
        hold = frame[in_holdout].drop_duplicates(["customer", "period"])
        counts = hold.groupby("customer").size()
        summary["frequency_holdout"] = counts.reindex(summary.index, fill_value=0).astype(float)
        obs_period = int(_periods(pd.Series([obs_end]), period)[0])
        summary["duration_holdout"] = float(obs_period - end_period)
    summary.index.name = customer_col
    return summary


def _utc(values: pd.Series, field: str) -> pd.Series:
    """Timestamps as naive UTC; InvalidInput when they do not parse or are missing."""
    try:
        times = pd.to_datetime(values)
    except (ValueError, TypeError):
        raise InvalidInput("times must be timestamps", field=field) from None
    if times.isna().any():
        raise InvalidInput("times must not be missing", field=field)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times


def _timestamp(value: str | pd.Timestamp, which: str) -> pd.Timestamp:
    """A calibration or observation end as a naive UTC timestamp."""
    field = "calibration_end" if which == "cal" else "observation_end"
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InvalidInput(f"{field} must be a timestamp", field=field) from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def _periods(times: pd.Series, period: Period) -> np.ndarray:
    """Whole periods since the epoch: days, or Monday-based weeks (1970-01-01 was a Thursday)."""
    days = times.to_numpy().astype("datetime64[D]").astype(np.int64)
    return days if period == "day" else (days + 3) // 7


__all__ = ["Period", "summary_from_transactions"]
