"""The checks around an experiment's effects: sample ratio mismatch, corrections for
testing many variants and metrics at once, and power (the minimum detectable effect now
and the units still needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

#: Below this SRM p-value the split is called broken (GrowthBook and Optimizely use it):
#: with a daily look, a healthy experiment trips it about once in three years.
SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SRM:
    """Pearson's chi-square test of the units seen per variant against the weights."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    threshold: float = SRM_THRESHOLD

    @property
    def ok(self) -> bool:
        return math.isnan(self.p_value) or self.p_value >= self.threshold


def srm(observed: Sequence[int], weights: Sequence[float]) -> SRM:
    """Sample ratio mismatch: do the counts per variant fit the designed weights?"""
    total, weight = sum(observed), sum(weights)
    expected = tuple(total * w / weight for w in weights)
    if total == 0 or len(observed) < 2:
        return SRM(tuple(observed), expected, math.nan, math.nan)
    chi2, p = stats.chisquare(list(observed), list(expected))
    return SRM(tuple(int(o) for o in observed), expected, float(chi2), float(p))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error), NaNs left out and kept."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m, out, running = len(order), [math.nan] * len(p_values), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate), NaNs left out."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m, out, running = len(order), [math.nan] * len(p_values), 1.0
    for rank in range(m - 1, -1, -1):
        p, i = order[rank]
        running = min(running, p * m / (rank + 1))
        out[i] = min(running, 1.0)
    return out


CORRECTIONS = {"holm": holm, "bh": benjamini_hochberg, "none": lambda ps: list(ps)}


@dataclass(frozen=True)
class Power:
    """For one variant against control at `alpha` (two-sided) and `power`: the smallest
    relative effect the current units would detect, and the units per arm a target
    relative effect needs (normal approximation, equal arms)."""

    mde_relative: float
    target_relative: float
    needed_per_arm: float
    have_per_arm: int

    @property
    def still_needed_per_arm(self) -> int:
        if math.isnan(self.needed_per_arm):
            return 0
        return max(0, math.ceil(self.needed_per_arm) - self.have_per_arm)


def power(
    mean_a: float,
    var_a: float,
    n_a: int,
    var_b: float,
    n_b: int,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    target_relative: float = 0.05,
) -> Power:
    """MDE = (z₁₋α/₂ + z_power)·√(σa²/na + σb²/nb) / |mean_a|; the units per arm for an
    effect δ = target·|mean_a|: (z₁₋α/₂ + z_power)²·(σa² + σb²) / δ² — what statsmodels'
    `NormalIndPower` gives for effect size δ/σ when σa = σb = σ."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    have = min(n_a, n_b)
    if not mean_a or n_a < 2 or n_b < 2:
        return Power(math.nan, target_relative, math.nan, have)
    mde = z * math.sqrt(var_a / n_a + var_b / n_b) / abs(mean_a)
    delta = target_relative * abs(mean_a)
    needed = z**2 * (var_a + var_b) / delta**2 if delta else math.nan
    return Power(float(mde), target_relative, float(needed), have)
