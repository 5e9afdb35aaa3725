"""Recommendations served: by any identifier over HTTP with a read key, through the CLI
report, refitted when the data changes, and something to show for a stranger."""

from __future__ import annotations

import httpx
import pytest

from tests.insights_data import event, write_events
from tests.live import LiveServer
from touchpoints.errors import InvalidInput
from touchpoints.identity import build
from touchpoints.models.recommend_service import recommend_for
from touchpoints.models.reports import run_report
from touchpoints.privacy.keys import add_key
from touchpoints.warehouse import Warehouse

GROUPS = {"shoes": ["S1", "S2", "S3", "S4"], "books": ["B1", "B2", "B3", "B4"]}


def shop() -> list[dict]:
    """Ten shoe people and ten book people, each buying one item of their kind and viewing
    two others; u0 of each group bought nothing yet but viewed one item."""
    rows = []
    for kind, items in GROUPS.items():
        for n in range(10):
            user, t = f"{kind}-u{n}", n * 600
            rows.append(event(user, t, "Product Viewed", properties={"product_id": items[n % 4]}))
            rows.append(event(user, t + 60, "Product Viewed",
                              properties={"product_id": items[(n + 1) % 4]}))  # fmt: skip
            if n:
                rows.append(event(user, t + 120, "Order Completed", channel="store" if n % 2
                                  else "web", properties={"products": [
                                      {"product_id": items[(n + 2) % 4]}]}))  # fmt: skip
    return rows


def test_recommendations_stay_in_the_customers_world(duck: Warehouse) -> None:
    write_events(duck, shop())
    build(duck)
    for model in ("als", "cooccurrence"):
        for kind, items in GROUPS.items():
            found = recommend_for(duck, f"{kind}-u3", k=2, model=model)
            assert found["known"] and len(found["items"]) == 2
            picked = [i["item_id"] for i in found["items"]]
            assert set(picked) <= set(items), (model, kind, picked)
            assert items[(3 + 2) % 4] not in picked  # bought already
    stranger = recommend_for(duck, "nobody@example.com", k=3, model="als")
    assert not stranger["known"] and stranger["customer_id"] is None
    assert [i["item_id"] for i in stranger["items"]] == [
        i["item_id"] for i in recommend_for(duck, "nobody", k=3, model="popularity")["items"]
    ]
    with pytest.raises(InvalidInput):
        recommend_for(duck, "shoes-u1", k=0)
    with pytest.raises(InvalidInput):
        run_report(duck, "recommend", {"identifier": "shoes-u1", "model": "magic"})


def test_the_model_is_refitted_when_data_changes(duck: Warehouse) -> None:
    write_events(duck, shop())
    build(duck)
    before = recommend_for(duck, "books-u1", k=10, model="popularity")
    assert "N1" not in {i["item_id"] for i in before["items"]}
    write_events(duck, [event(f"new{n}", 9000 + n, "Product Viewed",
                              properties={"product_id": "N1"}) for n in range(30)])  # fmt: skip
    after = recommend_for(duck, "books-u1", k=1, model="popularity")
    assert after["items"][0]["item_id"] == "N1"


@pytest.mark.slow
def test_recommendations_over_http(server: LiveServer) -> None:
    warehouse = server.warehouse
    write_events(warehouse, shop())
    build(warehouse)
    _, reader = add_key(warehouse, "site", "read")
    url = f"{server.url}/v1/recommendations/shoes-u2"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {server.write_key}"}).status_code in (
        401, 403)  # fmt: skip
    answer = httpx.get(url, params={"k": 3}, headers={"Authorization": f"Bearer {reader}"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["known"] and {i["item_id"] for i in body["items"]} <= set(GROUPS["shoes"])
    bad = httpx.get(url, params={"k": 0}, headers={"Authorization": f"Bearer {reader}"})
    assert bad.status_code in (400, 422)
