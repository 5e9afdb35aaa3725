"""Recommendations: the interaction matrix from the event log, the models against planted
structure and brute force, the metrics against hand-worked cases and scikit-learn, and
the models against popularity on the demo shop."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import label_ranking_average_precision_score, top_k_accuracy_score

from tests.conftest import duckdb_url
from tests.insights_data import T0, event, write_events
from touchpoints.collect.demo import DemoParameters, load_demo
from touchpoints.collect.importers import import_file
from touchpoints.collect.normalize import Envelope, normalize
from touchpoints.errors import InvalidInput
from touchpoints.identity import build
from touchpoints.models.recommend import (
    ALSRecommender,
    CooccurrenceRecommender,
    Interactions,
    PopularityRecommender,
    interaction_events,
    interactions,
)
from touchpoints.models.recommend_eval import (
    average_precision_at_k,
    catalogue_coverage,
    evaluate,
    map_at_k,
    next_best_offer,
    precision_at_k,
    recall_at_k,
    time_split,
)
from touchpoints.warehouse import Warehouse, connect
from touchpoints.warehouse.writer import open_writer


def _order(user: str, when: float, items: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return event(user, when, "Order Completed", properties={"products": items}, **kw)


def _view(user: str, when: float, product: str, name: str = "Product Viewed") -> dict[str, Any]:
    return event(user, when, name, properties={"product_id": product, "name": "x"})


def _dense(data: Interactions) -> dict[str, dict[str, float]]:
    m = data.matrix.toarray()
    return {
        str(u): {str(i): float(m[r, c]) for c, i in enumerate(data.items) if m[r, c]}
        for r, u in enumerate(data.users)
    }


# --------------------------------------------------------------------------- interactions


def test_interaction_matrix_equals_the_hand_reference(warehouse: Warehouse) -> None:
    write_events(
        warehouse,
        [
            _view("u1", 0, "P1"),
            _view("u1", 60, "P1"),
            _view("u1", 90, "P2", "Product Added"),
            _order("u1", 120, [{"product_id": "P2", "quantity": 2}, {"product_id": "P3"}]),
            _order("u2", 30, [{"sku": "S9", "price": 3.0}], channel="store"),
            _view("u2", 40, "P3"),
            event("u3", 10, "Signed Up"),
            event("u3", 20, path="/c/shoes"),
        ],
    )
    data = interactions(warehouse)
    assert list(data.users) == ["user:u1", "user:u2"]
    assert list(data.items) == ["P1", "P2", "P3", "S9"]
    assert _dense(data) == {
        "user:u1": {"P1": 2.0, "P2": 3.0 + 5.0, "P3": 5.0},  # two views; cart + buy; buy
        "user:u2": {"P3": 1.0, "S9": 5.0},  # a store line named by its SKU
    }
    assert data.purchased.toarray().tolist() == [[0, 1, 1, 0], [0, 0, 0, 1]]


def _write_messages(warehouse: Warehouse, channel: str, messages: list[dict]) -> None:
    writer = open_writer(warehouse)
    envelope = Envelope(f"src_{channel}", channel, int(T0.timestamp() * 1e6) + 10**12)
    writer.write([normalize(m, envelope) for m in messages])
    writer.close()


def test_store_purchase_and_web_views_of_one_person_land_on_one_row(
    duck: Warehouse, tmp_path: Path
) -> None:
    identify = {
        "type": "identify",
        "userId": "ana",
        "messageId": "id-1",
        "traits": {"email": "Ana@Example.com"},
        "timestamp": T0.isoformat(),
    }
    _write_messages(duck, "web", [identify])
    write_events(duck, [_view("ana", 100, "P1"), _view("bo", 100, "P2")])
    till = tmp_path / "till.csv"
    till.write_text(
        "order_id,timestamp,sku,product_id,price,email,loyalty_id\n"
        "T-1,2026-03-03T10:00:00Z,SKU-1,P1,20.00,ana@example.com,LC1\n"
        "T-1,2026-03-03T10:00:00Z,SKU-7,,5.00,ana@example.com,LC1\n"
        "T-2,2026-03-04T10:00:00Z,SKU-2,P2,9.00,,LC2\n"
    )
    import_file(duck, "orders", till)

    before = _dense(interactions(duck))
    assert before["anon:loyalty:LC1"] == {"P1": 5.0, "SKU-7": 5.0}  # before build: apart
    assert before["user:ana"] == {"P1": 1.0}

    build(duck)
    data = interactions(duck)
    ana = duck.table("identities").filter(lambda t: t.identifier == "user_id:ana")
    ana_id = ana.customer_id.to_pyarrow().to_pylist()[0]
    rows = _dense(data)
    assert rows.pop(ana_id) == {"P1": 1.0 + 5.0, "SKU-7": 5.0}  # web view + store purchase
    assert sorted(rows.values(), key=str) == [{"P2": 1.0}, {"P2": 5.0}]


def test_empty_interactions_and_bad_weights_are_refused(duck: Warehouse) -> None:
    with pytest.raises(InvalidInput) as caught:
        interactions(duck)
    assert caught.value.field == "events"
    events = pd.DataFrame(
        {"customer_id": ["a"], "item_id": ["x"], "kind": ["click"], "timestamp": [T0]}
    )
    with pytest.raises(InvalidInput) as caught:
        Interactions.from_events(events)
    assert caught.value.field == "weights"
    with pytest.raises(InvalidInput):
        Interactions.from_events(events, {"click": -1.0})
    with pytest.raises(InvalidInput):
        time_split(events.iloc[:0], "2026-01-01")


# --------------------------------------------------------------------------- models


def _events(
    pairs: list[tuple[str, str, str]], when: pd.Timestamp = pd.Timestamp(T0)
) -> pd.DataFrame:
    return pd.DataFrame(
        [(u, i, kind, when) for u, i, kind in pairs],
        columns=["customer_id", "item_id", "kind", "timestamp"],
    )


def _random_events(seed: int, users: int = 12, items: int = 9, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kinds = ("purchase", "cart", "view")
    return _events(
        [
            (f"u{rng.integers(users)}", f"i{rng.integers(items)}", kinds[rng.integers(3)])
            for _ in range(n)
        ]
    )


def _brute_scores(events: pd.DataFrame, similarity: str) -> dict[str, dict[str, float]]:
    """Item-to-item scores by loops over plain dicts, from the definitions."""
    weight = {"purchase": 5.0, "cart": 3.0, "view": 1.0}
    x: dict[str, dict[str, float]] = {}
    for u, i, kind, _ in events.itertuples(index=False):
        x.setdefault(u, {}).setdefault(i, 0.0)
        x[u][i] += weight[kind]
    items = sorted({i for row in x.values() for i in row})
    users = len(x)

    def sim(a: str, b: str) -> float:
        if a == b:
            return 0.0
        if similarity == "cosine":
            dot = sum(row.get(a, 0) * row.get(b, 0) for row in x.values())
            na = math.sqrt(sum(row.get(a, 0) ** 2 for row in x.values()))
            nb = math.sqrt(sum(row.get(b, 0) ** 2 for row in x.values()))
            return dot / (na * nb)
        both = sum(1 for row in x.values() if a in row and b in row)
        return (
            users
            * both
            / (sum(a in row for row in x.values()) * sum(b in row for row in x.values()))
        )

    return {
        u: {j: sum(w * sim(i, j) for i, w in row.items()) for j in items} for u, row in x.items()
    }


@pytest.mark.parametrize(
    ("similarity", "seed"), list(itertools.product(["cosine", "lift"], [1, 2]))
)
def test_cooccurrence_scores_match_a_brute_force_computation(similarity: str, seed: int) -> None:
    events = _random_events(seed)
    data = Interactions.from_events(events)
    model = CooccurrenceRecommender(similarity).fit(data)
    scores = model.scores(np.arange(len(data.users)))
    expected = _brute_scores(events, similarity)
    for r, u in enumerate(data.users):
        for c, i in enumerate(data.items):
            assert scores[r, c] == pytest.approx(expected[u][i], rel=1e-9, abs=1e-12)


def _two_groups(seed: int = 3) -> pd.DataFrame:
    """40 customers per group, each touching 4 of its group's 10 products."""
    rng = np.random.default_rng(seed)
    rows = []
    for group in ("a", "b"):
        for user in range(40):
            for item in rng.choice(10, 4, replace=False):
                rows.append((f"{group}{user}", f"{group}-item{item}", "purchase"))
                rows.append((f"{group}{user}", f"{group}-item{(item + 1) % 10}", "view"))
    return _events(rows)


@pytest.mark.parametrize(
    "model",
    [ALSRecommender(factors=4, seed=1), CooccurrenceRecommender()],
    ids=["als", "cooccurrence"],
)
def test_planted_groups_are_recovered(model: Any) -> None:
    data = Interactions.from_events(_two_groups())
    model.fit(data)
    for customer in data.users:
        recs = model.recommend(customer, 3)
        assert len(recs) == 3
        assert all(item.startswith(customer[0] + "-") for item, _ in recs), (customer, recs)
        scores = [score for _, score in recs]
        assert scores == sorted(scores, reverse=True)


def test_purchased_items_are_excluded_unless_asked_and_unknown_customers_get_popular() -> None:
    events = _events(
        [
            ("u1", "A", "purchase"),
            ("u1", "B", "view"),
            ("u2", "A", "purchase"),
            ("u2", "C", "purchase"),
            ("u3", "C", "view"),
            ("u3", "B", "cart"),
        ]
    )
    data = Interactions.from_events(events)
    for model in (PopularityRecommender(), CooccurrenceRecommender(), ALSRecommender(factors=2)):
        model.fit(data)
        assert "A" not in [i for i, _ in model.recommend("u1", 3)]
        assert [i for i, _ in model.recommend("u2", 3)] == ["B"]  # A, C bought: one left
        assert len(model.recommend("u1", 3, exclude_purchased=False)) == 3
        assert model.top_items(np.array([1]), 3).tolist() == [[1, -1, -1]]
        popular = model.recommend("somebody-new", 2)
        assert popular == [("A", 10.0), ("C", 6.0)]  # weights: A 5+5, C 5+1, B 1+3
        with pytest.raises(InvalidInput) as caught:
            model.recommend("u1", 0)
        assert caught.value.field == "k"


def test_als_is_deterministic() -> None:
    data = Interactions.from_events(_random_events(5, users=30, items=15, n=200))
    first, second = ALSRecommender(seed=4).fit(data), ALSRecommender(seed=4).fit(data)
    assert np.array_equal(first.user_factors, second.user_factors)
    assert np.array_equal(first.item_factors, second.item_factors)


# --------------------------------------------------------------------------- metrics


def test_metrics_on_hand_worked_cases() -> None:
    ranked, truth = [["a", "b", "c", "d"]], [{"b", "d", "x"}]
    # hits at ranks 2 and 4 of 4; three relevant products
    assert precision_at_k(ranked, truth, 4) == 0.5
    assert recall_at_k(ranked, truth, 4) == pytest.approx(2 / 3)
    assert average_precision_at_k(ranked[0], truth[0], 4) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert precision_at_k(ranked, truth, 2) == 0.5
    assert recall_at_k(ranked, truth, 2) == pytest.approx(1 / 3)
    assert average_precision_at_k(ranked[0], truth[0], 2) == pytest.approx((1 / 2) / 2)
    # a second customer with a hit at rank 1 (AP 1); one with no truth is skipped
    ranked2, truth2 = [*ranked, ["x", "y"], ["a"]], [*truth, {"x"}, set()]
    assert map_at_k(ranked2, truth2, 4) == pytest.approx(((1 / 2 + 2 / 4) / 3 + 1) / 2)
    assert precision_at_k(ranked2, truth2, 4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert catalogue_coverage(ranked2, ["a", "b", "c", "d", "x", "y", "z", "w"], 1) == 2 / 8  # a, x
    assert catalogue_coverage(ranked2, ["a", "b", "c", "d", "x", "y", "z", "w"], 4) == 6 / 8
    with pytest.raises(InvalidInput) as caught:
        precision_at_k(ranked, truth, 0)
    assert caught.value.field == "k"
    with pytest.raises(InvalidInput) as caught:
        recall_at_k([["a"]], [set()], 3)
    assert caught.value.field == "relevant"


def _rankings(scores: np.ndarray) -> list[list[int]]:
    return [list(np.argsort(-row, kind="stable")) for row in scores]


def test_full_length_map_is_sklearn_label_ranking_average_precision() -> None:
    rng = np.random.default_rng(11)
    scores = rng.random((50, 12))  # no ties
    truth = rng.random((50, 12)) < 0.25
    truth[truth.sum(axis=1) == 0, 0] = True
    relevant = [set(np.flatnonzero(row)) for row in truth]
    ours = map_at_k(_rankings(scores), relevant, 12)
    assert ours == pytest.approx(label_ranking_average_precision_score(truth, scores))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_recall_with_one_true_product_is_sklearn_top_k_accuracy(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.random((200, 10))
    label = rng.integers(0, 10, 200)
    hit_rate = top_k_accuracy_score(label, scores, k=k, labels=np.arange(10))
    ranked, truth = _rankings(scores), [{int(y)} for y in label]
    assert recall_at_k(ranked, truth, k) == pytest.approx(hit_rate)
    assert precision_at_k(ranked, truth, k) == pytest.approx(hit_rate / k)


def test_time_split_keeps_new_purchases_of_known_customers() -> None:
    early, late = pd.Timestamp("2026-01-01", tz="UTC"), pd.Timestamp("2026-03-01", tz="UTC")
    events = pd.concat(
        [
            _events([("u1", "A", "purchase"), ("u1", "B", "view"), ("u2", "B", "view")], early),
            _events(
                [
                    ("u1", "A", "purchase"),
                    ("u1", "B", "purchase"),
                    ("u2", "C", "purchase"),
                    ("u3", "A", "purchase"),
                    ("u2", "A", "view"),
                ],
                late,
            ),
        ]
    )
    split = time_split(events, "2026-02-01")
    truth = {
        split.train.users[r]: items for r, items in zip(split.rows, split.relevant, strict=True)
    }
    # u1's repeat of A is no news; u2's C is a product unseen before the cutoff; u3 is new
    assert truth == {"u1": {"B"}, "u2": {"C"}}
    with pytest.raises(InvalidInput) as caught:
        evaluate(events, "2026-02-01", k=0)
    assert caught.value.field == "k"


# --------------------------------------------------------------------------- demo shop

SMALL_DEMO = DemoParameters(customers=800, months=12, seed=7)
CUTOFF = "2026-08-01"


@pytest.fixture(scope="module")
def demo_events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pd.DataFrame]:
    wh = connect(duckdb_url(tmp_path_factory.mktemp("recommend") / "demo.duckdb"))
    load_demo(wh, SMALL_DEMO)
    build(wh)
    yield interaction_events(wh)
    wh.close()


def test_models_beat_popularity_on_the_demo_shop(demo_events: pd.DataFrame) -> None:
    table = evaluate(demo_events, CUTOFF, k=10)
    assert list(table.index) == ["als", "cooccurrence", "popularity"]
    assert table.loc["popularity", "customers"] > 200
    for model in ("als", "cooccurrence"):
        for metric in ("recall@10", "precision@10", "map@10", "coverage"):
            assert table.loc[model, metric] > 1.5 * table.loc["popularity", metric], table
    # the same ten for everyone, but for products a customer already bought
    assert 10 / 120 <= table.loc["popularity", "coverage"] < 0.2


def test_purchase_probabilities_are_calibrated_on_held_out_customers(
    demo_events: pd.DataFrame,
) -> None:
    offer = next_best_offer(demo_events, CUTOFF)
    cal = offer.calibration
    assert cal.slope > 0
    assert cal.brier < cal.brier_base_rate  # better than one rate for every pair
    assert cal.auc > 0.75
    assert 0 < cal.purchases < cal.pairs
    customer = demo_events.loc[demo_events["kind"] == "purchase", "customer_id"].iloc[0]
    probabilities = offer.probabilities(customer)
    assert ((probabilities > 0) & (probabilities < 1)).all()
    bought = set(demo_events.query("customer_id == @customer and kind == 'purchase'").item_id)
    assert bought and not bought & set(probabilities.index)
    offers = offer.offers(customer, 5)
    assert [p for _, p in offers] == sorted((p for _, p in offers), reverse=True)
    assert offer.probabilities("nobody").index[0] == offer.item_rates.idxmax()
