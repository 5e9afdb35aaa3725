"""Experiment statistics against SciPy, statsmodels and GrowthBook's `gbstats` on the same
summary statistics, and A/A simulations showing each method's false-positive rate is at
or below its nominal level (the sequential one under daily peeking), while naive peeking
with the fixed-horizon test is not."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

# gbstats is installed by the Makefile with --no-deps (its metadata pins pandas<2)
from gbstats.bayesian.tests import EffectBayesianABTest
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from gbstats.utils import check_srm
from scipy import stats
from statsmodels.stats import proportion as smp
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

from touchpoints.models.experiment_checks import benjamini_hochberg, holm, power, srm
from touchpoints.models.experiment_stats import (
    Arm,
    bayes,
    effect,
    proportions_test,
    sequential_test,
    t_test,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
REL = 1e-9


def arm(values: np.ndarray) -> Arm:
    return Arm(len(values), float(values.sum()), float((values * values).sum()))


def gb_mean(values: np.ndarray) -> SampleMeanStatistic:
    return SampleMeanStatistic(n=len(values), sum=values.sum(), sum_squares=(values**2).sum())


@pytest.fixture
def revenue() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.lognormal(1.0, 1.0, 800), rng.lognormal(1.08, 1.0, 900)


def test_welch_t_matches_scipy_and_gbstats(revenue: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = revenue
    found = effect(arm(a), arm(b))
    absolute = t_test(found.absolute, found.absolute_var, found.dof)
    scipy_p = stats.ttest_ind_from_stats(
        b.mean(), b.std(ddof=1), len(b), a.mean(), a.std(ddof=1), len(a), equal_var=False
    ).pvalue
    assert absolute.p_value == pytest.approx(scipy_p, rel=REL)
    assert absolute.estimate == pytest.approx(b.mean() - a.mean(), rel=REL)
    config = FrequentistConfig(difference_type="absolute")
    theirs = TwoSidedTTest(gb_mean(a), gb_mean(b), config).compute_result()
    assert absolute.p_value == pytest.approx(theirs.p_value, rel=REL)
    assert [absolute.low, absolute.high] == pytest.approx(theirs.ci, rel=REL)
    relative = t_test(found.relative, found.relative_var, found.dof)
    theirs = TwoSidedTTest(gb_mean(a), gb_mean(b)).compute_result()  # relative by default
    assert relative.estimate == pytest.approx(theirs.expected, rel=REL)
    assert relative.p_value == pytest.approx(theirs.p_value, rel=1e-7)
    assert [relative.low, relative.high] == pytest.approx(theirs.ci, rel=REL)


def test_two_proportions_match_statsmodels_and_gbstats() -> None:
    control, treatment = Arm(4000, 400, 400), Arm(4100, 468, 468)
    found = proportions_test(control, treatment)
    _, p = smp.proportions_ztest([468, 400], [4100, 4000])
    low, high = smp.confint_proportions_2indep(468, 4100, 400, 4000, method="wald")
    assert found.p_value == pytest.approx(p, rel=REL)
    assert (found.low, found.high) == pytest.approx((low, high), rel=REL)
    # gbstats runs a t-test on p(1-p) variances: the same to three places at this size
    config = FrequentistConfig(difference_type="absolute")
    theirs = TwoSidedTTest(
        ProportionStatistic(n=4000, sum=400), ProportionStatistic(n=4100, sum=468), config
    ).compute_result()
    assert found.p_value == pytest.approx(theirs.p_value, rel=2e-2)
    assert [found.low, found.high] == pytest.approx(theirs.ci, abs=1e-5)


def test_ratio_metric_delta_method_matches_gbstats() -> None:
    rng = np.random.default_rng(3)
    orders = [rng.poisson(1.2, n) for n in (700, 650)]
    revenue = [o * rng.gamma(2.0, 20.0, len(o)) for o in orders]
    arms, gb = [], []
    for num, den in zip(revenue, orders, strict=True):
        num, den = num.astype(float), den.astype(float)
        arms.append(
            Arm(len(num), num.sum(), (num**2).sum(), den.sum(), (den**2).sum(), (num * den).sum())
        )
        gb.append(
            RatioStatistic(
                n=len(num),
                m_statistic=gb_mean(num),
                d_statistic=gb_mean(den),
                m_d_sum_of_products=(num * den).sum(),
            )
        )
    assert arms[0].mean == pytest.approx(revenue[0].sum() / orders[0].sum(), rel=REL)
    assert arms[0].variance == pytest.approx(gb[0].variance, rel=REL)
    found = effect(*arms)
    ours = t_test(found.relative, found.relative_var, found.dof)
    theirs = TwoSidedTTest(*gb).compute_result()
    assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-7)
    assert [ours.low, ours.high] == pytest.approx(theirs.ci, rel=REL)


def _cuped_arm(post: np.ndarray, pre: np.ndarray) -> Arm:
    return Arm(
        len(post),
        post.sum(),
        (post**2).sum(),
        pre_sum=pre.sum(),
        pre_sum_sq=(pre**2).sum(),
        pre_cross=(post * pre).sum(),
    )


def test_cuped_matches_gbstats_and_reduces_variance() -> None:
    rng = np.random.default_rng(11)
    pre = [rng.gamma(2.0, 10.0, n) for n in (1000, 1000)]
    post = [0.8 * x + rng.normal(0, 6, len(x)) for x in pre]
    post[1] = post[1] + 1.0
    arms = [_cuped_arm(y, x) for y, x in zip(post, pre, strict=True)]
    found = effect(*arms)
    plain = effect(*[arm(y) for y in post])
    assert found.absolute_var < 0.5 * plain.absolute_var  # the covariate explains much
    gb = [
        RegressionAdjustedStatistic(
            n=len(y),
            post_statistic=gb_mean(y),
            pre_statistic=gb_mean(x),
            post_pre_sum_of_products=(y * x).sum(),
            theta=0,
        )
        for y, x in zip(post, pre, strict=True)
    ]
    theirs = TwoSidedTTest(*gb).compute_result()
    ours = t_test(found.relative, found.relative_var, found.dof)
    assert ours.estimate == pytest.approx(theirs.expected, rel=REL)
    assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-6, abs=1e-12)
    assert [ours.low, ours.high] == pytest.approx(theirs.ci, rel=REL)
    # θ is the pooled regression slope of post on pre
    pooled = np.cov(np.concatenate(post), np.concatenate(pre))
    assert found.theta == pytest.approx(pooled[0, 1] / pooled[1, 1], rel=REL)


@pytest.mark.parametrize("difference", ["relative", "absolute"])
def test_sequential_matches_gbstats(
    revenue: tuple[np.ndarray, np.ndarray], difference: str
) -> None:
    a, b = revenue
    found = effect(arm(a), arm(b))
    estimate, variance = (
        (found.relative, found.relative_var)
        if difference == "relative"
        else (found.absolute, found.absolute_var)
    )
    for tuning in (1000.0, 5000.0):
        ours = sequential_test(estimate, variance, len(a) + len(b), tuning=tuning)
        config = SequentialConfig(difference_type=difference, sequential_tuning_parameter=tuning)
        theirs = SequentialTwoSidedTTest(gb_mean(a), gb_mean(b), config).compute_result()
        assert ours.p_value == pytest.approx(theirs.p_value, rel=1e-9)
        assert [ours.low, ours.high] == pytest.approx(theirs.ci, rel=REL)
    fixed = t_test(estimate, variance, math.inf)
    assert ours.high - ours.low > fixed.high - fixed.low  # the price of peeking at will


def test_bayesian_matches_gbstats(revenue: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = revenue
    found = effect(arm(a), arm(b))
    ours = bayes(found.relative, found.relative_var)
    theirs = EffectBayesianABTest(gb_mean(a), gb_mean(b)).compute_result()
    assert ours.chance_to_beat == pytest.approx(theirs.chance_to_win, rel=REL)
    assert ours.expected_loss == pytest.approx(theirs.risk[1], rel=1e-6)
    assert [ours.low, ours.high] == pytest.approx(theirs.ci, rel=REL)
    lower = bayes(found.relative, found.relative_var, higher_is_better=False)
    assert lower.chance_to_beat == pytest.approx(1 - ours.chance_to_beat, rel=REL)
    assert lower.expected_loss == pytest.approx(theirs.risk[0], rel=1e-6)


def test_srm_matches_scipy_and_gbstats() -> None:
    found = srm([5000, 5210, 4790], [1, 1, 1])
    assert found.p_value == pytest.approx(check_srm([5000, 5210, 4790], [1, 1, 1]), rel=REL)
    assert found.p_value == pytest.approx(stats.chisquare([5000, 5210, 4790]).pvalue, rel=REL)
    assert not found.ok and srm([5000, 5050], [1, 1]).ok
    assert srm([2000, 8000], [20, 80]).p_value == pytest.approx(1.0)


def test_corrections_match_statsmodels() -> None:
    p = [0.01, 0.04, 0.03, 0.2, 0.005, 0.5]
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], rel=REL)
    assert benjamini_hochberg(p) == pytest.approx(multipletests(p, method="fdr_bh")[1], rel=REL)
    assert math.isnan(holm([0.01, math.nan])[1]) and holm([0.01, math.nan])[0] == 0.01


def test_power_matches_statsmodels() -> None:
    mean, sd, n = 10.0, 4.0, 2500
    found = power(mean, sd**2, n, sd**2, n, alpha=0.05, power=0.8, target_relative=0.05)
    solver = NormalIndPower()
    needed = solver.solve_power(effect_size=0.05 * mean / sd, alpha=0.05, power=0.8, ratio=1)
    # statsmodels also counts the (tiny) chance of rejecting in the wrong tail
    assert found.needed_per_arm == pytest.approx(needed, rel=1e-5)
    assert found.still_needed_per_arm == 0  # 2,500 per arm is more than enough
    short = power(mean, sd**2, 400, sd**2, 400, target_relative=0.05)
    assert short.still_needed_per_arm == math.ceil(short.needed_per_arm) - 400 == 605
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        size = solver.solve_power(nobs1=n, alpha=0.05, power=0.8, ratio=1)
    assert found.mde_relative == pytest.approx(size * sd / mean, rel=1e-4)


# -- A/A simulations ---------------------------------------------------------------------

SIMS, DAYS, PER_DAY = 2000, 14, 40  # units per arm per day
ALPHA = 0.05
#: Three binomial standard errors above the nominal rate: a correct method fails this
#: about once in 700 runs, a broken one (naive peeking: ~0.2) every time.
LIMIT = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMS)


def _daily_arms(rng: np.random.Generator, draw: str) -> list[list[list[Arm]]]:
    """Cumulative `Arm`s per simulation, day and arm of A/A experiments (seeded)."""
    shape = (SIMS, DAYS, 2, PER_DAY)
    if draw == "conversion":
        values = (rng.random(shape) < 0.1).astype(float)
        pre = None
    else:  # skewed revenue, with a pre-period covariate correlated with it
        pre = rng.gamma(2.0, 10.0, shape)
        values = 0.6 * pre + rng.gamma(1.0, 8.0, shape)
    sums = values.sum(-1).cumsum(1)
    squares = (values**2).sum(-1).cumsum(1)
    extra = {}
    if pre is not None:
        extra = {
            "pre_sum": pre.sum(-1).cumsum(1),
            "pre_sum_sq": (pre**2).sum(-1).cumsum(1),
            "pre_cross": (values * pre).sum(-1).cumsum(1),
        }
    return [
        [
            [
                Arm(
                    (d + 1) * PER_DAY,
                    sums[s, d, k],
                    squares[s, d, k],
                    **{n: float(v[s, d, k]) for n, v in extra.items()},
                )
                for k in (0, 1)
            ]
            for d in range(DAYS)
        ]
        for s in range(SIMS)
    ]


@pytest.fixture(scope="module")
def aa_rates() -> dict[str, float]:
    """The share of A/A experiments each method calls significant at ALPHA."""
    rng = np.random.default_rng(2026)
    rejected: dict[str, int] = {}

    def count(name: str, hit: bool) -> None:
        rejected[name] = rejected.get(name, 0) + int(hit)

    for draw in ("revenue", "conversion"):
        for days in _daily_arms(rng, draw):
            control, variant = days[-1]
            if draw == "conversion":
                count("two-proportion z", proportions_test(control, variant).p_value < ALPHA)
                plain = effect(control, variant, cuped=False)
            else:
                plain = effect(control, variant, cuped=False)
                welch = t_test(plain.absolute, plain.absolute_var, plain.dof)
                count("welch t", welch.p_value < ALPHA)
                cuped = effect(control, variant)
                count(
                    "welch t + cuped",
                    t_test(cuped.absolute, cuped.absolute_var, cuped.dof).p_value < ALPHA,
                )
                relative = t_test(plain.relative, plain.relative_var, plain.dof)
                count("relative (delta)", relative.p_value < ALPHA)
                chance = bayes(plain.relative, plain.relative_var).chance_to_beat
                count("bayesian", not ALPHA / 2 < chance < 1 - ALPHA / 2)
            peeks = [effect(c, v, cuped=False) for c, v in days]
            count(
                f"sequential, daily peeks ({draw})",
                any(
                    sequential_test(e.absolute, e.absolute_var, c.n + v.n).p_value < ALPHA
                    for e, (c, v) in zip(peeks, days, strict=True)
                ),
            )
            if draw == "revenue":
                count(
                    "welch t, naive daily peeks",
                    any(t_test(e.absolute, e.absolute_var, e.dof).p_value < ALPHA for e in peeks),
                )
    return {name: hits / SIMS for name, hits in rejected.items()}


def test_aa_false_positive_rates_stay_at_or_below_nominal(aa_rates: dict[str, float]) -> None:
    print("A/A false-positive rates:", {k: round(v, 4) for k, v in aa_rates.items()})
    for name, rate in aa_rates.items():
        if "naive" not in name:
            assert rate <= LIMIT, (name, rate)


def test_naive_peeking_inflates_false_positives(aa_rates: dict[str, float]) -> None:
    """The simulation can fail: looking daily at a fixed-horizon test rejects far too often."""
    assert aa_rates["welch t, naive daily peeks"] > 2 * ALPHA
