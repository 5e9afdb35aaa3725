"""Click heat maps and scroll depth on both engines, against the same counts made in
plain Python from the rows written."""

from __future__ import annotations

import random

import pytest

from tests.insights_data import event, write_events
from touchpoints.errors import InvalidInput
from touchpoints.insights import heatmaps
from touchpoints.warehouse import Warehouse

PATH = "/pricing"


def _click(user: str, i: int, x: float, y: float, w: float, h: float, selector: str) -> dict:
    properties = {"x": x, "y": y, "page_width": w, "page_height": h, "selector": selector}
    return event(user, i, "Element Clicked", path=PATH, properties={**properties, "text": "Buy"})


def test_clicks_land_in_the_cells_of_a_normalised_grid(warehouse: Warehouse) -> None:
    rng = random.Random(5)
    rows, expected = [], {}
    for i in range(60):
        w, h = rng.choice([(1280, 3000), (390, 5200)])  # a laptop and a phone
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        rows.append(_click(f"u{i % 7}", i, x, y, w, h, f"a.cta{i % 3}"))
        cell = (min(int(x / w * 4), 3), min(int(y / h * 5), 4))
        expected[cell] = expected.get(cell, 0) + 1
    edge = _click("u1", 61, 1280, 3000, 1280, 3000, "footer")  # the very corner: last cell
    expected[(3, 4)] = expected.get((3, 4), 0) + 1
    unusable = _click("u1", 62, 10, 10, 0, 0, "x")  # no page size: left out
    elsewhere = event("u2", 63, "Element Clicked", path="/", properties={"x": 1, "y": 1})
    write_events(warehouse, [*rows, edge, unusable, elsewhere])
    events = warehouse.table("events")
    grid = heatmaps.click_grid(events, PATH, columns=4, rows=5).to_pyarrow().to_pylist()
    assert {(r["cell_x"], r["cell_y"]): r["clicks"] for r in grid} == expected
    targets = heatmaps.click_targets(events, PATH).to_pyarrow().to_pylist()
    counts = {}
    for row in [*rows, edge]:
        counts[row["properties"]["selector"]] = counts.get(row["properties"]["selector"], 0) + 1
    assert {r["selector"]: r["clicks"] for r in targets} == counts
    pages = heatmaps.heatmap_pages(events).to_pyarrow().to_pylist()
    assert pages[0] == {"page_path": PATH, "clicks": 62}
    with pytest.raises(InvalidInput):
        heatmaps.click_grid(events, PATH, columns=0)


def test_scroll_depth_is_the_share_of_page_views_reaching_each_depth(
    warehouse: Warehouse,
) -> None:
    rows = []
    reached = {25: 0, 50: 0, 75: 0, 100: 0}
    for i, deepest in enumerate([0, 25, 50, 50, 75, 100, 100, 25]):
        rows.append(event(f"v{i}", i * 100, type="page", path=PATH))
        for depth in (25, 50, 75, 100):
            if depth <= deepest:
                reached[depth] += 1
                props = {"depth": depth, "page_height": 4000}
                rows.append(event(f"v{i}", i * 100 + depth, "Scroll Depth Reached", path=PATH,
                                  properties=props))  # fmt: skip
    write_events(warehouse, rows)
    found = heatmaps.scroll_depth(warehouse.table("events"), PATH).to_pyarrow().to_pylist()
    assert [r["depth"] for r in found] == [25, 50, 75, 100]
    for row in found:
        assert row["views_reaching"] == reached[row["depth"]]
        assert row["share"] == pytest.approx(reached[row["depth"]] / 8)
    none = heatmaps.scroll_depth(warehouse.table("events"), "/never").to_pyarrow().to_pylist()
    assert [(r["views_reaching"], r["share"]) for r in none] == [(0, None)] * 4
