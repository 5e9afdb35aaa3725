"""Assignment: stable across processes (a pinned value), split by the weights (chi-square),
independent between experiments, and minimal movement when weights or coverage change."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from scipy import stats

from touchpoints.errors import InvalidInput
from touchpoints.models.experiment_assign import assign, assign_many, point, variant_index

UNITS = [f"user-{i}" for i in range(20_000)]


def test_points_are_pinned_and_the_same_in_another_process() -> None:
    # SHA-256 is the same everywhere (the pinned value is the first 16 hex digits of
    # `printf 'checkout:user-1' | sha256sum` over 2**64): any change of scheme fails here
    assert point("checkout", "user-1") == pytest.approx(0.16570486396628972, abs=0)
    code = (
        "from touchpoints.models.experiment_assign import point\n"
        "print(repr(point('checkout', 'user-1')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == point("checkout", "user-1")


def test_split_follows_the_weights() -> None:
    weights = [50, 30, 20]
    counts = Counter(assign_many("split", UNITS, ["a", "b", "c"], weights).values())
    observed = [counts[k] for k in "abc"]
    expected = [len(UNITS) * w / 100 for w in weights]
    assert stats.chisquare(observed, expected).pvalue > 0.001


def test_experiments_are_independent() -> None:
    first = assign_many("one", UNITS, ["a", "b"], [1, 1])
    second = assign_many("two", UNITS, ["a", "b"], [1, 1])
    table = Counter((first[u], second[u]) for u in UNITS)
    cells = [[table["a", "a"], table["a", "b"]], [table["b", "a"], table["b", "b"]]]
    assert stats.chi2_contingency(cells).pvalue > 0.001


def test_changing_weights_moves_only_units_between_the_boundaries() -> None:
    before = assign_many("ramp", UNITS, ["control", "new"], [50, 50])
    after = assign_many("ramp", UNITS, ["control", "new"], [20, 80])
    moved = [u for u in UNITS if before[u] != after[u]]
    assert all(before[u] == "control" and after[u] == "new" for u in moved)
    assert all(0.2 <= point("ramp", u) < 0.5 for u in moved)
    assert len(moved) / len(UNITS) == pytest.approx(0.3, abs=0.015)


def test_raising_coverage_only_pulls_units_in() -> None:
    small = assign_many("cover", UNITS, ["a", "b"], [1, 1], coverage=0.2)
    large = assign_many("cover", UNITS, ["a", "b"], [1, 1], coverage=0.6)
    inside = [u for u in UNITS if small[u] is not None]
    assert len(inside) / len(UNITS) == pytest.approx(0.2, abs=0.015)
    assert all(large[u] == small[u] for u in inside)  # nobody in leaves or switches
    assert sum(v is not None for v in large.values()) / len(UNITS) == pytest.approx(0.6, abs=0.015)


def test_zero_weight_variant_gets_nobody_and_bad_units_are_refused() -> None:
    assert {assign("z", u, ["a", "b", "c"], [1, 0, 1]) for u in UNITS[:2000]} == {"a", "c"}
    with pytest.raises(InvalidInput) as caught:
        variant_index("z", " ", [1, 1])
    assert caught.value.field == "unit"
    with pytest.raises(InvalidInput):
        assign("z", "u", ["a", "b"], [0, 0])
