"""Customer lifetime value: BG/NBD, Pareto/NBD and Gamma-Gamma fitted by maximum likelihood.

Models (each fitted on an RFM summary, see `touchpoints.models.clv_summary`):

- BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): purchases
  follow a Poisson process with rate λ ~ Gamma(r, α); after each repeat purchase the
  customer drops out with probability p ~ Beta(a, b).
- Pareto/NBD (Schmittlein, Morrison & Colombo 1987; likelihood as written in Fader &
  Hardie's 2005 note "A note on deriving the Pareto/NBD model and related expressions"):
  the same purchase process, with an exponential lifetime of rate μ ~ Gamma(s, β).
- Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"): a customer's spend per
  transaction is Gamma(p, ν) with ν ~ Gamma(q, γ), independent of the purchase process.

Everything is computed in log space with `scipy.special` (gammaln, betaln, hyp2f1 after an
Euler transformation that keeps its argument and value bounded) so customers with hundreds
of purchases stay finite. Identical (frequency, recency, T) rows are grouped and weighted,
so the likelihood is evaluated once per distinct row rather than once per customer.

CLV over a horizon of H steps (a step is e.g. a month) with a per-step discount rate d:

    CLV_i = Σ_{k=1..H} AOV_i · (E[Y_i(k·Δ)] − E[Y_i((k−1)·Δ)]) / (1 + d)^k

where Δ is the length of one step in the summary's periods (30 for days and a month,
≈4.345 for weeks and a month), E[Y_i(t)] the expected purchases of customer i in the next t
periods (conditional on their history) and AOV_i the Gamma-Gamma conditional expected
average order value. Purchases of the k-th step are discounted by k whole steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1, logsumexp

from touchpoints.errors import InvalidInput

Summary = pd.DataFrame | Mapping[str, ArrayLike]
FloatArray = NDArray[np.float64]

MIN_CUSTOMERS = 10
"""Fewest customers (Gamma-Gamma: repeat customers) a fit accepts: 3-4 parameters need data."""

DAYS_PER_MONTH = 30.0
WEEKS_PER_MONTH = 4.345
"""Model periods per monthly step, for `customer_lifetime_value(step=...)`."""


# --------------------------------------------------------------------------- results


class _CountModel:
    """What BG/NBD and Pareto/NBD share: expected purchases are P(alive) times the
    purchases of a customer still alive (each model's `_if_alive`), grouped by row."""

    def expected_purchases(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[purchases in (T, T+t] | x, t_x, T]: BG/NBD eq. (10), hyp2f1 Euler-transformed;
        Pareto/NBD eq. (21) of Fader & Hardie's note."""
        x, tx, tt = _arrays(frequency, recency, T)
        tv = _horizon(t, x.shape)
        return self.probability_alive(x, tx, tt) * _grouped(self._if_alive, x, tt, tv)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class BGNBDFit(_CountModel):
    """A fitted BG/NBD model: the papers' parameters, the log-likelihood and predictions."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int
    holdout_mae: float | None = None

    @property
    def params(self) -> dict[str, float]:
        """The parameters by their names in Fader, Hardie & Lee (2005)."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    def probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(customer still active at T | x, t_x, T): eq. (13) of the paper."""
        x, tx, tt = _arrays(frequency, recency, T)
        return np.exp(-_bg_log_odds_dead(self, x, tx, tt))

    def _if_alive(self, x: FloatArray, tt: FloatArray, t: FloatArray) -> FloatArray:
        """Expected purchases in (T, T+t] for a customer still alive: eq. (10)'s numerator.

        With c = a+b+x−1 and z = t/(α+T+t), the paper's ((α+T)/(α+T+t))^{r+x}·2F1(r+x, b+x;
        c; z) is, by Pfaff's transformation, 2F1(r+x, a−1; c; −t/(α+T)): no huge powers, so no
        overflow for large x. Where that argument is below −1 (t > α+T), Euler's form
        (1−z)^{a−1}·2F1(a+b−1−r, a−1; c; z) is used. (Like the paper's, 0/0 at a = 1 exactly.)
        """
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        w = -t / (alpha + tt)
        c = a + b + x - 1
        near = w >= -1.0
        with np.errstate(all="ignore"):
            pfaff = hyp2f1(r + x, a - 1, c, np.where(near, w, 0.0))
            z = t / (alpha + tt + t)
            euler = np.exp((a - 1) * np.log1p(-z)) * hyp2f1(a + b - 1 - r, a - 1, c, z)
        tail = np.where(near, pfaff, euler)
        value = c / (a - 1) * (1.0 - tail)
        bad = ~np.isfinite(value)
        if bad.any():  # SciPy's hyp2f1 gives up when a and b run off to millions
            xb, zb = x[bad], z[bad]
            log_head = (r + xb) * np.log1p(-zb)  # ((α+T)/(α+T+t))^{r+x}
            series = _hyp2f1_series(r + xb, b + xb, c[bad], zb)
            value[bad] = c[bad] / (a - 1) * -np.expm1(log_head + np.log(series))
        return value


@dataclass(frozen=True)
class ParetoNBDFit(_CountModel):
    """A fitted Pareto/NBD model: the papers' parameters, the log-likelihood and predictions."""

    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float
    customers: int
    holdout_mae: float | None = None

    @property
    def params(self) -> dict[str, float]:
        """The parameters by their names in Schmittlein et al. (1987) / Fader & Hardie."""
        return {"r": self.r, "alpha": self.alpha, "s": self.s, "beta": self.beta}

    def probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(customer still active at T | x, t_x, T) (Fader & Hardie's note, eq. 18)."""
        x, tx, tt = _arrays(frequency, recency, T)
        return _grouped(lambda *c: np.exp(_pareto_log_alive(self, *c)), x, tx, tt)

    def _if_alive(self, x: FloatArray, tt: FloatArray, t: FloatArray) -> FloatArray:
        """(r+x)(β+T)/((α+T)(s−1))·[1 − ((β+T)/(β+T+t))^{s−1}]; a log in the s → 1 limit."""
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        log_ratio = np.log(beta + tt + t) - np.log(beta + tt)
        if abs(s - 1.0) < 1e-10:
            growth = log_ratio
        else:
            growth = -np.expm1(-(s - 1.0) * log_ratio) / (s - 1.0)
        return (r + x) * (beta + tt) / (alpha + tt) * growth


@dataclass(frozen=True)
class GammaGammaFit:
    """A fitted Gamma-Gamma spend model: p, q, gamma and the log-likelihood."""

    p: float
    q: float
    gamma: float
    log_likelihood: float
    customers: int

    @property
    def params(self) -> dict[str, float]:
        """The parameters by their names in Fader, Hardie & Lee (2005), "RFM and CLV"."""
        return {"p": self.p, "q": self.q, "gamma": self.gamma}

    @property
    def population_mean(self) -> float:
        """Mean spend per transaction across customers, p·γ/(q−1) (infinite when q ≤ 1)."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else float("inf")

    def expected_average_value(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        """E[M | x, m_x] = p(γ + x·m_x)/(p·x + q − 1): shrinks m_x towards the mean.

        Customers without repeat purchases (x = 0) get the population mean.
        """
        x = np.asarray(frequency, dtype=float)
        m = np.where(x > 0, np.asarray(monetary_value, dtype=float), 0.0)
        return self.p * (self.gamma + x * m) / (self.p * x + self.q - 1)


CountModel = BGNBDFit | ParetoNBDFit


# --------------------------------------------------------------------------- fitting


def fit_bgnbd(summary: Summary) -> BGNBDFit:
    """Fit BG/NBD by maximum likelihood (analytic gradient, L-BFGS-B on log parameters).

    `summary` has columns frequency, recency, T; with frequency_holdout and duration_holdout
    too, the fit reports the mean absolute error of its holdout purchase predictions.
    """
    x, tx, tt = _validated(summary)
    (x, tx, tt), w, _ = _group(x, tx, tt)
    scale = 10.0 / max(float(tt.max()), 1e-12)  # alpha near 1 keeps the problem well-scaled
    txs, tts = tx * scale, tt * scale
    total = float(w.sum())

    levels = _levels(x, w)

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = _bg_loglik(np.exp(theta), levels, txs, tts, w)
        return -ll / total, -grad * np.exp(theta) / total

    r, alpha, a, b = np.exp(_minimize(objective, np.zeros(4), jac=True))
    alpha /= scale
    ll = _bg_loglik(np.array([r, alpha, a, b]), levels, tx, tt, w)[0]
    fit = BGNBDFit(float(r), float(alpha), float(a), float(b), ll, int(total))
    return _with_holdout(fit, summary)


def fit_pareto_nbd(summary: Summary) -> ParetoNBDFit:
    """Fit Pareto/NBD by maximum likelihood (Nelder-Mead then L-BFGS-B on log parameters).

    Same input and holdout behaviour as `fit_bgnbd`.
    """
    x, tx, tt = _validated(summary)
    (x, tx, tt), w, _ = _group(x, tx, tt)
    scale = 10.0 / max(float(tt.max()), 1e-12)
    txs, tts = tx * scale, tt * scale
    total = float(w.sum())

    def objective(theta: FloatArray) -> float:
        value = -_dot(w, _pareto_loglik(np.exp(theta), x, txs, tts)) / total
        return value if np.isfinite(value) else 1e10

    rough = minimize(
        objective,
        np.zeros(4),
        method="Nelder-Mead",
        options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 4000},
    )
    r, alpha, s, beta = np.exp(_minimize(objective, rough.x, jac=False))
    alpha, beta = alpha / scale, beta / scale
    ll = _dot(w, _pareto_loglik(np.array([r, alpha, s, beta]), x, tx, tt))
    fit = ParetoNBDFit(float(r), float(alpha), float(s), float(beta), ll, int(total))
    return _with_holdout(fit, summary)


def fit_gamma_gamma(summary: Summary) -> GammaGammaFit:
    """Fit Gamma-Gamma on the customers with repeat purchases (frequency > 0).

    `summary` has columns frequency and monetary_value (mean value of repeat purchases).
    """
    x, _, _ = _validated(summary, columns=("frequency",), min_customers=0)
    m = _column(summary, "monetary_value")
    repeat = x > 0
    if int(repeat.sum()) < MIN_CUSTOMERS:
        raise InvalidInput(
            f"Gamma-Gamma needs at least {MIN_CUSTOMERS} customers with repeat purchases,"
            f" got {int(repeat.sum())}",
            field="frequency",
        )
    x, m = x[repeat], m[repeat]
    if np.any(m <= 0):
        raise InvalidInput(
            "monetary_value must be positive for customers with repeat purchases",
            field="monetary_value",
        )
    scale = 1.0 / float(m.mean())
    ms = m * scale
    n = float(len(x))

    levels = _levels(x, np.ones_like(x))

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        ll, grad = _gg_loglik(np.exp(theta), levels, ms)
        return -ll / n, -grad * np.exp(theta) / n

    p, q, gamma = np.exp(_minimize(objective, np.zeros(3), jac=True))
    gamma /= scale
    ll = _gg_loglik(np.array([p, q, gamma]), levels, m)[0]
    return GammaGammaFit(float(p), float(q), float(gamma), ll, int(n))


# --------------------------------------------------------------------------- per customer


def predict(
    model: CountModel, summary: Summary, t: float, spend: GammaGammaFit | None = None
) -> pd.DataFrame:
    """Per customer: expected purchases in the next `t` periods, P(alive), and with a
    Gamma-Gamma model the expected average order value. Keeps the summary's index."""
    x, tx, tt = _validated(summary, min_customers=0)
    out = pd.DataFrame(
        {
            "expected_purchases": model.expected_purchases(t, x, tx, tt),
            "probability_alive": model.probability_alive(x, tx, tt),
        },
        index=getattr(summary, "index", None),
    )
    if spend is not None:
        out["expected_average_value"] = spend.expected_average_value(
            x, _column(summary, "monetary_value")
        )
    return out


def customer_lifetime_value(
    model: CountModel,
    spend: GammaGammaFit,
    summary: Summary,
    *,
    horizon: int = 12,
    discount_rate: float = 0.01,
    step: float = DAYS_PER_MONTH,
) -> FloatArray:
    """Discounted value of each customer's purchases over `horizon` steps (see module doc).

    `step` is one discounting step in the summary's periods (DAYS_PER_MONTH for a daily
    summary and monthly discounting, WEEKS_PER_MONTH for a weekly one); `discount_rate` is
    per step (0.01 a month is about 12.7% a year).
    """
    if horizon < 0 or step <= 0 or discount_rate <= -1:
        raise InvalidInput("horizon must be ≥ 0, step > 0 and discount_rate > -1", field="horizon")
    x, tx, tt = _validated(summary, min_customers=0)
    aov = spend.expected_average_value(x, _column(summary, "monetary_value"))
    # E[Y(t)] = P(alive) · (purchases if alive), the latter a function of (x, T, t) only
    (ux, utt), _, inverse = _group(x, tt)
    value = np.zeros(len(ux))
    previous = np.zeros(len(ux))
    for k in range(1, horizon + 1):
        current = model._if_alive(ux, utt, np.full(len(ux), k * step))
        value += (current - previous) / (1.0 + discount_rate) ** k
        previous = current
    return aov * model.probability_alive(x, tx, tt) * value[inverse]


# --------------------------------------------------------------------------- BG/NBD maths


def _levels(x: FloatArray, w: FloatArray) -> tuple[FloatArray, NDArray[np.intp], FloatArray]:
    """Distinct frequencies, each row's index into them, and their summed weights.

    Frequencies take few values, so the special functions of x are computed once per value.
    """
    codes, values = pd.factorize(x)
    return np.asarray(values, dtype=float), codes, np.bincount(codes, weights=w)


def _bg_loglik(
    params: FloatArray,
    levels: tuple[FloatArray, NDArray[np.intp], FloatArray],
    tx: FloatArray,
    tt: FloatArray,
    w: FloatArray,
) -> tuple[float, FloatArray]:
    """Weighted BG/NBD log-likelihood (FHL 2005 eq. 6) and its gradient in (r, α, a, b)."""
    r, alpha, a, b = params
    ux, idx, weight = levels
    uxm = np.maximum(ux, 1.0)  # keeps the x = 0 branch's betaln/digamma defined; masked
    x = ux[idx]
    rx = r + x
    log_t = np.log(alpha + tt)
    log_tx = np.log(alpha + tx)
    first = betaln(a, b + ux)[idx] - rx * log_t
    second = np.where(ux > 0, betaln(a + 1, b + uxm - 1), -np.inf)[idx] - rx * log_tx
    both = np.logaddexp(first, second)
    per_level = gammaln(r + ux) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    ll = _dot(weight, per_level) + _dot(w, both)
    share = w * np.exp(second - both)  # weighted share of the "dropped out after t_x" branch
    keep = w - share
    psi_abx = digamma(a + b + ux)
    d_r = _dot(weight, digamma(r + ux) - digamma(r) + np.log(alpha))
    d_r -= _dot(keep, log_t) + _dot(share, log_tx)
    d_alpha = r / alpha * weight.sum()
    d_alpha -= _dot(keep * rx, 1.0 / (alpha + tt)) + _dot(share * rx, 1.0 / (alpha + tx))
    d_a = _dot(weight, digamma(a + b) - psi_abx) + share.sum() / a  # ψ(a+1) − ψ(a) = 1/a
    step_b = np.where(ux > 0, digamma(b + uxm - 1) - digamma(b + ux), 0.0)
    d_b = _dot(weight, digamma(a + b) - digamma(b) + digamma(b + ux) - psi_abx)
    d_b += _dot(share, step_b[idx])
    return ll, np.array([d_r, d_alpha, d_a, d_b])


def _bg_log_odds_dead(fit: BGNBDFit, x: FloatArray, tx: FloatArray, tt: FloatArray) -> FloatArray:
    """log(1 + δ_{x>0}·a/(b+x−1)·((α+T)/(α+t_x))^{r+x}), i.e. −log P(alive)."""
    xm = np.maximum(x, 1.0)
    log_ratio = (
        np.log(fit.a)
        - np.log(fit.b + xm - 1)
        + (fit.r + x) * (np.log(fit.alpha + tt) - np.log(fit.alpha + tx))
    )
    return np.logaddexp(0.0, np.where(x > 0, log_ratio, -np.inf))


# --------------------------------------------------------------------------- Pareto/NBD maths


def _hyp2f1_series(
    a: FloatArray, b: FloatArray, c: FloatArray, z: FloatArray, terms: int = 4000
) -> FloatArray:
    """Gauss's series Σ (a)_n (b)_n / ((c)_n n!) zⁿ for 0 <= z < 1, summed in log space in
    chunks of rows; the fallback for parameters where `scipy.special.hyp2f1` fails."""
    n = np.arange(terms, dtype=float)
    out = np.empty(len(a))
    for lo in range(0, len(a), 256):
        sl = slice(lo, lo + 256)
        ratio = (
            np.log(a[sl, None] + n) + np.log(b[sl, None] + n) - np.log(c[sl, None] + n)
            - np.log1p(n) + np.log(z[sl, None])
        )  # fmt: skip
        log_terms = np.concatenate([np.zeros((ratio.shape[0], 1)), np.cumsum(ratio, 1)[:, :-1]], 1)
        out[sl] = np.exp(logsumexp(log_terms, axis=1))
    return out


def _log1mexp(d: FloatArray) -> FloatArray:
    """log(1 − e^d) for d ≤ 0, accurate near 0 and for very negative d."""
    d = np.minimum(d, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(d > -np.log(2.0), np.log(-np.expm1(d)), np.log1p(-np.exp(d)))


def _pareto_log_a0(
    r: float, alpha: float, s: float, beta: float, x: FloatArray, tx: FloatArray, tt: FloatArray
) -> FloatArray:
    """log A0 of Fader & Hardie's Pareto/NBD likelihood (−inf when t_x = T).

    A0 = F(t_x) − F(T) with F(y) = 2F1(r+s+x, b; r+s+x+1; z(y)) / (max(α,β)+y)^{r+s+x}.
    Euler's transformation turns the 2F1 into 2F1(1, b; r+s+x+1; z/(z−1)), whose argument
    is ≤ 0 and value in (0, 1], so F is evaluated as a sum of logs without overflow.
    """
    rho = r + s + x
    if alpha >= beta:
        big, small, b_arg = alpha, beta, s + 1.0
    else:
        big, small, b_arg = beta, alpha, r + x

    other = rho - b_arg

    def log_f(y: FloatArray) -> FloatArray:
        w = -(big - small) / (small + y)
        return (
            -rho * np.log(big + y)
            - b_arg * (np.log(small + y) - np.log(big + y))
            + _log_hyp2f1_one(b_arg, other, w)
        )

    at_tx, at_t = log_f(tx), log_f(tt)
    return at_tx + _log1mexp(at_t - at_tx)


def _log_hyp2f1_one(b: FloatArray, other: FloatArray, w: FloatArray) -> FloatArray:
    """log 2F1(1, b; b+other+1; w) for w ≤ 0, a value in (0, 1].

    For w < −1 (where scipy's series can fail for large parameters) Pfaff's transformation
    gives (1−w)^{-1}·2F1(1, other+1; b+other+1; w/(w−1)), whose argument lies in (1/2, 1).
    """
    b, other, w = np.broadcast_arrays(b, other, w)
    c = b + other + 1.0
    far = w < -1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        near = np.log(hyp2f1(1.0, b, c, np.where(far, 0.0, w)))
        pfaff = -np.log1p(-w) + np.log(hyp2f1(1.0, other + 1.0, c, w / (w - 1.0)))
    return np.where(far, pfaff, near)


def _pareto_parts(
    params: FloatArray, x: FloatArray, tx: FloatArray, tt: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The two log terms of the bracket in the Pareto/NBD likelihood (alive, dropped out)."""
    r, alpha, s, beta = params
    alive = -(r + x) * np.log(alpha + tt) - s * np.log(beta + tt)
    dead = np.log(s) - np.log(r + s + x) + _pareto_log_a0(r, alpha, s, beta, x, tx, tt)
    return alive, dead


def _pareto_loglik(params: FloatArray, x: FloatArray, tx: FloatArray, tt: FloatArray) -> FloatArray:
    """Per-row Pareto/NBD log-likelihood (Fader & Hardie's note, eq. 19) in log space."""
    r, alpha, s, beta = params
    alive, dead = _pareto_parts(params, x, tx, tt)
    both = logsumexp(np.vstack([alive, dead]), axis=0)
    return gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta) + both


def _pareto_log_alive(
    fit: ParetoNBDFit, x: FloatArray, tx: FloatArray, tt: FloatArray
) -> FloatArray:
    """log P(alive | x, t_x, T): the alive term's share of the likelihood bracket."""
    params = np.array([fit.r, fit.alpha, fit.s, fit.beta])
    alive, dead = _pareto_parts(params, x, tx, tt)
    return alive - np.logaddexp(alive, dead)


# --------------------------------------------------------------------------- Gamma-Gamma maths


def _gg_loglik(
    params: FloatArray, levels: tuple[FloatArray, NDArray[np.intp], FloatArray], m: FloatArray
) -> tuple[float, FloatArray]:
    """Gamma-Gamma log-likelihood of the mean spends m over x transactions, and its gradient.

    Per customer: lnΓ(px+q) − lnΓ(px) − lnΓ(q) + q·lnγ + (px−1)·ln(x·m) + ln x
    − (px+q)·ln(γ + x·m), the density of m_x in FHL's "RFM and CLV".
    """
    p, q, gamma = params
    ux, idx, count = levels
    x = ux[idx]
    total = x * m
    log_total = np.log(total)
    log_denominator = np.log(gamma + total)
    pux = p * ux
    per_level = gammaln(pux + q) - gammaln(pux) - gammaln(q) + q * np.log(gamma) + np.log(ux)
    weight_x = _dot(x, log_total)
    ll = _dot(count, per_level) + p * weight_x - float(log_total.sum())
    ll -= _dot(p * x + q, log_denominator)
    psi = digamma(pux + q)
    d_p = _dot(count, ux * (psi - digamma(pux))) + weight_x - _dot(x, log_denominator)
    d_q = _dot(count, psi - digamma(q) + np.log(gamma)) - float(log_denominator.sum())
    d_gamma = q / gamma * count.sum() - _dot(p * x + q, 1.0 / (gamma + total))
    return ll, np.array([d_p, d_q, d_gamma])


# --------------------------------------------------------------------------- plumbing


def _dot(left: FloatArray, right: FloatArray) -> float:
    """Σ left·right without BLAS (whose ddot is slow on some CPU/OpenBLAS combinations)."""
    return float(np.multiply(left, right).sum())


def _minimize(fun: Callable[..., Any], start: FloatArray, *, jac: bool) -> FloatArray:
    """L-BFGS-B on log parameters with tight tolerances (the papers report 3-4 digits)."""
    result = minimize(
        fun,
        start,
        jac=jac,
        method="L-BFGS-B",
        bounds=[(-20.0, 20.0)] * len(start),
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-9},
    )
    if not np.all(np.isfinite(result.x)):
        raise InvalidInput("the likelihood could not be maximised on this data", field="frequency")
    return result.x


def _with_holdout(fit: Any, summary: Summary) -> Any:
    """Attach the holdout mean absolute error when the summary carries a holdout period."""
    columns = set(summary.keys()) if isinstance(summary, Mapping) else set(summary.columns)
    if not {"frequency_holdout", "duration_holdout"} <= columns:
        return fit
    x, tx, tt = _validated(summary, min_customers=0)
    actual = _column(summary, "frequency_holdout")
    duration = _column(summary, "duration_holdout")
    predicted = fit.expected_purchases(duration, x, tx, tt)
    values = asdict(fit) | {"holdout_mae": float(np.mean(np.abs(predicted - actual)))}
    return type(fit)(**values)


def _column(summary: Summary, name: str) -> FloatArray:
    """One summary column as float64, or InvalidInput naming it when missing or not numeric."""
    try:
        values = summary[name]
    except (KeyError, IndexError, TypeError):
        raise InvalidInput(f"the summary has no column {name!r}", field=name) from None
    try:
        array = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInput(f"column {name!r} must be numeric", field=name) from None
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"column {name!r} has missing or infinite values", field=name)
    return array


def _validated(
    summary: Summary,
    columns: tuple[str, ...] = ("frequency", "recency", "T"),
    min_customers: int = MIN_CUSTOMERS,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """frequency, recency, T as arrays, checked; InvalidInput(field=...) on bad input."""
    x = _column(summary, "frequency")
    if np.any(x < 0):
        raise InvalidInput("frequency must be ≥ 0", field="frequency")
    if np.any(x != np.floor(x)):
        raise InvalidInput(
            "frequency must be a whole number of repeat purchases", field="frequency"
        )
    if len(x) < min_customers:
        raise InvalidInput(
            f"need at least {min_customers} customers to fit, got {len(x)}", field="frequency"
        )
    if "recency" not in columns:
        return x, np.zeros_like(x), np.zeros_like(x)
    tx, tt = _column(summary, "recency"), _column(summary, "T")
    if not len(x) == len(tx) == len(tt):
        raise InvalidInput("frequency, recency and T differ in length", field="recency")
    _check_rft(x, tx, tt)
    if min_customers and not np.any(x > 0):
        raise InvalidInput("no customer has a repeat purchase: nothing to fit", field="frequency")
    return x, tx, tt


def _check_rft(x: FloatArray, tx: FloatArray, tt: FloatArray) -> None:
    """The RFM invariants: 0 ≤ recency ≤ T, and recency = 0 without repeat purchases."""
    if np.any(tx < 0):
        raise InvalidInput("recency must be ≥ 0", field="recency")
    if np.any(tx > tt):
        raise InvalidInput("recency must not exceed T", field="recency")
    if np.any((x == 0) & (tx != 0)):
        raise InvalidInput(
            "recency must be 0 for customers without repeat purchases", field="recency"
        )


def _arrays(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> tuple[FloatArray, ...]:
    """Validated float arrays for the per-customer prediction methods."""
    summary = {"frequency": frequency, "recency": recency, "T": T}
    x, tx, tt = (_column(summary, name) for name in summary)
    if np.any(x < 0):
        raise InvalidInput("frequency must be ≥ 0", field="frequency")
    x, tx, tt = np.broadcast_arrays(x, tx, tt)
    _check_rft(x, tx, tt)
    return x, tx, tt


def _horizon(t: ArrayLike, shape: tuple[int, ...]) -> FloatArray:
    """The prediction horizon broadcast to one value per customer; must be ≥ 0."""
    tv = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(tv)) or np.any(tv < 0):
        raise InvalidInput("t must be finite and ≥ 0", field="t")
    return np.broadcast_to(tv, shape).astype(float)


def _group(*columns: FloatArray) -> tuple[tuple[FloatArray, ...], FloatArray, NDArray[np.intp]]:
    """Distinct rows of the columns, their counts as weights, and each row's group (hashing)."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(column)
        key, _ = pd.factorize(key * len(uniques) + codes)
    groups = int(key.max()) + 1 if len(key) else 0
    first = np.empty(groups, dtype=np.intp)
    first[key[::-1]] = np.arange(len(key) - 1, -1, -1)
    weights = np.bincount(key, minlength=groups).astype(float)
    return tuple(c[first] for c in columns), weights, key


def _grouped(fn: Callable[..., FloatArray], *columns: FloatArray) -> FloatArray:
    """Evaluate fn once per distinct row of the columns and spread the result back."""
    uniques, _, inverse = _group(*columns)
    return np.asarray(fn(*uniques), dtype=float)[inverse]


__all__ = [
    "DAYS_PER_MONTH",
    "MIN_CUSTOMERS",
    "WEEKS_PER_MONTH",
    "BGNBDFit",
    "GammaGammaFit",
    "ParetoNBDFit",
    "customer_lifetime_value",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "fit_pareto_nbd",
    "predict",
]
