"""Attribution models on per-path aggregates: who gets the credit for each conversion.

A `PathRow` is one distinct path of touchpoints (`("Paid Search", "Email", "Direct")`)
with the conversions and revenue that ended it and the journeys that ended without a
conversion (`nulls`). Every model returns, per channel, the conversions and revenue it
attributes; across channels they add up to the paths' totals (the Shapley value with the
conversion-rate worth aside, see `shapley`). Formulas: docs/attribution.md.

- Heuristics (`first_touch`, `last_touch`, `last_non_direct`, `linear`,
  `position_based`, `time_decay`) split each path's conversions between its touches.
- `markov`: a Markov chain of order 1-3 over the paths (start, states, conversion,
  null), solved exactly as an absorbing chain; a channel's removal effect is the share
  of the conversion probability lost when its states lead to null instead.
- `shapley`: the Shapley value of the cooperative game whose worth of a set of channels
  is the conversions (or the conversion rate) of the paths using only those channels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from math import factorial
from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from touchpoints.errors import InvalidInput

DIRECT = "Direct"
MAX_ORDER = 3
#: Exact Shapley enumeration over 2^n coalitions stops here (conversion-rate worth).
MAX_SHAPLEY_CHANNELS = 15
SHAPLEY_VALUES = ("conversions", "conversion_rate")


@dataclass(frozen=True)
class PathRow:
    """One distinct path: its touchpoints in time order and what ended it."""

    channels: tuple[str, ...]
    conversions: float = 0.0
    revenue: float = 0.0
    nulls: float = 0.0


class Credit(NamedTuple):
    conversions: float
    revenue: float


Attribution = dict[str, Credit]


@dataclass(frozen=True)
class MarkovResult:
    """Attributed conversions and revenue, the removal effect of each channel (share of
    the conversion probability lost without it, not normalised) and the chain's
    conversion probability from the start."""

    attributed: Attribution
    removal_effects: dict[str, float]
    value_removal_effects: dict[str, float]
    conversion_probability: float


def _split(
    paths: Iterable[PathRow], shares: Callable[[tuple[str, ...]], Sequence[float]]
) -> Attribution:
    """Credit per channel when each path hands out `shares(channels)` (one per touch,
    adding up to 1) of its conversions and revenue."""
    conv: dict[str, float] = defaultdict(float)
    value: dict[str, float] = defaultdict(float)
    for path in paths:
        if not path.channels or (path.conversions == 0 and path.revenue == 0):
            continue
        for channel, share in zip(path.channels, shares(path.channels), strict=True):
            conv[channel] += share * path.conversions
            value[channel] += share * path.revenue
    return {c: Credit(conv[c], value[c]) for c in conv}


def first_touch(paths: Iterable[PathRow]) -> Attribution:
    """All credit to the first touch."""
    return _split(paths, lambda p: [1.0] + [0.0] * (len(p) - 1))


def last_touch(paths: Iterable[PathRow]) -> Attribution:
    """All credit to the last touch."""
    return _split(paths, lambda p: [0.0] * (len(p) - 1) + [1.0])


def last_non_direct(paths: Iterable[PathRow], direct: str = DIRECT) -> Attribution:
    """All credit to the last touch that is not `direct`; to `direct` when every touch is."""

    def shares(p: tuple[str, ...]) -> list[float]:
        out = [0.0] * len(p)
        chosen = next((i for i in range(len(p) - 1, -1, -1) if p[i] != direct), len(p) - 1)
        out[chosen] = 1.0
        return out

    return _split(paths, shares)


def linear(paths: Iterable[PathRow]) -> Attribution:
    """Equal credit to every touch (a channel touched twice gets two shares)."""
    return _split(paths, lambda p: [1.0 / len(p)] * len(p))


def position_based(paths: Iterable[PathRow], first: float = 0.4, last: float = 0.4) -> Attribution:
    """`first` to the first touch, `last` to the last, the rest split evenly between the
    touches in between; a path of two touches splits evenly, one of one takes it all."""
    if first < 0 or last < 0 or first + last > 1:
        raise InvalidInput("position weights must be ≥ 0 and add up to at most 1", field="first")

    def shares(p: tuple[str, ...]) -> list[float]:
        n = len(p)
        if n <= 2:
            return [1.0 / n] * n
        middle = (1.0 - first - last) / (n - 2)
        return [first] + [middle] * (n - 2) + [last]

    return _split(paths, shares)


def decay_weights(ages_days: Sequence[float], half_life_days: float) -> list[float]:
    """Each touch's share of a conversion: 2^(-age / half-life), normalised to add up to 1."""
    raw = [0.5 ** (age / half_life_days) for age in ages_days]
    total = sum(raw)
    return [w / total for w in raw]


def time_decay(
    journeys: Iterable[tuple[Sequence[str], Sequence[float], float, float]],
    half_life_days: float = 7.0,
) -> Attribution:
    """Credit halving with every half-life between a touch and its conversion. Each
    journey is (channels, ages in days at the conversion, conversions, revenue): unlike the
    other models it needs the touch times, so it does not run on bare paths."""
    if not half_life_days > 0:
        raise InvalidInput("the half-life must be positive", field="half_life")
    conv: dict[str, float] = defaultdict(float)
    value: dict[str, float] = defaultdict(float)
    for channels, ages, conversions, revenue in journeys:
        for channel, share in zip(channels, decay_weights(ages, half_life_days), strict=True):
            conv[channel] += share * conversions
            value[channel] += share * revenue
    return {c: Credit(conv[c], value[c]) for c in conv}


# -- Markov chains ----------------------------------------------------------------------


def markov_states(channels: Sequence[str], order: int) -> list[tuple[str, ...]]:
    """The chain's states along a path: windows of the last `order` channels (the whole
    path when it is shorter), with a state repeated right after itself dropped, as
    ChannelAttribution does (so order 1 has no self loops)."""
    if len(channels) <= order:
        windows = [tuple(channels)]
    else:
        windows = [tuple(channels[i : i + order]) for i in range(len(channels) - order + 1)]
    states: list[tuple[str, ...]] = []
    for window in windows:
        if not states or states[-1] != window:
            states.append(window)
    return states


class _Chain:
    """Transition weights start → states → conversion / null, and the absorbing chain's
    solution: x_s = Σ_t Q[s,t] x_t + r_s, i.e. (I - Q) x = r."""

    def __init__(self, paths: Sequence[PathRow], order: int) -> None:
        index: dict[tuple[str, ...], int] = {(): 0}  # () is the start
        weights: dict[tuple[int, int], float] = defaultdict(float)
        to_conv: dict[int, float] = defaultdict(float)
        to_null: dict[int, float] = defaultdict(float)
        value: dict[int, float] = defaultdict(float)
        for path in paths:
            total = path.conversions + path.nulls
            if not path.channels or total <= 0:
                continue
            previous = 0
            for state in markov_states(path.channels, order):
                current = index.setdefault(state, len(index))
                weights[previous, current] += total
                previous = current
            to_conv[previous] += path.conversions
            to_null[previous] += path.nulls
            value[previous] += path.revenue
        n = len(index)
        self.states = list(index)
        out = np.zeros(n)
        for (s, _), w in weights.items():
            out[s] += w
        for s in range(n):
            out[s] += to_conv[s] + to_null[s]
        out[out == 0] = 1.0  # a state with no way out leads nowhere: it never converts
        rows = [s for s, _ in weights]
        cols = [t for _, t in weights]
        data = [w / out[s] for (s, _), w in weights.items()]
        self.q = sparse.csr_matrix((data, (rows, cols)), shape=(n, n))
        self.r_conv = np.array([to_conv[s] / out[s] for s in range(n)])
        # Expected value of a conversion ending in s: that state's revenue per conversion.
        per_conv = np.array([value[s] / to_conv[s] if to_conv[s] else 0.0 for s in range(n)])
        self.r_value = self.r_conv * per_conv

    def solve(self, removed: np.ndarray | None = None) -> tuple[float, float]:
        """Conversion probability and expected value from the start, with the `removed`
        states (a boolean mask) leading straight to null."""
        n = len(self.states)
        keep = np.ones(n, dtype=bool) if removed is None else ~removed
        keep[0] = True
        q = self.q[keep][:, keep]
        system = (sparse.identity(q.shape[0], format="csc") - q).tocsc()
        rhs = np.column_stack([self.r_conv[keep], self.r_value[keep]])
        x = spsolve(system, rhs)
        x = np.atleast_2d(x)
        if x.shape[0] != q.shape[0]:
            x = x.T
        return float(x[0, 0]), float(x[0, 1])


def markov(paths: Iterable[PathRow], order: int = 1) -> MarkovResult:
    """Attribution by removal effects of a Markov chain of `order` (1 to 3): a channel's
    removal effect RE_c = 1 - P(conversion without c) / P(conversion), computed exactly;
    it gets conversions × RE_c / Σ RE and, likewise with value removal effects, revenue."""
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise InvalidInput(f"the Markov order is 1 to {MAX_ORDER}, not {order!r}", field="order")
    paths = [p for p in paths if p.channels]
    total_conv = sum(p.conversions for p in paths)
    total_value = sum(p.revenue for p in paths)
    channels = sorted({c for p in paths for c in p.channels})
    chain = _Chain(paths, order)
    p_conv, p_value = chain.solve()
    effects: dict[str, float] = {}
    value_effects: dict[str, float] = {}
    for channel in channels:
        removed = np.array([channel in state for state in chain.states])
        p_without, value_without = chain.solve(removed)
        effects[channel] = 1.0 - p_without / p_conv if p_conv > 0 else 0.0
        value_effects[channel] = 1.0 - value_without / p_value if p_value > 0 else 0.0
    sum_effects, sum_values = sum(effects.values()), sum(value_effects.values())
    attributed = {
        c: Credit(
            total_conv * effects[c] / sum_effects if sum_effects > 0 else 0.0,
            total_value * value_effects[c] / sum_values if sum_values > 0 else 0.0,
        )
        for c in channels
    }
    return MarkovResult(attributed, effects, value_effects, p_conv)


# -- Shapley values ---------------------------------------------------------------------


def shapley(paths: Iterable[PathRow], value: str = "conversions") -> Attribution:
    """The Shapley value of each channel. Players are channels; a coalition S is worth
    the conversions (`value="conversions"`) or the conversion rate
    (`"conversion_rate"`: conversions / journeys) of the paths whose set of channels lies
    within S. Order and repeats within a path do not matter (unordered Shapley).

    With the conversions worth, the game is a sum of unanimity games and the value has a
    closed form: each path's conversions split evenly between its distinct channels,
    exact for any number of channels. The conversion-rate worth is enumerated over all
    coalitions (at most `MAX_SHAPLEY_CHANNELS` channels), its values are scaled to the
    total conversions, and a channel whose paths convert less than the others may get a
    negative share. Revenue is credited with the same shares as the conversions."""
    if value not in SHAPLEY_VALUES:
        raise InvalidInput(f"the Shapley worth is one of {', '.join(SHAPLEY_VALUES)}, not "
                           f"{value!r}", field="value")  # fmt: skip
    paths = [p for p in paths if p.channels]
    if value == "conversions":
        return _split(paths, _distinct_shares)
    channels = sorted({c for p in paths for c in p.channels})
    n = len(channels)
    if n > MAX_SHAPLEY_CHANNELS:
        raise InvalidInput(
            f"the conversion-rate Shapley value is exact up to {MAX_SHAPLEY_CHANNELS} channels, "
            f"these paths have {n}",
            field="models",
        )
    bit = {c: 1 << i for i, c in enumerate(channels)}
    conv, journeys = np.zeros(1 << n), np.zeros(1 << n)
    for p in paths:
        mask = sum(bit[c] for c in set(p.channels))
        conv[mask] += p.conversions
        journeys[mask] += p.conversions + p.nulls
    worth = coalition_worth(conv, journeys, n)
    phi = shapley_values(worth, n)
    total_phi = phi.sum()
    total_conv = sum(p.conversions for p in paths)
    total_value = sum(p.revenue for p in paths)
    return {
        c: Credit(
            total_conv * phi[i] / total_phi if total_phi else 0.0,
            total_value * phi[i] / total_phi if total_phi else 0.0,
        )
        for i, c in enumerate(channels)
    }


def _distinct_shares(channels: tuple[str, ...]) -> list[float]:
    """1/k of a path to the first touch of each of its k distinct channels."""
    distinct = set(channels)
    seen: set[str] = set()
    out = []
    for c in channels:
        out.append(0.0 if c in seen else 1.0 / len(distinct))
        seen.add(c)
    return out


def coalition_worth(conv: np.ndarray, journeys: np.ndarray, n: int) -> np.ndarray:
    """The conversion rate of every coalition (by bit mask) from the conversions and
    journeys per exact channel set: sums over subsets (a zeta transform), then a ratio
    (0 for a coalition without journeys)."""
    conv, journeys = conv.copy(), journeys.copy()
    masks = np.arange(1 << n)
    for i in range(n):
        has = (masks >> i) & 1 == 1
        conv[has] += conv[masks[has] ^ (1 << i)]
        journeys[has] += journeys[masks[has] ^ (1 << i)]
    return np.divide(conv, journeys, out=np.zeros_like(conv), where=journeys > 0)


def shapley_values(worth: np.ndarray, n: int) -> np.ndarray:
    """φ_i = Σ_{S ∌ i} |S|! (n-|S|-1)! / n! · (v(S ∪ {i}) - v(S)) for a game given by the
    worth of every coalition (indexed by bit mask)."""
    masks = np.arange(1 << n)
    sizes = np.array([bin(m).count("1") for m in masks])
    weight = np.array([factorial(k) * factorial(n - k - 1) / factorial(n) if k < n else 0.0
                       for k in range(n + 1)])  # fmt: skip
    phi = np.zeros(n)
    for i in range(n):
        without = masks[(masks >> i) & 1 == 0]
        phi[i] = float(
            np.sum(weight[sizes[without]] * (worth[without | (1 << i)] - worth[without]))
        )
    return phi
