"""CLV benchmark: BG/NBD + Gamma-Gamma fit and per-customer predictions, ours vs lifetimes.

N synthetic customers are drawn from the BG/NBD and Gamma-Gamma generative processes
(a year of daily data, first purchases spread over the year, recency and T in whole
days as a daily summary has them). Both libraries fit BG/NBD and Gamma-Gamma on the same
summary, then predict expected purchases over 30 days, P(alive), expected order value and
a 12-month CLV. lifetimes is timed on a 100k subsample, and on all N customers as well when
that subsample says it would take under `lifetimes_budget` seconds.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from touchpoints.models.clv import (
    customer_lifetime_value,
    fit_bgnbd,
    fit_gamma_gamma,
    predict,
)

TRUE = {"r": 0.25, "alpha": 20.0, "a": 0.8, "b": 2.5, "p": 6.0, "q": 4.0, "gamma": 15.0}


def synthetic_summary(customers: int, seed: int = 7) -> pd.DataFrame:
    """A daily RFM summary drawn from BG/NBD (purchases) and Gamma-Gamma (spend)."""
    rng = np.random.default_rng(seed)
    T = rng.integers(1, 366, customers).astype(float)
    lam = rng.gamma(TRUE["r"], 1.0 / TRUE["alpha"], customers)
    drop = rng.beta(TRUE["a"], TRUE["b"], customers)
    purchases = rng.poisson(lam * T)
    x = np.minimum(purchases, rng.geometric(drop))
    last = T * rng.beta(np.maximum(x, 1), purchases - x + 1)
    recency = np.where(x > 0, np.floor(last), 0.0)
    nu = rng.gamma(TRUE["q"], 1.0 / TRUE["gamma"], customers)
    mean_spend = rng.gamma(TRUE["p"] * np.maximum(x, 1), 1.0 / (nu * np.maximum(x, 1)))
    return pd.DataFrame(
        {
            "frequency": x.astype(float),
            "recency": recency,
            "T": T,
            "monetary_value": np.where(x > 0, mean_spend, 0.0),
        }
    )


def _ours(summary: pd.DataFrame) -> dict[str, Any]:
    """Fit and predict with touchpoints.models.clv; seconds per step."""
    start = time.perf_counter()
    bg = fit_bgnbd(summary)
    fitted_bg = time.perf_counter()
    gg = fit_gamma_gamma(summary)
    fitted = time.perf_counter()
    predict(bg, summary, 30.0, gg)
    customer_lifetime_value(bg, gg, summary, horizon=12, discount_rate=0.01, step=30.0)
    done = time.perf_counter()
    return {
        "fit_bgnbd_s": fitted_bg - start,
        "fit_gamma_gamma_s": fitted - fitted_bg,
        "predict_s": done - fitted,
        "total_s": done - start,
        "params": bg.params | gg.params,
    }


def _lifetimes(summary: pd.DataFrame) -> dict[str, Any]:
    """The same steps with lifetimes' fitters and prediction methods."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    x, tx, tt, m = (summary[c] for c in ("frequency", "recency", "T", "monetary_value"))
    repeat = x > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        bg = BetaGeoFitter().fit(x, tx, tt)
        fitted_bg = time.perf_counter()
        gg = GammaGammaFitter().fit(x[repeat], m[repeat])
        fitted = time.perf_counter()
        bg.conditional_expected_number_of_purchases_up_to_time(30.0, x, tx, tt)
        bg.conditional_probability_alive(x, tx, tt)
        gg.conditional_expected_average_profit(x, m)
        gg.customer_lifetime_value(bg, x, tx, tt, m, time=12, discount_rate=0.01, freq="D")
        done = time.perf_counter()
    params = {k: float(v) for k, v in bg.params_.items()} | {
        "p": float(gg.params_["p"]),
        "q": float(gg.params_["q"]),
        "gamma": float(gg.params_["v"]),
    }
    return {
        "fit_bgnbd_s": fitted_bg - start,
        "fit_gamma_gamma_s": fitted - fitted_bg,
        "predict_s": done - fitted,
        "total_s": done - start,
        "params": params,
    }


def run(customers: int = 1_000_000, lifetimes_budget: float = 180.0) -> dict:
    """Time ours on `customers` and 100k customers, lifetimes on 100k (and on all when cheap).

    Returns seconds per step, the fitted parameters beside the true ones, and speed ratios.
    """
    summary = synthetic_summary(customers)
    sample = summary.iloc[: min(customers, 100_000)]
    distinct = len(summary[["frequency", "recency", "T"]].drop_duplicates())
    ours_full = _ours(summary)
    ours_sample = _ours(sample)
    theirs_sample = _lifetimes(sample)
    figures: dict[str, Any] = {
        "customers": customers,
        "distinct_rows": distinct,
        "true_params": TRUE,
        "ours_params": ours_full["params"],
        "ours_total_s": round(ours_full["total_s"], 3),
        "ours_fit_bgnbd_s": round(ours_full["fit_bgnbd_s"], 3),
        "ours_fit_gamma_gamma_s": round(ours_full["fit_gamma_gamma_s"], 3),
        "ours_predict_s": round(ours_full["predict_s"], 3),
        "sample_customers": len(sample),
        "ours_sample_total_s": round(ours_sample["total_s"], 3),
        "lifetimes_sample_total_s": round(theirs_sample["total_s"], 3),
        "lifetimes_sample_fit_bgnbd_s": round(theirs_sample["fit_bgnbd_s"], 3),
        "lifetimes_sample_predict_s": round(theirs_sample["predict_s"], 3),
        "speedup_sample": round(theirs_sample["total_s"] / ours_sample["total_s"], 1),
    }
    estimate = theirs_sample["total_s"] * customers / len(sample)
    if customers > len(sample) and estimate <= lifetimes_budget:
        theirs_full = _lifetimes(summary)
        figures["lifetimes_total_s"] = round(theirs_full["total_s"], 3)
        figures["lifetimes_params"] = theirs_full["params"]
        figures["speedup"] = round(theirs_full["total_s"] / ours_full["total_s"], 1)
    elif customers > len(sample):
        figures["lifetimes_total_s"] = None
        figures["lifetimes_estimated_total_s"] = round(estimate, 1)
    return figures


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000), indent=2))
