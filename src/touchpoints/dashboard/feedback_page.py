"""The "Voice of the customer" page: NPS and its interval over time, CSAT, sentiment of
survey comments and mentions, the themes of negative and positive texts, share of voice.
Every number is a feedback report (`touchpoints.models.reports.run_report`) for the
page's filters, so it equals what `touchpoints feedback` and the API give."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from touchpoints.dashboard import charts
from touchpoints.dashboard.filters import Filters
from touchpoints.dashboard.page import Control, Page, Table, Tile
from touchpoints.models.reports import run_report
from touchpoints.warehouse import Warehouse


def _terms(query: Mapping[str, Any]) -> list[str]:
    raw = query.get("term") or []
    values = [raw] if isinstance(raw, str) else list(raw)
    return [t.strip() for value in values for t in str(value).split(",") if t.strip()]


def voice(warehouse: Warehouse, filters: Filters, query: Mapping[str, Any]) -> Page:
    """NPS, CSAT and sentiment tiles; NPS and sentiment trends; themes; mentions."""
    run = lambda name, **p: run_report(warehouse, name, filters.params(**p))  # noqa: E731
    total = run("nps").rows[0]
    satisfied = run("csat").rows
    csat = satisfied[0] if satisfied else {"csat": None, "ces_mean": None}
    overall = run("sentiment", period="all").rows
    texts = sum(row["texts"] for row in overall)
    mean = sum(row["mean_compound"] * row["texts"] for row in overall) / texts if texts else None
    tiles = [
        Tile("nps", "NPS", total["nps"]),
        Tile("nps_responses", "NPS answers", total["responses"]),
        Tile("csat", "CSAT", csat["csat"], "percent"),
        Tile("ces", "CES (mean effort)", csat["ces_mean"], "ratio"),
        Tile("sentiment", "Mean sentiment", mean, "ratio"),
    ]
    weekly = run("nps", period="week").rows
    weeks = [row["period"] for row in weekly]
    nps_trend = charts.lines(
        weeks,
        {
            "NPS": [row["nps"] for row in weekly],
            "95% low": [row["nps_low"] for row in weekly],
            "95% high": [row["nps_high"] for row in weekly],
        },
        "NPS per week, with its 95% interval",
    )
    trend = run("sentiment", period="week").rows
    periods = sorted({row["period"] for row in trend})
    cells = {(row["period"], row["source"]): row["mean_compound"] for row in trend}
    sources = sorted({row["source"] for row in trend})
    sentiment_trend = charts.lines(
        periods,
        {source: [cells.get((p, source)) for p in periods] for source in sources},
        "Mean sentiment per week (VADER compound, −1 to 1)",
    )
    terms = _terms(query)
    mentions = (
        run("mentions", view="share", term=terms) if terms else run("mentions", view="platforms")
    )
    tables = [
        Table.of("themes", "Themes: negative vs positive texts", run("themes", top="10")),
        Table.of("share_of_voice" if terms else "platforms",
                 "Share of voice" if terms else "Mentions by platform", mentions),
        Table.of("detractors", "What detractors did in the 7 days before answering",
                 run("nps", view="detractors", top="10")),
        Table.of("csat", "CSAT and CES per week", run("csat", period="week")),
    ]  # fmt: skip
    spikes = [row for row in run("mentions", view="volume").rows if row["spike"]]
    tables.append(Table("spikes", "Mention spikes (robust z ≥ 3.5)",
                        ["day", "mentions", "baseline", "z"], spikes))  # fmt: skip
    controls = [
        Control("term", "Brand and competitor terms", terms, many=True, placeholder="Acme"),
    ]
    return Page(
        "Voice of the customer",
        tiles,
        [("nps_trend", nps_trend), ("sentiment_trend", sentiment_trend)],
        tables,
        controls,
        notes=[
            "NPS counts answers 9-10 as promoters and 0-6 as detractors; its interval is the"
            " normal approximation. Sentiment is VADER's; emails and phone numbers in texts"
            " were masked when they arrived."
        ],
    )
