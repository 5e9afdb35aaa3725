"""Product recommendations from the events of every channel (issue #5).

Interactions. Each customer's product events, whatever the channel, are pulled with Ibis
from `events` under the user rule of `touchpoints.insights.frame.user_events` (column
`customer_id`: the resolved customer once identities are built, so a store purchase and
the web views of the same person land on one row). Per the Segment e-commerce spec:

- `Order Completed`: one purchase per line of its `products` array (weight 5);
- `Product Added` (to cart): the event's `product_id` (weight 3);
- `Product Viewed`: the event's `product_id` (weight 1).

A product is named by its `product_id`, else its `sku` (till files may carry only a SKU).
The matrix cell of (customer, product) is the sum of the weights of their events, so a
product bought twice and viewed three times scores 5 + 5 + 3 = 13. Quantities are not
counted: two units in one line are one decision.

Models (each scores every product for a customer; higher is better):

- `PopularityRecommender`: the item's total weight over all customers (the baseline).
- `CooccurrenceRecommender`: item-to-item, written with scipy. Cosine:
  S_ij = x_i·x_j / (‖x_i‖‖x_j‖) over the item columns of the weighted matrix; lift:
  S_ij = N·n_ij / (n_i·n_j) over who touched what (0/1). Diagonal zeroed; a customer's
  scores are their row of the matrix times S.
- `ALSRecommender`: implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008)
  with `implicit.cpu.als.AlternatingLeastSquares`: confidence 1 + α·weight, seeded, one
  thread (and one BLAS thread), so the same data gives the same factors.

`recommend(customer, k)` leaves out what the customer already bought (unless asked not
to) and answers a customer it has never seen with the most popular products.
Evaluation and purchase probabilities are in `touchpoints.models.recommend_eval`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

import ibis
import numpy as np
import orjson
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from touchpoints.errors import InvalidInput
from touchpoints.identity.config import IdentityConfig
from touchpoints.insights.frame import USER, Scope, user_events
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.functions import json_text

#: Which events are interactions, and of which kind.
KINDS: Mapping[str, str] = MappingProxyType(
    {"Order Completed": "purchase", "Product Added": "cart", "Product Viewed": "view"}
)
#: The weight of one interaction of each kind in the matrix (see the module docstring).
WEIGHTS: Mapping[str, float] = MappingProxyType({"purchase": 5.0, "cart": 3.0, "view": 1.0})
EVENT_COLUMNS = ("customer_id", "item_id", "kind", "timestamp")
_BATCH = 2048


def interaction_events(
    warehouse: Warehouse, scope: Scope = Scope(), *, config: IdentityConfig | None = None
) -> pd.DataFrame:
    """One row per product interaction (customer_id, item_id, kind, timestamp): the
    event log's purchases (a row per order line), cart adds and product views."""
    events = user_events(warehouse, scope, config=config)
    events = events.filter(events.event.isin(list(KINDS)))
    is_order = events.event == "Order Completed"
    pulled = events.select(
        customer_id=events[USER],
        event=events.event,
        timestamp=events.timestamp,
        product_id=json_text(events.properties, "product_id"),
        sku=json_text(events.properties, "sku"),
        products=ibis.ifelse(is_order, json_text(events.properties, "products"), ibis.null()),
    ).to_pyarrow()
    rows: list[tuple[str, str, str, object]] = []
    columns = pulled.to_pydict()
    for customer, event, when, product_id, sku, products in zip(
        *(
            columns[c]
            for c in ("customer_id", "event", "timestamp", "product_id", "sku", "products")
        ),
        strict=True,
    ):
        kind = KINDS[event]
        lines = _order_lines(products) if products else None
        if lines is None:
            lines = [product_id or sku]
        rows.extend((customer, item, kind, when) for item in lines if item)
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def _order_lines(products: str) -> list[str] | None:
    """The product ids (else SKUs) of an order's `products` JSON array, or None."""
    try:
        parsed = orjson.loads(products)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, list):
        return None
    items = []
    for line in parsed:
        if isinstance(line, dict):
            value = line.get("product_id") or line.get("sku")
            if value is not None and str(value).strip():
                items.append(str(value).strip())
    return items


@dataclass(frozen=True)
class Interactions:
    """A customer × product matrix of summed weights, and who bought what (0/1)."""

    matrix: sp.csr_matrix
    purchased: sp.csr_matrix
    users: NDArray[np.object_]
    items: NDArray[np.object_]
    user_index: Mapping[str, int] = field(repr=False)
    item_index: Mapping[str, int] = field(repr=False)

    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame,
        weights: Mapping[str, float] = WEIGHTS,
        *,
        items: Sequence[str] | None = None,
    ) -> Interactions:
        """Build the matrix from `interaction_events` rows; `items` fixes the columns
        (events of other products are dropped), else every product seen, sorted."""
        _check_weights(weights)
        missing = set(EVENT_COLUMNS[:3]) - set(events.columns)
        if missing:
            raise InvalidInput(f"events have no column {sorted(missing)[0]!r}", field="events")
        kinds = events["kind"].map(dict(weights))
        if kinds.isna().any():
            unknown = sorted(set(events["kind"][kinds.isna()].astype(str)))[0]
            raise InvalidInput(f"no weight for interaction kind {unknown!r}", field="weights")
        catalogue = np.array(
            sorted(set(events["item_id"])) if items is None else list(items), dtype=object
        )
        item_index = {item: j for j, item in enumerate(catalogue)}
        cols = events["item_id"].map(item_index)
        keep = cols.notna().to_numpy()
        if not keep.any():
            raise InvalidInput("there are no product interactions", field="events")
        kept = events[keep]
        users = np.array(sorted(set(kept["customer_id"])), dtype=object)
        user_index = {user: i for i, user in enumerate(users)}
        r = kept["customer_id"].map(user_index).to_numpy(dtype=np.int64)
        c = cols[keep].to_numpy(dtype=np.int64)
        shape = (len(users), len(catalogue))
        w = kinds[keep].to_numpy(dtype=np.float32)
        matrix = sp.csr_matrix((w, (r, c)), shape=shape, dtype=np.float32)
        bought = (kept["kind"] == "purchase").to_numpy()
        purchased = sp.csr_matrix(
            (np.ones(int(bought.sum()), np.float32), (r[bought], c[bought])), shape=shape
        )
        purchased.data[:] = 1.0  # duplicates were summed
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        return cls(matrix, purchased, users, catalogue, user_index, item_index)


def interactions(
    warehouse: Warehouse,
    scope: Scope = Scope(),
    *,
    weights: Mapping[str, float] = WEIGHTS,
    config: IdentityConfig | None = None,
) -> Interactions:
    """The weighted customer × product matrix of the events in scope (see the module)."""
    return Interactions.from_events(interaction_events(warehouse, scope, config=config), weights)


def _check_weights(weights: Mapping[str, float]) -> None:
    for kind, weight in weights.items():
        if not (isinstance(weight, int | float) and np.isfinite(weight) and weight >= 0):
            raise InvalidInput(f"the weight of {kind!r} must be a number ≥ 0", field="weights")


def check_k(k: object) -> int:
    """`k` as a whole number of at least 1, else InvalidInput."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InvalidInput(f"k must be a whole number of at least 1, not {k!r}", field="k")
    return int(k)


class Recommendation(NamedTuple):
    item_id: str
    score: float


class Recommender:
    """What every model shares: fit on `Interactions`, score, rank, recommend."""

    name = "base"

    def fit(self, data: Interactions) -> Recommender:
        """Learn from `data` (returns self)."""
        if data.matrix.nnz == 0:
            raise InvalidInput("there are no product interactions", field="interactions")
        self.data = data
        self.popularity = np.asarray(data.matrix.sum(axis=0), dtype=np.float64).ravel()
        self._fit(data)
        return self

    def _fit(self, data: Interactions) -> None:
        """Model-specific learning; the base needs none."""

    def scores(self, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """Scores of every product (columns) for the customers at matrix `rows`."""
        return np.broadcast_to(self.popularity, (len(rows), len(self.popularity))).copy()

    def top_items(
        self, rows: NDArray[np.int64], k: int, *, exclude_purchased: bool = True
    ) -> NDArray[np.int64]:
        """The k best product columns per customer row, best first; -1 pads a row whose
        candidates ran out (everything else already bought). Ties go to the lower column."""
        k = check_k(k)
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full((len(rows), k), -1, dtype=np.int64)
        for start in range(0, len(rows), _BATCH):
            batch = rows[start : start + _BATCH]
            scores = self.scores(batch)
            if exclude_purchased:
                bought = self.data.purchased[batch].toarray() > 0
                scores[bought] = -np.inf
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            ranked = np.take_along_axis(scores, order, axis=1)
            out[start : start + len(batch), : order.shape[1]] = np.where(
                np.isneginf(ranked), -1, order
            )
        return out

    def recommend(
        self, customer: str, k: int = 10, *, exclude_purchased: bool = True
    ) -> list[Recommendation]:
        """The k best products for `customer` with their scores; a customer the model
        has not seen gets the most popular products (by the popularity score)."""
        k = check_k(k)
        row = self.data.user_index.get(customer)
        if row is None:
            order = np.argsort(-self.popularity, kind="stable")[:k]
            return [Recommendation(self.data.items[j], float(self.popularity[j])) for j in order]
        scores = self.scores(np.array([row]))[0]
        top = self.top_items(np.array([row]), k, exclude_purchased=exclude_purchased)[0]
        return [Recommendation(self.data.items[j], float(scores[j])) for j in top if j >= 0]


class PopularityRecommender(Recommender):
    """Everyone gets the products with the most weighted interactions."""

    name = "popularity"


class CooccurrenceRecommender(Recommender):
    """Item-to-item: products like the ones a customer touched (cosine or lift)."""

    name = "cooccurrence"

    def __init__(self, similarity: str = "cosine") -> None:
        if similarity not in ("cosine", "lift"):
            raise InvalidInput("similarity is 'cosine' or 'lift'", field="similarity")
        self.similarity = similarity

    def _fit(self, data: Interactions) -> None:
        x = data.matrix.astype(np.float64)
        if self.similarity == "lift":
            x = (x > 0).astype(np.float64)
        gram = (x.T @ x).tocsr()
        diag = gram.diagonal()
        if self.similarity == "cosine":
            inv = np.divide(1.0, np.sqrt(diag), out=np.zeros_like(diag), where=diag > 0)
            sim = sp.diags(inv) @ gram @ sp.diags(inv)
        else:
            inv = np.divide(1.0, diag, out=np.zeros_like(diag), where=diag > 0)
            sim = x.shape[0] * (sp.diags(inv) @ gram @ sp.diags(inv))
        sim = sp.csr_matrix(sim)
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        self.similarity_matrix = sim

    def scores(self, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """Row of the weighted matrix times the item similarity matrix."""
        user_rows = self.data.matrix[rows].astype(np.float64)
        return np.asarray((user_rows @ self.similarity_matrix).todense(), dtype=np.float64)


class ALSRecommender(Recommender):
    """Implicit-feedback ALS (`implicit.cpu.als`), seeded and single-threaded."""

    name = "als"

    def __init__(
        self,
        factors: int = 16,
        regularization: float = 0.1,
        alpha: float = 2.0,
        iterations: int = 20,
        seed: int = 0,
    ) -> None:
        self.params = {
            "factors": factors,
            "regularization": regularization,
            "alpha": alpha,
            "iterations": iterations,
        }
        self.seed = seed

    def _fit(self, data: Interactions) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # implicit warns of (and is slowed by) BLAS threads
            model = AlternatingLeastSquares(**self.params, random_state=self.seed, num_threads=1)
            model.fit(data.matrix.astype(np.float32).tocsr(), show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float64)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float64)

    def scores(self, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """Dot products of the customers' and the products' factors."""
        return self.user_factors[rows] @ self.item_factors.T


MODELS = {
    "als": ALSRecommender,
    "cooccurrence": CooccurrenceRecommender,
    "popularity": PopularityRecommender,
}
