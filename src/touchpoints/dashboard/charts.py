"""Plotly figures as plain data (traces and layout), drawn in the page by plotly.js.

Colours are the Okabe-Ito palette, told apart by people with any common colour-vision
deficiency; sequential scales are Viridis, readable in grey too.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
Figure = dict[str, Any]


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 15}},
        "margin": {"l": 48, "r": 16, "t": 40, "b": 40},
        "colorway": list(PALETTE),
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "legend": {"orientation": "h", "y": -0.2},
        **extra,
    }


def lines(x: Sequence[Any], series: dict[str, Sequence[Any]], title: str) -> Figure:
    """One line per series over the same x; a series named `… (previous)` is dashed."""
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": list(x),
            "y": list(values),
            "line": {"dash": "dot" if name.endswith("(previous)") else "solid"},
        }
        for name, values in series.items()
    ]
    return {"data": traces, "layout": _layout(title)}


def bars(
    categories: Sequence[Any], series: dict[str, Sequence[Any]], title: str, *, flip: bool = True
) -> Figure:
    """Grouped bars, horizontal by default (long category names stay readable)."""
    traces = []
    for name, values in series.items():
        axis = {"y": list(categories), "x": list(values)} if flip else {
            "x": list(categories), "y": list(values)
        }  # fmt: skip
        traces.append({"type": "bar", "name": name, "orientation": "h" if flip else "v", **axis})
    extra = {"yaxis": {"autorange": "reversed", "automargin": True}} if flip else {}
    return {"data": traces, "layout": _layout(title, barmode="group", **extra)}


def funnel(steps: Sequence[str], users: Sequence[int], title: str) -> Figure:
    """Bars of users per step, with the drop-off from the step before as a second bar."""
    dropped = [0] + [max(a - b, 0) for a, b in pairwise(users)]
    data = [
        {"type": "bar", "name": "reached", "x": list(steps), "y": list(users)},
        {"type": "bar", "name": "dropped off", "x": list(steps), "y": dropped,
         "marker": {"color": PALETTE[5]}},
    ]  # fmt: skip
    return {"data": data, "layout": _layout(title, barmode="stack")}


def sankey(links: Sequence[dict[str, Any]], title: str) -> Figure:
    """A Sankey diagram from (source, target, value) links."""
    labels = list(
        dict.fromkeys([row["source"] for row in links] + [row["target"] for row in links])
    )
    index = {label: i for i, label in enumerate(labels)}
    data = [
        {
            "type": "sankey",
            "node": {"label": labels, "pad": 14, "thickness": 14, "color": PALETTE[0]},
            "link": {
                "source": [index[row["source"]] for row in links],
                "target": [index[row["target"]] for row in links],
                "value": [row["value"] for row in links],
            },
        }
    ]
    return {"data": data, "layout": _layout(title)}


def heatmap(
    z: Sequence[Sequence[Any]],
    x: Sequence[Any],
    y: Sequence[Any],
    title: str,
    *,
    percent: bool = False,
    reverse_y: bool = True,
) -> Figure:
    """A heat map of rows `z` (one per y) over columns x, on the Viridis scale."""
    trace: dict[str, Any] = {
        "type": "heatmap",
        "z": [list(row) for row in z],
        "x": list(x),
        "y": list(y),
        "colorscale": "Viridis",
        "hoverongaps": False,
    }
    if percent:
        trace["zmin"], trace["zmax"] = 0, 1
        trace["colorbar"] = {"tickformat": ".0%"}
    layout = _layout(
        title, yaxis={"autorange": "reversed" if reverse_y else True, "type": "category"}
    )
    return {"data": [trace], "layout": layout}


def histogram(values: Sequence[float], title: str, x_title: str) -> Figure:
    data = [{"type": "histogram", "x": list(values), "marker": {"color": PALETTE[0]}}]
    return {"data": data, "layout": _layout(title, xaxis={"title": {"text": x_title}})}


def click_map(cells: Sequence[dict[str, Any]], columns: int, rows: int, title: str) -> Figure:
    """Click density over the page: a columns × rows grid (top left first), drawn with
    the page's proportions so the picture reads like the layout."""
    z: list[list[int | None]] = [[None] * columns for _ in range(rows)]
    for cell in cells:
        z[cell["cell_y"]][cell["cell_x"]] = cell["clicks"]
    trace = {
        "type": "heatmap",
        "z": z,
        "colorscale": "Viridis",
        "hoverongaps": False,
        "xgap": 1,
        "ygap": 1,
        "colorbar": {"title": {"text": "clicks"}},
    }
    layout = _layout(
        title,
        xaxis={"visible": False, "constrain": "domain"},
        yaxis={"visible": False, "autorange": "reversed", "scaleanchor": "x"},
        height=720,
    )
    return {"data": [trace], "layout": layout}
