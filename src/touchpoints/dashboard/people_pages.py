"""The pages about people and pages: a customer's profile and timeline, segments and
predictions, click heat maps, and how to install the tracker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ibis
import orjson

from touchpoints.collect.sources import list_sources
from touchpoints.dashboard import charts
from touchpoints.dashboard.filters import Filters
from touchpoints.dashboard.page import Control, Page, Table, Tile
from touchpoints.errors import TouchpointsError
from touchpoints.insights import heatmaps as heat
from touchpoints.insights.frame import user_events
from touchpoints.insights.reports import ReportResult, read_scope
from touchpoints.models.customer_voice import voice_summary
from touchpoints.models.reports import run_report
from touchpoints.privacy.audit import audited_profile
from touchpoints.warehouse import Warehouse

Query = Mapping[str, Any]
GRID = (24, 48)  # heat map cells across and down the page
PROFILE_FIELDS = (
    "customer_id",
    "first_seen",
    "last_seen",
    "channels",
    "last_channel",
    "sessions",
    "orders",
    "revenue",
    "average_order_value",
    "favourite_categories",
    "email_open_rate",
)


def _first(query: Query, name: str, default: str = "") -> str:
    return ((query.get(name) or [default])[0] or default).strip()


def customers(warehouse: Warehouse, filters: Filters, query: Query, actor: str) -> Page:
    """Search by any identifier; the profile (an audited read), the customer's voice
    (latest NPS and CSAT, answers, mentions, mean sentiment) and their timeline."""
    wanted = _first(query, "q")
    controls = [Control("q", "Identifier", wanted, placeholder="email, user id, cus_…")]
    if not wanted:
        profiles = warehouse.table("profiles")
        top = (
            profiles.order_by(ibis.desc("revenue"))
            .limit(20)
            .select("customer_id", "orders", "revenue", "channels", "last_seen")
        )
        rows = top.to_pyarrow().to_pylist()
        for row in rows:
            row["customer_id_link"] = f"/dashboard/customers?q={row['customer_id']}"
        columns = ["customer_id", "orders", "revenue", "channels", "last_seen"]
        table = Table("top_customers", "Customers with the most revenue", columns, rows)
        return Page("Customers", tables=[table], controls=controls)
    found = audited_profile(warehouse, wanted, 200, actor=actor, reason="dashboard")
    timeline = found.pop("timeline")
    traits = orjson.loads(found["traits"]) if found.get("traits") else {}
    voice = voice_summary(warehouse, found["customer_id"])
    latest = voice["latest"]
    tiles = [
        Tile("orders", "Orders", found.get("orders")),
        Tile("revenue", "Revenue", found.get("revenue"), "money"),
        Tile("sessions", "Sessions", found.get("sessions")),
        Tile("nps", "Latest NPS answer", (latest["nps"] or {}).get("score")),
        Tile("csat", "Latest CSAT answer", (latest["csat"] or {}).get("score")),
        Tile("survey_answers", "Survey answers", voice["answers"]),
        Tile("mentions", "Mentions", voice["mentions"]),
        Tile("sentiment", "Mean sentiment", voice["mean_sentiment"], "ratio"),
    ]
    by_day: dict[tuple[str, str], int] = {}
    for event in timeline:
        key = (event["timestamp"].date().isoformat(), event["channel"])
        by_day[key] = by_day.get(key, 0) + 1
    channel_names = sorted({channel for _, channel in by_day})
    days = sorted({day for day, _ in by_day})
    figure = charts.bars(
        days,
        {c: [by_day.get((d, c), 0) for d in days] for c in channel_names},
        "Events per day by channel (latest 200)",
        flip=False,
    )
    profile_rows = [{"field": k, "value": found.get(k)} for k in PROFILE_FIELDS if k in found]
    profile_rows += [{"field": f"trait: {k}", "value": v} for k, v in sorted(traits.items())]
    profile_rows.append({"field": "identifiers", "value": found.get("identifiers")})
    return Page(
        f"Customer {found['customer_id']}",
        tiles,
        [("timeline", figure)],
        [
            Table("profile", "Profile", ["field", "value"], profile_rows),
            Table(
                "voice",
                "Latest survey answers",
                ["kind", "score", "survey", "question", "timestamp"],
                [{"kind": k, **v} for k, v in latest.items() if v],
            ),
            Table(
                "timeline",
                "Timeline (latest first)",
                list(timeline[0]) if timeline else [],
                timeline,
            ),
        ],
        controls,
        notes=["Reading a profile is recorded in the audit log with your key."],
    )


def predictions(warehouse: Warehouse, filters: Filters, query: Query) -> Page:
    """RFM grid, personas, CLV distribution, churn risk, recommendations."""
    rfm = run_report(warehouse, "rfm", {})
    counts: dict[tuple[int, int], int] = {}
    for row in rfm.rows:
        counts[(row["r"], row["f"])] = counts.get((row["r"], row["f"]), 0) + 1
    grid = charts.heatmap(
        [[counts.get((r, f), 0) for f in range(1, 6)] for r in range(5, 0, -1)],
        [f"F{f}" for f in range(1, 6)],
        [f"R{r}" for r in range(5, 0, -1)],
        "Customers by recency (R) and frequency (F) score",
    )
    segments: dict[str, int] = {}
    for row in rfm.rows:
        segments[row["segment"]] = segments.get(row["segment"], 0) + 1
    named = sorted(segments.items(), key=lambda item: -item[1])
    segment_table = Table(
        "rfm_segments",
        "RFM segments",
        ["segment", "customers"],
        [{"segment": s, "customers": n} for s, n in named],
    )
    notes: list[str] = []

    def attempt(title: str, name: str, params: dict[str, str]) -> ReportResult | None:
        """A model's report, or a note saying why it cannot run on this data yet."""
        try:
            return run_report(warehouse, name, params)
        except TouchpointsError as exc:
            notes.append(f"{title}: {exc.message}")
            return None

    tables = [segment_table]
    figures = [("rfm", grid)]
    personas = attempt("Personas", "personas", {})
    if personas is not None:
        tables.append(Table.of("personas", "Personas", personas))
    clv = attempt("Lifetime value", "clv", {"customers": "true", "top": "100000"})
    if clv is not None:
        values = [row["clv"] for row in clv.rows]
        figures.append(("clv", charts.histogram(values, "CLV over the next 12 months", "CLV")))
        tables.append(Table("clv", "Highest CLV", clv.columns, clv.rows[:20]))
    churn = attempt("Churn risk", "churn", {"top": "20"})
    if churn is not None:
        rows = [
            {**row, "drivers": ", ".join(d["feature"] for d in row.get("drivers") or [])}
            for row in churn.rows
        ]
        tables.append(Table("churn", "Highest churn risk", churn.columns, rows))
    who = _first(query, "customer")
    picks = attempt("Recommendations", "recommend", {"identifier": who, "k": "10"}) if who else None
    if picks is not None:
        tables.append(Table.of("recommendations", f"Recommended for {who}", picks))
    controls = [Control("customer", "Recommendations for", who, placeholder="an identifier")]
    return Page(
        "Segments and predictions",
        [Tile("customers_scored", "Customers scored", len(rfm.rows))],
        figures,
        tables,
        controls,
        notes,
    )


def heatmaps(warehouse: Warehouse, filters: Filters, query: Query) -> Page:
    """Click density over a page's layout and how far down its visitors scroll."""
    events = user_events(warehouse, read_scope(filters.params()))
    pages = ReportResult(
        ["page_path", "clicks"], heat.heatmap_pages(events).to_pyarrow().to_pylist()
    )
    path = _first(query, "path") or (pages.rows[0]["page_path"] if pages.rows else "/")
    columns, rows = GRID
    cells = heat.click_grid(events, path, columns, rows).to_pyarrow().to_pylist()
    depth = heat.scroll_depth(events, path).to_pyarrow().to_pylist()
    targets = heat.click_targets(events, path).to_pyarrow().to_pylist()
    scroll = charts.bars(
        [f"{row['depth']}%" for row in depth],
        {"share of page views": [row["share"] for row in depth]},
        "How far down the page visitors scrolled",
        flip=False,
    )
    options = [row["page_path"] for row in pages.rows]
    return Page(
        f"Heat map of {path}",
        [Tile("clicks", "Clicks", sum(cell["clicks"] for cell in cells))],
        [
            ("clicks", charts.click_map(cells, columns, rows, f"Clicks on {path}")),
            ("scroll", scroll),
        ],
        [
            Table("targets", "Most clicked elements", ["selector", "text", "clicks"], targets),
            Table("scroll_depth", "Scroll depth", ["depth", "views_reaching", "share"], depth),
            Table.of("pages", "Pages with clicks", pages),
        ],
        [Control("path", "Page", path, options=options or None)],
    )


def install(warehouse: Warehouse, base_url: str) -> Page:
    """The tracker snippet to paste into a site, and the sources that can take it."""
    from touchpoints.collect.tracker import snippet

    sources = [
        {
            "source": s.name,
            "source_id": s.source_id,
            "channel": s.channel,
            "write_key": f"{s.write_key_prefix}…",
        }
        for s in list_sources(warehouse)
    ]
    return Page(
        "Install the tracker",
        tables=[
            Table("sources", "Sources", ["source", "source_id", "channel", "write_key"], sources)
        ],
        extra={"snippet": snippet(base_url, "YOUR_WRITE_KEY")},
        notes=[
            "Paste the snippet before </head> on every page, with the write key of a web "
            "source (`touchpoints sources add NAME web` prints one; keys are shown once).",
            "Add requireConsent: true to send nothing until the page calls tp.consent().",
        ],
    )
