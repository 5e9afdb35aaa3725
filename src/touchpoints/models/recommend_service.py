"""Recommendations as a service: the model fitted on the warehouse once and kept until the
events or the identities change, and answers by any identifier of a customer."""

from __future__ import annotations

import threading
from typing import Any

from touchpoints.errors import InvalidInput, NotFound
from touchpoints.identity.lookup import find_customer
from touchpoints.identity.resolve import WATERMARK
from touchpoints.models.recommend import (
    ALSRecommender,
    CooccurrenceRecommender,
    PopularityRecommender,
    Recommender,
    check_k,
    interactions,
)
from touchpoints.warehouse.connection import Warehouse

MODELS = {
    "als": ALSRecommender,
    "cooccurrence": CooccurrenceRecommender,
    "popularity": PopularityRecommender,
}
_cache: dict[tuple[int, str], tuple[tuple[Any, ...], Recommender]] = {}
_cache_lock = threading.Lock()


def _data_version(warehouse: Warehouse) -> tuple[Any, ...]:
    """What a fitted model depends on: the events held and the last identity build."""
    return (warehouse.count("events"), warehouse.get_meta(WATERMARK))


def fitted(warehouse: Warehouse, model: str = "als") -> Recommender:
    """The model fitted on the warehouse as it is now (refitted only when it changed)."""
    if model not in MODELS:
        raise InvalidInput(f"model is one of {', '.join(MODELS)}, not {model!r}", field="model")
    key, version = (id(warehouse), model), _data_version(warehouse)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
    recommender = MODELS[model]().fit(interactions(warehouse))
    with _cache_lock:
        _cache[key] = (version, recommender)
    return recommender


def recommend_for(
    warehouse: Warehouse, identifier: str, k: int = 10, model: str = "als"
) -> dict[str, Any]:
    """The k products a customer (by any identifier) is likeliest to want, best first,
    leaving out what they bought. Someone not (yet) known gets the most popular products,
    flagged `known: false`, so a website can always show something."""
    k = check_k(k)
    recommender = fitted(warehouse, model)
    try:
        customer: str | None = find_customer(warehouse, identifier)
    except NotFound:
        customer = None
    known = customer is not None and customer in recommender.data.user_index
    items = recommender.recommend(customer if known else "", k)  # type: ignore[arg-type]
    return {
        "identifier": identifier,
        "customer_id": customer,
        "known": known,
        "model": model,
        "items": [{"rank": n, "item_id": r.item_id, "score": r.score}
                  for n, r in enumerate(items, start=1)],
    }  # fmt: skip
