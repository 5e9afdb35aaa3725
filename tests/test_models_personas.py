"""Personas: planted groups are found again, the choice of k is the silhouette's, the
words name what sets each group apart, and units do not matter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.metrics import adjusted_rand_score

from touchpoints.errors import InvalidInput
from touchpoints.models.personas import _prepared, breakdown, describe, fit_personas


def planted(n: int = 200, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """Three kinds of customer: big store spenders, frequent small web buyers, and
    newsletter readers who rarely buy."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([0, 1, 2], n)
    orders_mean = np.array([3.0, 12.0, 0.5])[groups]
    order_value = np.array([400.0, 40.0, 60.0])[groups]
    orders = rng.poisson(orders_mean) + 1
    frame = pd.DataFrame(
        {
            "orders": orders,
            "revenue": orders * rng.gamma(20.0, order_value / 20.0),
            "store_share": np.clip(rng.normal([0.8, 0.05, 0.1], 0.08)[groups], 0, 1),
            "email_open_rate": np.clip(rng.normal([0.1, 0.2, 0.7], 0.08)[groups], 0, 1),
        },
        index=[f"c{i:04d}" for i in range(3 * n)],
    )
    return frame, groups


def silhouette_by_hand(values: np.ndarray, labels: np.ndarray) -> float:
    """Rousseeuw's silhouette from the pairwise distances: (b - a) / max(a, b)."""
    distances = cdist(values, values)
    scores = []
    for i, own in enumerate(labels):
        same = labels == own
        if same.sum() == 1:
            scores.append(0.0)
            continue
        a = distances[i, same].sum() / (same.sum() - 1)
        b = min(distances[i, labels == other].mean() for other in set(labels) - {own})
        scores.append((b - a) / max(a, b))
    return float(np.mean(scores))


def test_planted_groups_are_found_and_described() -> None:
    features, truth = planted()
    model = fit_personas(features, range(2, 7), seed=1)
    assert model.k == 3
    assert adjusted_rand_score(truth, model.clusters.to_numpy()) > 0.95
    assert sum(p.size for p in model.personas) == len(features)
    # The persona holding most of planted group 2 is told apart by its email opens.
    readers = model.clusters[truth == 2].mode()[0]
    spenders = model.clusters[truth == 0].mode()[0]
    by_cluster = {p.cluster: p for p in model.personas}
    assert "high email open rate" in by_cluster[readers].name
    assert "high store share" in by_cluster[spenders].name
    assert by_cluster[spenders].means["revenue"] > 3 * by_cluster[readers].means["revenue"]


def test_k_is_the_best_silhouette_computed_independently() -> None:
    features, _ = planted(n=40)
    model = fit_personas(features, range(2, 5), seed=0)
    values = _prepared(features).to_numpy()
    assert model.silhouettes[model.k] == pytest.approx(
        silhouette_by_hand(values, model.clusters.to_numpy()), rel=1e-9
    )
    assert model.silhouettes[model.k] == max(model.silhouettes.values())


def test_units_and_column_order_do_not_matter() -> None:
    features, _ = planted(n=60)
    base = fit_personas(features, range(2, 5), seed=0).clusters
    rescaled = features.assign(revenue=features.revenue * 100)[features.columns[::-1]]
    again = fit_personas(rescaled, range(2, 5), seed=0).clusters
    assert adjusted_rand_score(base, again) == 1.0


def test_description_words() -> None:
    z = pd.Series({"orders": 1.2, "revenue": -0.7, "email_open_rate": 0.1, "tenure": 0.6})
    assert describe(z, {"orders": "order count"}) == "high order count, low revenue, high tenure"
    assert describe(pd.Series({"orders": 0.2})) == "typical customers"


def test_breakdown_shares() -> None:
    clusters = pd.Series([0, 0, 0, 1], index=list("abcd"))
    traits = pd.Series({"a": "FR", "b": "FR", "d": "DE"})
    table = breakdown(clusters, traits)
    assert table.loc[0, "FR"] == pytest.approx(2 / 3)
    assert table.loc[0, "(unknown)"] == pytest.approx(1 / 3)
    assert table.loc[1, "DE"] == 1.0


@pytest.mark.parametrize(
    ("features", "k_range"),
    [
        (pd.DataFrame({"name": ["a", "b", "c"]}), range(2, 3)),
        (pd.DataFrame({"x": [1.0, None, 3.0, 4.0]}), range(2, 3)),
        (pd.DataFrame({"x": [1.0] * 10}), range(2, 3)),
        (pd.DataFrame({"x": [1.0, 2.0, 3.0]}), range(2, 4)),
        (pd.DataFrame({"x": np.arange(10.0)}), range(1, 3)),
    ],
)
def test_bad_input_is_refused(features: pd.DataFrame, k_range: range) -> None:
    with pytest.raises(InvalidInput):
        fit_personas(features, k_range)


def test_persona_breakdown_rows() -> None:
    from touchpoints.models.persona_data import persona_breakdown

    features, truth = planted(n=30)
    model = fit_personas(features, range(2, 5), seed=0)
    countries = pd.Series(np.where(truth == 0, "FR", "DE"), index=features.index)
    rows = persona_breakdown(model, countries.iloc[:-5])  # five customers without a trait
    by_cluster: dict[int, float] = {}
    for row in rows:
        by_cluster[row["cluster"]] = by_cluster.get(row["cluster"], 0.0) + row["share"]
    assert all(total == pytest.approx(1.0) for total in by_cluster.values())
    spenders = model.clusters[truth == 0].mode()[0]
    french = [r for r in rows if r["cluster"] == spenders and r["value"] == "FR"]
    assert french and french[0]["share"] > 0.9
    assert any(r["value"] == "(unknown)" for r in rows)
