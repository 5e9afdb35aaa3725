"""Experiment statistics on sufficient statistics only (n, sums, sums of squares and cross
sums), so the warehouse aggregates in SQL and nothing here knows about engines.

Each variant is compared with control on one metric (see docs/experiments.md):

- the effect: absolute (difference of means) and relative (the difference over the
  control mean, its variance by the delta method), with CUPED (Deng et al. 2013) when a
  pre-exposure covariate is given and the delta method for ratio metrics;
- frequentist: Welch's t-test for means, the two-proportion z-test for conversions;
- sequential: the asymptotic confidence sequence of Waudby-Smith et al. (2023, eq. 9;
  Howard et al. 2021), valid at every look;
- Bayesian: the normal approximation with a flat prior, as GrowthBook's `gbstats`.

Formulas follow `gbstats` 0.8 so that the two can be checked against each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

#: The total sample size (both arms) at which the confidence sequence is tightest
#: (GrowthBook's default): looks near it lose least width against a fixed-horizon test.
SEQUENTIAL_TUNING = 5000.0


@dataclass(frozen=True)
class Arm:
    """One variant's sufficient statistics for one metric over its `n` units: the value
    (`sum`, `sum_sq`); for a ratio the denominator (`den_sum`, `den_sum_sq`, `cross` =
    Σ value·den); for CUPED the covariate (`pre_sum`, `pre_sum_sq`, `pre_cross` =
    Σ value·pre)."""

    n: int
    sum: float
    sum_sq: float
    den_sum: float | None = None
    den_sum_sq: float | None = None
    cross: float | None = None
    pre_sum: float | None = None
    pre_sum_sq: float | None = None
    pre_cross: float | None = None

    @property
    def is_ratio(self) -> bool:
        return self.den_sum is not None

    @property
    def mean(self) -> float:
        """The mean per unit, or Σ value / Σ denominator for a ratio."""
        if self.is_ratio:
            return self.sum / self.den_sum if self.den_sum else 0.0  # type: ignore[operator]
        return self.sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The variance of one unit's value (sample, n-1); for a ratio the delta-method
        variance of the ratio scaled to one unit, so that variance / n is its error."""
        if not self.is_ratio:
            return _var(self.n, self.sum, self.sum_sq)
        den_sum, den_sq, cross = self.den_sum, self.den_sum_sq, self.cross
        assert den_sum is not None and den_sq is not None and cross is not None
        mean_d = den_sum / self.n if self.n else 0.0
        if mean_d == 0 or self.n <= 1:
            return 0.0
        mean_x = self.sum / self.n
        var_x, var_d = _var(self.n, self.sum, self.sum_sq), _var(self.n, den_sum, den_sq)
        cov = _cov(self.n, self.sum, den_sum, cross)
        return var_x / mean_d**2 - 2 * cov * mean_x / mean_d**3 + mean_x**2 * var_d / mean_d**4


def _var(n: int, total: float, squares: float) -> float:
    return max((squares - total * total / n) / (n - 1), 0.0) if n > 1 else 0.0


def _cov(n: int, a: float, b: float, products: float) -> float:
    return (products - a * b / n) / (n - 1) if n > 1 else 0.0


@dataclass(frozen=True)
class Effect:
    """A variant against control: the (CUPED-adjusted) means and their variances (the
    squared standard errors), both unadjusted means (relative effects are over the
    control's, as gbstats) and Welch–Satterthwaite degrees of freedom."""

    mean_a: float
    mean_b: float
    var_a: float
    var_b: float
    base: float
    base_b: float
    dof: float
    theta: float = 0.0

    @property
    def absolute(self) -> float:
        return self.mean_b - self.mean_a

    @property
    def absolute_var(self) -> float:
        return self.var_a + self.var_b

    @property
    def relative(self) -> float:
        return self.absolute / self.base if self.base else math.nan

    @property
    def relative_var(self) -> float:
        """Delta method for (b - a) / a: Var(b)/a² + Var(a)·b²/a⁴."""
        if not self.base:
            return math.nan
        return self.var_b / self.base**2 + self.var_a * self.base_b**2 / self.base**4


def effect(control: Arm, treatment: Arm, cuped: bool = True) -> Effect:
    """The effect of `treatment` over `control`; CUPED (one θ pooled over both arms, as
    Deng et al. and gbstats) when both carry a covariate with variance."""
    var_a, var_b = control.variance, treatment.variance
    mean_a, mean_b, theta = control.mean, treatment.mean, 0.0
    if cuped and control.pre_sum is not None and treatment.pre_sum is not None:
        theta = _theta(control, treatment)
        if theta:
            (mean_a, var_a), (mean_b, var_b) = (
                _adjusted(control, theta),
                _adjusted(treatment, theta),
            )
    se_a = var_a / control.n if control.n else math.inf
    se_b = var_b / treatment.n if treatment.n else math.inf
    dof = _welch_dof(se_a, se_b, control.n, treatment.n)
    return Effect(mean_a, mean_b, se_a, se_b, control.mean, treatment.mean, dof, theta)


def _theta(a: Arm, b: Arm) -> float:
    n = a.n + b.n
    pre_sum = a.pre_sum + b.pre_sum  # type: ignore[operator]
    pre_var = _var(n, pre_sum, a.pre_sum_sq + b.pre_sum_sq)  # type: ignore[operator]
    post_var = _var(n, a.sum + b.sum, a.sum_sq + b.sum_sq)
    if pre_var <= 0 or post_var <= 0:
        return 0.0
    cov = _cov(n, a.sum + b.sum, pre_sum, a.pre_cross + b.pre_cross)  # type: ignore[operator]
    return cov / pre_var


def _adjusted(arm: Arm, theta: float) -> tuple[float, float]:
    pre_mean = arm.pre_sum / arm.n if arm.n else 0.0  # type: ignore[operator]
    pre_var = _var(arm.n, arm.pre_sum, arm.pre_sum_sq)  # type: ignore[arg-type]
    cov = _cov(arm.n, arm.sum, arm.pre_sum, arm.pre_cross)  # type: ignore[arg-type]
    variance = arm.variance + theta**2 * pre_var - 2 * theta * cov
    return arm.mean - theta * pre_mean, max(variance, 0.0)


def _welch_dof(se_a: float, se_b: float, n_a: int, n_b: int) -> float:
    if n_a <= 1 or n_b <= 1 or se_a + se_b <= 0 or math.isinf(se_a + se_b):
        return math.inf
    return (se_a + se_b) ** 2 / (se_a**2 / (n_a - 1) + se_b**2 / (n_b - 1))


@dataclass(frozen=True)
class Test:
    """An estimate with its two-sided p-value and interval at level 1 - alpha."""

    estimate: float
    p_value: float
    low: float
    high: float


def _nan_test() -> Test:
    return Test(math.nan, math.nan, math.nan, math.nan)


def t_test(estimate: float, variance: float, dof: float, alpha: float = 0.05) -> Test:
    """Student's t with `dof` degrees of freedom (Welch's t-test for a difference of
    means; dof = inf is the z-test)."""
    if not variance > 0 or math.isnan(estimate):
        return _nan_test()
    estimate, se = float(estimate), math.sqrt(variance)
    p = 2 * stats.t.sf(abs(estimate) / se, dof)
    width = float(stats.t.ppf(1 - alpha / 2, dof)) * se
    return Test(estimate, float(p), estimate - width, estimate + width)


def proportions_test(control: Arm, treatment: Arm, alpha: float = 0.05) -> Test:
    """Two-proportion z-test of the difference of conversion rates: the p-value with the
    pooled variance (as statsmodels' `proportions_ztest`), the interval with the
    unpooled (Wald) one (`confint_proportions_2indep(method="wald")`)."""
    n_a, n_b = control.n, treatment.n
    if not n_a or not n_b:
        return _nan_test()
    p_a, p_b = control.sum / n_a, treatment.sum / n_b
    pooled = (control.sum + treatment.sum) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    diff = p_b - p_a
    p = 2 * stats.norm.sf(abs(diff) / se_pooled) if se_pooled > 0 else math.nan
    z = float(stats.norm.ppf(1 - alpha / 2))
    return Test(diff, float(p), diff - z * se, diff + z * se)


def sequential_test(
    estimate: float,
    variance: float,
    n_total: int,
    alpha: float = 0.05,
    tuning: float = SEQUENTIAL_TUNING,
) -> Test:
    """An always-valid p-value and confidence sequence for `estimate` (whose squared
    standard error is `variance`) after `n_total` units: the asymptotic confidence
    sequence of Waudby-Smith et al. (2023, eq. 9) with the normal mixture tuned so the
    sequence is tightest at `tuning` units (ρ of their eq. 161); p = min(1, 1/E)."""
    if not variance > 0 or n_total < 2 or math.isnan(estimate):
        return _nan_test()
    estimate = float(estimate)
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning
    s2 = variance * n_total  # the per-unit variance of the difference
    grown = n_total * rho2 + 1
    width = math.sqrt(s2) * math.sqrt(
        2 * grown * math.log(math.sqrt(grown) / alpha) / (n_total**2 * rho2)
    )
    st2 = estimate**2 * n_total / variance  # (Σ per-unit differences)² / σ²
    log_e = rho2 * st2 / (2 * grown) - 0.5 * math.log(grown)
    p = 1.0 if log_e <= 0 else math.exp(-log_e)
    return Test(estimate, p, estimate - width, estimate + width)


@dataclass(frozen=True)
class Bayes:
    """The posterior of the effect (flat prior, normal approximation): the chance that the
    variant beats control, the expected loss of choosing it, and a credible interval."""

    chance_to_beat: float
    expected_loss: float
    low: float
    high: float


def bayes(
    estimate: float, variance: float, alpha: float = 0.05, higher_is_better: bool = True
) -> Bayes:
    """With a flat prior the posterior of the effect is N(estimate, variance). Chance to
    beat = P(effect better than 0); expected loss = E[max(0, -effect)] (sign flipped
    when lower is better), in the units of the effect."""
    if not variance > 0 or math.isnan(estimate):
        return Bayes(math.nan, math.nan, math.nan, math.nan)
    sd = math.sqrt(variance)
    mu = estimate if higher_is_better else -estimate
    chance = float(stats.norm.sf(0, mu, sd))
    loss = float(sd * stats.norm.pdf(mu / sd) - mu * stats.norm.cdf(-mu / sd))
    z, estimate = float(stats.norm.ppf(1 - alpha / 2)), float(estimate)
    return Bayes(chance, loss, estimate - z * sd, estimate + z * sd)
