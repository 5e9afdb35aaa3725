"""The analyst's pages: overview, traffic, funnel, journeys, retention, campaigns. Each
is one or more insights reports (`touchpoints.models.reports.run_report`) for the
page's filters, so every number equals what the CLI and the API give for them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from touchpoints.dashboard import charts
from touchpoints.dashboard.filters import Filters
from touchpoints.dashboard.page import Control, Page, Table, Tile
from touchpoints.insights.reports import ReportResult
from touchpoints.models.reports import run_report
from touchpoints.warehouse import Warehouse

Query = Mapping[str, Any]
DEFAULT_STEPS = ["Product Viewed", "Product Added", "Order Completed"]


def _total(result: ReportResult) -> dict[str, Any]:
    return result.rows[0] if result.rows else {c: None for c in result.columns}


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


def money_totals(kpis: ReportResult) -> dict[str, float | None]:
    """Revenue of all channels, and revenue, cost and ROAS of those with spend."""
    revenue = sum(row["revenue"] or 0 for row in kpis.rows)
    paid = [row for row in kpis.rows if row.get("cost")]
    paid_revenue = sum(row["revenue"] or 0 for row in paid)
    cost = sum(row["cost"] for row in paid)
    return {"revenue": revenue, "cost": cost, "roas": _ratio(paid_revenue, cost)}


def overview(warehouse: Warehouse, filters: Filters, query: Query) -> Page:
    run = lambda f, name, **p: run_report(warehouse, name, f.params(**p))  # noqa: E731
    now, before = filters, filters.previous()
    web, web_before = (
        _total(run(now, "web", period="all")),
        _total(run(before, "web", period="all")),
    )
    kpis, kpis_before = run(now, "kpis", by="channel"), run(before, "kpis", by="channel")
    money, money_before = money_totals(kpis), money_totals(kpis_before)
    tiles = [
        Tile("users", "Users", web["users"], previous=web_before["users"]),
        Tile("sessions", "Sessions", web["sessions"], previous=web_before["sessions"]),
        Tile(
            "conversion_rate",
            "Conversion rate",
            _ratio(web["conversions"], web["sessions"]),
            "percent",
            _ratio(web_before["conversions"], web_before["sessions"]),
        ),
        Tile("revenue", "Revenue", money["revenue"], "money", money_before["revenue"]),
        Tile("roas", "ROAS", money["roas"], "ratio", money_before["roas"]),
    ]
    daily, daily_before = run(now, "web", period="day"), run(before, "web", period="day")
    days = [row["period"] for row in daily.rows]
    earlier = {row["period"]: row for row in daily_before.rows}
    shifted = [earlier.get(day - (now.start - before.start), {}) for day in days]
    trend = charts.lines(
        days,
        {
            "users": [row["users"] for row in daily.rows],
            "sessions": [row["sessions"] for row in daily.rows],
            "users (previous)": [row.get("users") for row in shifted],
            "sessions (previous)": [row.get("sessions") for row in shifted],
        },
        "Users and sessions per day, against the period before",
    )
    top = sorted(kpis.rows, key=lambda row: -(row["sessions"] or 0))[:8]
    channels = charts.bars(
        [row["channel"] for row in top],
        {"sessions": [row["sessions"] for row in top]},
        "Top channels by sessions",
    )
    return Page(
        "Overview",
        tiles,
        [("trend", trend), ("channels", channels)],
        [Table.of("channels", "Channels", kpis)],
        notes=[
            f"Compared with {before.start} to {before.end}. Users, sessions and conversion rate"
            " are of web and app sessions; revenue is of every channel; ROAS is revenue over"
            " spend of the channels with spend."
        ],
    )


def traffic(warehouse: Warehouse, filters: Filters, query: Query) -> Page:
    run = lambda name, **p: run_report(warehouse, name, filters.params(**p))  # noqa: E731
    total = _total(run("web", period="all"))
    tiles = [
        Tile("sessions", "Sessions", total["sessions"]),
        Tile("pageviews", "Page views", total["pageviews"]),
        Tile("pages_per_session", "Pages per session", total["pages_per_session"], "ratio"),
        Tile("avg_session_seconds", "Average session", total["avg_session_seconds"], "seconds"),
        Tile("bounce_rate", "Bounce rate", total["bounce_rate"], "percent"),
        Tile("engagement_rate", "Engagement rate", total["engagement_rate"], "percent"),
    ]
    by_day = run("web", period="day", by="channel_group")
    groups = sorted({row["channel_group"] for row in by_day.rows})
    days = sorted({row["period"] for row in by_day.rows})
    cells = {(row["period"], row["channel_group"]): row["sessions"] for row in by_day.rows}
    series = {g: [cells.get((d, g), 0) for d in days] for g in groups}
    groups_total = run("web", period="all", by="channel_group")
    tables = [
        Table.of("channel_groups", "Default channel groups", groups_total),
        Table.of("pages", "Top pages", run("pages", limit="20")),
        Table.of("referrers", "Referrer hosts", run("web", period="all", by="referrer_host")),
        Table.of("devices", "Devices", run("web", period="all", by="device")),
        Table.of("browsers", "Browsers", run("web", period="all", by="browser")),
        Table.of("os", "Operating systems", run("web", period="all", by="os")),
    ]
    rates = charts.bars(
        [row["channel_group"] for row in groups_total.rows],
        {
            "bounce rate": [row["bounce_rate"] for row in groups_total.rows],
            "engagement rate": [row["engagement_rate"] for row in groups_total.rows],
        },
        "Bounce and engagement rate by channel group",
    )
    return Page(
        "Traffic",
        tiles,
        [
            ("sessions", charts.lines(days, series, "Sessions per day by channel group")),
            ("rates", rates),
        ],
        tables,
    )


def _steps(query: Query) -> list[str]:
    given = [s for s in query.get("step", []) if s.strip()]
    return given or list(DEFAULT_STEPS)


def funnel(warehouse: Warehouse, filters: Filters, query: Query) -> Page:
    steps = _steps(query)
    window = (query.get("window") or ["7d"])[0]
    by = (query.get("by") or [""])[0]
    result = run_report(warehouse, "funnel", filters.params(step=steps, window=window))
    figure = charts.funnel(
        [f"{row['step']}. {row['step_name']}" for row in result.rows],
        [row["users"] for row in result.rows],
        f"Users reaching each step within {window}",
    )
    tables = [Table.of("funnel", "Steps", result)]
    for row in result.rows[:-1]:
        link = filters.query(step=steps, window=window, dropped_after=row["step"])
        tables[0].rows[row["step"] - 1] = {
            **row,
            "dropped_off": f"/dashboard/funnel/dropped.csv?{link}",
        }
    if result.rows:
        tables[0].columns = [*result.columns, "dropped_off"]
    if by:
        broken = run_report(warehouse, "funnel", filters.params(step=steps, window=window, by=by))
        tables.append(Table.of("breakdown", f"By {by}", broken))
    controls = [
        Control("step", "Steps (event names, in order)", steps, many=True),
        Control("window", "Window", window, placeholder="7d"),
        Control("by", "Break down by", by, placeholder="channel, device, a property…"),
    ]
    return Page("Funnel", charts=[("funnel", figure)], tables=tables, controls=controls)


def dropped_csv(warehouse: Warehouse, filters: Filters, query: Query) -> ReportResult:
    """The users who dropped off after a step, for the download link."""
    after = (query.get("dropped_after") or [""])[0]
    window = (query.get("window") or ["7d"])[0]
    return run_report(
        warehouse,
        "funnel",
        filters.params(step=_steps(query), window=window, dropped_after=after or "1"),
    )


def journeys(warehouse: Warehouse, filters: Filters, query: Query) -> Page:
    start = (query.get("from_event") or [""])[0]
    end = (query.get("to_event") or [""])[0]
    if not start and not end:
        end = "Order Completed"
    anchor = {"from_event": start} if start else {"to_event": end}
    links = run_report(warehouse, "paths", filters.params(**anchor, sankey="true", top="15"))
    paths = run_report(warehouse, "paths", filters.params(**anchor, top="20"))
    named = f"from {start}" if start else f"to {end}"
    controls = [
        Control("from_event", "From event", start, placeholder="Product Viewed"),
        Control("to_event", "To event", end, placeholder="Order Completed"),
    ]
    return Page(
        "Journeys",
        charts=[("sankey", charts.sankey(links.rows, f"The most common paths {named}"))],
        tables=[Table.of("paths", "Top paths", paths), Table.of("links", "Links", links)],
        controls=controls,
    )


def retention(warehouse: Warehouse, filters: Filters, query: Query) -> Page:
    period = (query.get("period") or ["week"])[0]
    result = run_report(warehouse, "retention", filters.params(period=period, periods="8"))
    cohorts = sorted({row["cohort"] for row in result.rows})
    numbers = sorted({row["period_number"] for row in result.rows})
    rate = {(row["cohort"], row["period_number"]): row["rate_classic"] for row in result.rows}
    z = [[rate.get((c, n)) for n in numbers] for c in cohorts]
    figure = charts.heatmap(
        z, [str(n) for n in numbers], [str(c) for c in cohorts],
        f"Share of each {period}'s new users active again, by {period}s since", percent=True,
    )  # fmt: skip
    controls = [Control("period", "Period", period, options=["day", "week", "month"])]
    return Page(
        "Retention",
        charts=[("cohorts", figure)],
        tables=[Table.of("retention", "Cohorts", result)],
        controls=controls,
    )


def campaigns(warehouse: Warehouse, filters: Filters, query: Query) -> Page:
    by_campaign = run_report(warehouse, "kpis", filters.params(by="campaign"))
    by_channel = run_report(warehouse, "kpis", filters.params(by="channel"))
    paid = [row for row in by_campaign.rows if row.get("cost")]
    figure = charts.bars(
        [row["campaign"] for row in paid],
        {"ROAS": [row["roas"] for row in paid], "ROI": [row["roi"] for row in paid]},
        "Return on ad spend by campaign (campaigns with spend)",
    )
    return Page(
        "Campaigns",
        charts=[("roas", figure)],
        tables=[
            Table.of("campaigns", "By campaign", by_campaign),
            Table.of("channels", "By channel group", by_channel),
        ],
        notes=[
            "CTR = clicks / impressions; conversion rate = conversions / sessions; "
            "CPA = cost / conversions; CAC = cost / new customers; ROAS = revenue / cost; "
            "ROI = (revenue − cost) / cost."
        ],
    )
