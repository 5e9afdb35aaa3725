"""Deterministic assignment of units to variants, the same on every machine and restart.

A unit's point is the first 8 bytes of SHA-256(`"{seed}:{unit}"`) read as an unsigned
integer over 2⁶⁴, a number in [0, 1) (`seed` is the experiment key unless the definition
sets one). A second point, from `"{seed}:coverage:{unit}"`, decides whether the unit is
in the experiment at all (point < coverage), so raising coverage only pulls units in.

Variants own contiguous ranges of [0, 1) in their listed order, each as wide as its share
of the weights. Changing weights moves a unit only when its point lies between a
boundary's old and new place: with two variants going from 50/50 to 20/80, exactly the
30% in [0.2, 0.5) move from the first to the second, everyone else stays put. Adding a
variant at the end with weight taken from the others moves only the units the new range
covers and those between moved boundaries. Changing the seed reshuffles everyone.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate

from touchpoints.errors import InvalidInput

_SCALE = float(2**64)


def point(seed: str, unit: str) -> float:
    """The unit's place in [0, 1) for this seed."""
    digest = hashlib.sha256(f"{seed}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def boundaries(weights: Sequence[float]) -> list[float]:
    """The upper ends of the variants' ranges (the last is 1)."""
    total = float(sum(weights))
    if not weights or total <= 0 or any(w < 0 for w in weights):
        raise InvalidInput("weights must be non-negative and not all zero", field="variants")
    ends = [c / total for c in accumulate(weights)]
    ends[-1] = 1.0
    return ends


def variant_index(seed: str, unit: str, weights: Sequence[float], coverage: float = 1.0) -> int:
    """The index of the unit's variant, or -1 when coverage leaves it out."""
    if not isinstance(unit, str) or not unit.strip():
        raise InvalidInput("the unit must be a non-empty id", field="unit")
    if coverage < 1.0 and point(f"{seed}:coverage", unit) >= coverage:
        return -1
    ends = boundaries(weights)
    # the first range whose end lies above the point (an empty range never does)
    return min(bisect_right(ends, point(seed, unit)), len(weights) - 1)


def assign(
    seed: str, unit: str, variants: Sequence[str], weights: Sequence[float], coverage: float = 1.0
) -> str | None:
    """The unit's variant key, or None when it is outside the experiment's coverage."""
    index = variant_index(seed, unit, weights, coverage)
    return None if index < 0 else variants[index]


def assign_many(
    seed: str,
    units: Iterable[str],
    variants: Sequence[str],
    weights: Sequence[float],
    coverage: float = 1.0,
) -> dict[str, str | None]:
    """Every unit's variant (for offline use: a list of ids from a file, say)."""
    return {u: assign(seed, u, variants, weights, coverage) for u in units}
