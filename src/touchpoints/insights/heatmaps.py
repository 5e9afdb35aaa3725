"""Where people click on a page and how far down they scroll, from the tracker's events.

The tracker (`/tp.js`) sends `Element Clicked` with the click's page coordinates (`x`,
`y`, CSS pixels from the top left of the document) and the document's size then
(`page_width`, `page_height`), and `Scroll Depth Reached` once per page view for each of
25, 50, 75 and 100 percent of the page height seen. Coordinates are normalised to the
document's size, so clicks from a phone and a laptop land on one picture of the layout.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from touchpoints.errors import InvalidInput
from touchpoints.warehouse.functions import json_text

CLICK = "Element Clicked"
SCROLL = "Scroll Depth Reached"
DEPTHS = (25, 50, 75, 100)


def _number(events: ir.Table, name: str) -> ir.FloatingValue:
    return json_text(events.properties, name).cast("float64")


def clicks(events: ir.Table, path: str) -> ir.Table:
    """The clicks on `path` with usable coordinates: x and y as fractions of the page."""
    on_page = events.filter((events.event == CLICK) & (events.page_path == path))
    located = on_page.mutate(
        _x=_number(on_page, "x"),
        _y=_number(on_page, "y"),
        _w=_number(on_page, "page_width"),
        _h=_number(on_page, "page_height"),
        selector=json_text(on_page.properties, "selector"),
        text=json_text(on_page.properties, "text"),
    )
    usable = located.filter(
        (located._w > 0) & (located._h > 0) & (located._x >= 0) & (located._y >= 0)
    )
    return usable.select(
        "timestamp",
        "selector",
        "text",
        fx=ibis.least(usable._x / usable._w, 1.0),
        fy=ibis.least(usable._y / usable._h, 1.0),
    )


def click_grid(events: ir.Table, path: str, columns: int = 24, rows: int = 48) -> ir.Table:
    """Clicks on `path` counted in a grid of `columns` × `rows` cells over the page
    (cell 0, 0 at the top left): (cell_x, cell_y, clicks), empty cells left out."""
    if not (1 <= columns <= 200 and 1 <= rows <= 400):
        raise InvalidInput("a heat map grid is 1-200 columns by 1-400 rows", field="columns")
    located = clicks(events, path)
    cells = located.select(
        cell_x=ibis.least((located.fx * columns).floor().cast("int64"), columns - 1),
        cell_y=ibis.least((located.fy * rows).floor().cast("int64"), rows - 1),
    )
    return cells.group_by("cell_x", "cell_y").agg(clicks=cells.count()).order_by("cell_y", "cell_x")


def click_targets(events: ir.Table, path: str, top: int = 20) -> ir.Table:
    """The most clicked elements of `path`: selector, its text, clicks."""
    located = clicks(events, path)
    counted = located.group_by("selector").agg(clicks=located.count(), text=located.text.max())
    return counted.order_by([ibis.desc("clicks"), "selector"]).limit(top)


def scroll_depth(events: ir.Table, path: str) -> ir.Table:
    """Per depth (25, 50, 75, 100): page views of `path` that reached it, and their
    share of all page views of `path`."""
    viewed = events.filter((events.type == "page") & (events.page_path == path))
    views = viewed.aggregate(_views=viewed.count())
    scrolled = events.filter((events.event == SCROLL) & (events.page_path == path))
    depth = _number(scrolled, "depth").cast("int64")
    reached = scrolled.mutate(depth=depth).filter(depth.isin(DEPTHS))
    counted = reached.group_by("depth").agg(views_reaching=reached.count())
    grid = ibis.memtable({"depth": list(DEPTHS)}, schema={"depth": "int64"})
    joined = grid.left_join(counted, "depth").cross_join(views)
    reaching = joined.views_reaching.fill_null(0)
    total = joined._views.cast("float64")
    return joined.select(
        depth=joined.depth,
        views_reaching=reaching,
        share=ibis.ifelse(total > 0, reaching / total, ibis.null("float64")),
    ).order_by("depth")


def heatmap_pages(events: ir.Table, top: int = 50) -> ir.Table:
    """Pages with clicks recorded, most clicked first: page_path, clicks."""
    clicked = events.filter((events.event == CLICK) & events.page_path.notnull())
    return (
        clicked.group_by("page_path")
        .agg(clicks=clicked.count())
        .order_by([ibis.desc("clicks"), "page_path"])
        .limit(top)
    )
