"""Attribution models on path aggregates: hand-computed small cases for every model, the
exact Markov solution against a seeded simulation, and ChannelAttribution's example data."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from touchpoints.errors import InvalidInput
from touchpoints.insights import attribution_models as m
from touchpoints.insights.attribution import PATH_MODELS, attribute, parse_paths, read_paths
from touchpoints.insights.attribution_models import PathRow

# Three paths used by the heuristic cases:
#   A > B > C   2 conversions, revenue 60
#   B > A       1 conversion,  revenue 30
#   C           1 conversion,  revenue 10, and 5 journeys without conversion
SMALL = [
    PathRow(("A", "B", "C"), 2, 60.0),
    PathRow(("B", "A"), 1, 30.0),
    PathRow(("C",), 1, 10.0, nulls=5),
]


def credit(result: m.Attribution) -> dict[str, tuple[float, float]]:
    return {c: (round(v.conversions, 9), round(v.revenue, 9)) for c, v in result.items() if
            v.conversions or v.revenue}  # fmt: skip


def test_first_and_last_touch() -> None:
    """First: A>B>C → A 2 (60); B>A → B 1 (30); C → C 1 (10).
    Last:  A>B>C → C 2 (60); B>A → A 1 (30); C → C 1 (10)."""
    assert credit(m.first_touch(SMALL)) == {"A": (2, 60), "B": (1, 30), "C": (1, 10)}
    assert credit(m.last_touch(SMALL)) == {"A": (1, 30), "C": (3, 70)}


def test_last_non_direct() -> None:
    """A > Direct (1 conv): the last touch that is not Direct is A. Direct > Direct (1):
    every touch is direct, so Direct keeps it. B (1): B."""
    paths = [PathRow(("A", "Direct"), 1, 5), PathRow(("Direct", "Direct"), 1, 7),
             PathRow(("B",), 1, 1)]  # fmt: skip
    assert credit(m.last_non_direct(paths)) == {"A": (1, 5), "Direct": (1, 7), "B": (1, 1)}


def test_linear() -> None:
    """A>B>C: 2/3 conversion and 20 each; B>A: 1/2 and 15 each; C: 1 and 10.
    A = 2/3 + 1/2 = 7/6 (35), B = 7/6 (35), C = 2/3 + 1 = 5/3 (30). A repeat counts twice:
    A > B > A with 1 conversion gives A 2/3, B 1/3."""
    got = m.linear(SMALL)
    assert got["A"].conversions == pytest.approx(7 / 6) and got["A"].revenue == pytest.approx(35)
    assert got["B"].conversions == pytest.approx(7 / 6) and got["B"].revenue == pytest.approx(35)
    assert got["C"].conversions == pytest.approx(5 / 3) and got["C"].revenue == pytest.approx(30)
    repeat = m.linear([PathRow(("A", "B", "A"), 1)])
    assert repeat["A"].conversions == pytest.approx(2 / 3)


def test_position_based() -> None:
    """40/20/40. A>B>C (2 conv, 60): A 0.8 (24), B 0.4 (12), C 0.8 (24). B>A (two touches,
    half each): 0.5 (15) each. C alone: 1 (10). A>B>C>D (1 conv): 0.4, 0.1, 0.1, 0.4."""
    got = m.position_based(SMALL)
    assert got["A"].conversions == pytest.approx(1.3) and got["A"].revenue == pytest.approx(39)
    assert got["B"].conversions == pytest.approx(0.9) and got["B"].revenue == pytest.approx(27)
    assert got["C"].conversions == pytest.approx(1.8) and got["C"].revenue == pytest.approx(34)
    four = m.position_based([PathRow(("A", "B", "C", "D"), 1)])
    assert [four[c].conversions for c in "ABCD"] == pytest.approx([0.4, 0.1, 0.1, 0.4])
    with pytest.raises(InvalidInput):
        m.position_based(SMALL, first=0.7, last=0.4)


def test_time_decay() -> None:
    """Half-life 7 days. Touches A 14 days and B 7 days before a conversion worth 100:
    raw weights 1/4 and 1/2, so A gets 1/3 (33.3) and B 2/3 (66.7). A touch at the very
    moment (age 0) with one 7 days older: 1 and 1/2, so 2/3 and 1/3."""
    got = m.time_decay([(("A", "B"), (14.0, 7.0), 1, 100.0)], half_life_days=7)
    assert got["A"].conversions == pytest.approx(1 / 3)
    assert got["B"].revenue == pytest.approx(200 / 3)
    got = m.time_decay([(("A", "B"), (7.0, 0.0), 1, 0.0)], half_life_days=7)
    assert got["B"].conversions == pytest.approx(2 / 3)
    with pytest.raises(InvalidInput):
        m.time_decay([], half_life_days=0)


# -- Markov -------------------------------------------------------------------------------
LOOP = [PathRow(("A", "B", "C"), 1, 10.0), PathRow(("C", "B"), 0, 0.0, nulls=1)]


def test_markov_order_1_by_hand() -> None:
    """Paths A>B>C (1 conversion) and C>B (1 null). Transitions: start→A ½, start→C ½;
    A→B 1; B→C ½, B→null ½; C→conv ½, C→B ½. With p_X the conversion probability from X:
    p_C = ½ + ½ p_B, p_B = ½ p_C, so p_C = 2/3, p_B = p_A = 1/3, and from the start
    ½·1/3 + ½·2/3 = ½.
    Without A: start→A→null, ½·2/3 = 1/3: RE_A = 1 - (1/3)/(1/2) = 1/3.
    Without B: p_C = ½, start: ½·½ = ¼: RE_B = ½. Without C: 0: RE_C = 1.
    Σ RE = 11/6, so A = 2/11, B = 3/11, C = 6/11 of the one conversion (and of its 10)."""
    result = m.markov(LOOP, order=1)
    assert result.conversion_probability == pytest.approx(0.5)
    assert result.removal_effects == pytest.approx({"A": 1 / 3, "B": 0.5, "C": 1.0})
    got = {c: v.conversions for c, v in result.attributed.items()}
    assert got == pytest.approx({"A": 2 / 11, "B": 3 / 11, "C": 6 / 11})
    assert result.attributed["C"].revenue == pytest.approx(60 / 11)


def test_markov_order_2_by_hand() -> None:
    """Order 2 on the same paths: states (A,B), (B,C) and (C,B). start→(A,B) ½ →(B,C)
    →conv; start→(C,B) ½ →null. P = ½. Each channel lies on the one converting route (A
    in (A,B); B in all; C in (B,C)), so every removal effect is 1 and each gets 1/3."""
    result = m.markov(LOOP, order=2)
    assert result.conversion_probability == pytest.approx(0.5)
    assert result.removal_effects == pytest.approx({"A": 1.0, "B": 1.0, "C": 1.0})
    assert {c: v.conversions for c, v in result.attributed.items()} == pytest.approx(
        {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}
    )


def test_markov_states_drop_repeats() -> None:
    """As ChannelAttribution: a state right after itself is one visit (no self loops)."""
    assert m.markov_states(("A", "A", "B"), 1) == [("A",), ("B",)]
    assert m.markov_states(("A", "B", "C", "D"), 3) == [("A", "B", "C"), ("B", "C", "D")]
    assert m.markov_states(("A", "B"), 3) == [("A", "B")]
    with pytest.raises(InvalidInput) as err:
        m.markov(LOOP, order=4)
    assert err.value.field == "order"


def random_paths(seed: int, n: int = 300, channels: str = "abcde") -> list[PathRow]:
    rng = np.random.default_rng(seed)
    paths = []
    for _ in range(n):
        length = int(rng.integers(1, 6))
        chosen = tuple(str(c) for c in rng.choice(list(channels), size=length))
        conv = int(rng.integers(0, 3))
        paths.append(
            PathRow(chosen, conv, conv * float(rng.uniform(5, 50)), int(rng.integers(0, 4)))
        )
    return paths


def simulate(paths: list[PathRow], order: int, walks: int, seed: int) -> dict[str, float]:
    """Monte Carlo removal effects: walk the chain `walks` times from the start; a
    channel's removal effect is the share of converting walks that visited it (what
    removing it, i.e. sending its states to null, takes away)."""
    index: dict[tuple[str, ...], int] = {(): 0}
    counts: dict[tuple[int, int], float] = {}
    conv_state, null_state = -1, -2
    for p in paths:
        total = p.conversions + p.nulls
        if total == 0:
            continue
        previous = 0
        for state in m.markov_states(p.channels, order):
            current = index.setdefault(state, len(index))
            counts[previous, current] = counts.get((previous, current), 0) + total
            previous = current
        counts[previous, conv_state] = counts.get((previous, conv_state), 0) + p.conversions
        counts[previous, null_state] = counts.get((previous, null_state), 0) + p.nulls
    n = len(index)
    matrix = np.zeros((n, n + 2))  # columns n and n+1: conversion and null
    for (s, t), w in counts.items():
        matrix[s, t if t >= 0 else n + (t == null_state)] += w
    matrix /= matrix.sum(axis=1, keepdims=True)
    cumulative = np.cumsum(matrix, axis=1)
    names = sorted({c for p in paths for c in p.channels})
    has = np.array([[name in state for name in names] for state in index])
    rng = np.random.default_rng(seed)
    state = np.zeros(walks, dtype=int)
    visited = np.zeros((walks, len(names)), dtype=bool)
    alive = np.ones(walks, dtype=bool)
    for _ in range(200):
        u = rng.random(walks)
        step = (cumulative[state] < u[:, None]).sum(axis=1)
        moving = alive & (step < n)
        state = np.where(moving, step, state)
        visited[moving] |= has[step[moving]]
        converted_now = alive & (step == n)
        alive &= step < n
        state = np.where(converted_now, -1, state)
        if not alive.any():
            break
    converted = state == -1
    return {name: float(visited[converted, i].mean()) for i, name in enumerate(names)}


@pytest.mark.parametrize("order", [1, 2])
def test_markov_exact_matches_seeded_simulation(order: int) -> None:
    """The absorbing-chain solution against 200 000 simulated walks (seed 11): each
    removal effect within 0.01."""
    paths = random_paths(3)
    exact = m.markov(paths, order).removal_effects
    simulated = simulate(paths, order, walks=200_000, seed=11)
    for channel, effect in exact.items():
        assert effect == pytest.approx(simulated[channel], abs=0.01), channel


# -- Shapley ------------------------------------------------------------------------------
GAME = [PathRow(("A",), 1, 10.0, nulls=1), PathRow(("B",), 2, 20.0),
        PathRow(("A", "B"), 3, 30.0, nulls=1)]  # fmt: skip


def test_shapley_conversions_by_hand() -> None:
    """Worth = conversions of the paths within the coalition: v(A) = 1, v(B) = 2,
    v(AB) = 6. φ_A = ½(1 - 0) + ½(6 - 2) = 2.5, φ_B = ½(2 - 0) + ½(6 - 1) = 3.5."""
    got = m.shapley(GAME)
    assert got["A"].conversions == pytest.approx(2.5)
    assert got["B"].conversions == pytest.approx(3.5)
    assert got["A"].revenue == pytest.approx(25.0)


def test_shapley_conversion_rate_by_hand() -> None:
    """Worth = conversion rate: v(A) = 1/2, v(B) = 2/2 = 1, v(AB) = 6/8 = 3/4.
    φ_A = ½·½ + ½(¾ - 1) = 1/8, φ_B = ½·1 + ½(¾ - ½) = 5/8; scaled to the 6 conversions:
    A = 6·(1/8)/(3/4) = 1, B = 5."""
    got = m.shapley(GAME, value="conversion_rate")
    assert got["A"].conversions == pytest.approx(1.0)
    assert got["B"].conversions == pytest.approx(5.0)


def test_shapley_closed_form_equals_enumeration() -> None:
    """The conversions worth's closed form (each path split over its distinct channels)
    equals the Shapley formula enumerated over all coalitions, and that formula equals
    the average marginal contribution over all orders of the players."""
    paths = random_paths(5, n=60, channels="abcd")
    names = sorted({c for p in paths for c in p.channels})
    n = len(names)
    conv = np.zeros(1 << n)
    for p in paths:
        conv[sum(1 << names.index(c) for c in set(p.channels))] += p.conversions
    worth = np.array([sum(conv[t] for t in range(1 << n) if t & s == t) for s in range(1 << n)])
    phi = m.shapley_values(worth, n)
    closed = m.shapley(paths)
    assert [closed[c].conversions for c in names] == pytest.approx(list(phi))
    orders = list(itertools.permutations(range(n)))
    for i in range(n):
        total = 0.0
        for order in orders:
            before = sum(1 << j for j in order[: order.index(i)])
            total += worth[before | (1 << i)] - worth[before]
        assert phi[i] == pytest.approx(total / math.factorial(n))


def test_shapley_rejects_too_many_channels_for_rates() -> None:
    paths = [PathRow((f"c{i}",), 1) for i in range(m.MAX_SHAPLEY_CHANNELS + 1)]
    assert len(m.shapley(paths)) == m.MAX_SHAPLEY_CHANNELS + 1  # closed form: any size
    with pytest.raises(InvalidInput):
        m.shapley(paths, value="conversion_rate")


# -- side by side, and the paths file -------------------------------------------------------
def test_attribute_side_by_side_with_spend() -> None:
    """Every path model's conversions add up to the total (4) on every row set; cost per
    attributed conversion and ROAS come from the spend; a channel with spend and no
    touches still has its row; (no touchpoint) conversions stay on their row."""
    paths = [*SMALL, PathRow(("(no touchpoint)",), 2, 8.0)]
    frame = attribute(paths, models=PATH_MODELS, spend={"A": 35.0, "Z": 5.0})
    assert list(frame.columns[:6]) == ["channel", "cost", "first_touch_conversions",
                                       "first_touch_revenue", "first_touch_cpa",
                                       "first_touch_roas"]  # fmt: skip
    rows = frame.set_index("channel")
    for name in PATH_MODELS:
        assert rows[f"{name}_conversions"].sum() == pytest.approx(6)
        assert rows.loc["(no touchpoint)", f"{name}_conversions"] == pytest.approx(2)
    assert rows.loc["A", "linear_cpa"] == pytest.approx(35 / (7 / 6))
    assert rows.loc["A", "linear_roas"] == pytest.approx(1.0)
    assert rows.loc["Z", "last_touch_conversions"] == 0 and rows.loc["Z", "cost"] == 5
    assert pd.isna(rows.loc["B", "linear_cpa"])
    with pytest.raises(InvalidInput) as err:
        attribute(paths, models=["time_decay"])
    assert err.value.field == "models"


def test_parse_paths_and_errors() -> None:
    text = "path;total_conversions;total_conversion_value;total_null\n" \
           "a > b;1;2.5;3\n b >a ;0;0;2\na > b;1;1.5;0\n"  # fmt: skip
    rows = {p.channels: p for p in parse_paths(text)}
    assert rows[("a", "b")] == PathRow(("a", "b"), 2, 4.0, 3)
    assert rows[("b", "a")].nulls == 2
    assert parse_paths("path,conversions\nx>y,3\n")[0] == PathRow(("x", "y"), 3)
    head = "path;total_conversions\n"
    for bad, line in [(head + "a;1\nb;x\n", 3), (head + ";1\n", 2), (head + "a;-1\n", 2)]:
        with pytest.raises(InvalidInput, match=f"line {line}"):
            parse_paths(bad)
    with pytest.raises(InvalidInput, match="no conversions column"):
        parse_paths("path;sales\na;1\n")


# -- ChannelAttribution -------------------------------------------------------------------
def _channelattribution():  # type: ignore[no-untyped-def]
    ca = pytest.importorskip("ChannelAttribution")
    data = Path(ca.__file__).parent.parent / "cypack" / "data" / "Data.csv"
    if not data.is_file():
        pytest.skip("ChannelAttribution's example Data.csv is not where 2.2 ships it")
    return ca, data


def test_against_channelattribution_example() -> None:
    """ChannelAttribution 2.2's example paths (10 000 paths, 19 785 conversions): the
    heuristic models exactly; order-1 Markov removal effects within 0.005 and attributed
    conversions within 0.5% of all conversions of its simulation (10^6 walks, seed 0)."""
    ca, data = _channelattribution()
    frame = pd.read_csv(data, sep=";")
    paths = read_paths(data)
    ours = attribute(paths, models=PATH_MODELS).set_index("channel")
    theirs = ca.heuristic_models(frame, "path", "total_conversions",
                                 var_value="total_conversion_value", flg_pro=False)  # fmt: skip
    theirs = theirs.set_index("channel_name")
    for model, name in (("first_touch", "first_touch"), ("last_touch", "last_touch"),
                        ("linear", "linear_touch")):  # fmt: skip
        for channel in theirs.index:
            assert ours.loc[channel, f"{model}_conversions"] == pytest.approx(
                theirs.loc[channel, f"{name}_conversions"]
            )
            assert ours.loc[channel, f"{model}_revenue"] == pytest.approx(
                theirs.loc[channel, f"{name}_value"]
            )
    total = frame.total_conversions.sum()
    markov = ca.markov_model(
        frame, "path", "total_conversions", var_value="total_conversion_value",
        var_null="total_null", order=1, nsim_start=1e6, conv_par=0.01, out_more=True,
        verbose=False, flg_pro=False,
    )  # fmt: skip
    effects = markov["removal_effects"].set_index("channel_name")
    attributed = markov["result"].set_index("channel_name")
    for channel in effects.index:
        assert ours.loc[channel, "markov_removal_effect"] == pytest.approx(
            effects.loc[channel, "removal_effects_conversion"], abs=0.005
        ), channel
        assert ours.loc[channel, "markov_conversions"] == pytest.approx(
            attributed.loc[channel, "total_conversions"], abs=0.005 * total
        ), channel
