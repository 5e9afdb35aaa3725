"""The "Activation" page: audiences and their size over time, campaigns with what their
messages did, triggers by outcome and webhooks by status. Counts only; each number is
`touchpoints.activate.overview` or `audiences.list_audiences`, as the API gives them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from touchpoints.activate.audiences import list_audiences
from touchpoints.activate.overview import activation_overview
from touchpoints.dashboard import charts
from touchpoints.dashboard.filters import Filters
from touchpoints.dashboard.page import Page, Table, Tile
from touchpoints.warehouse import Warehouse


def activation(warehouse: Warehouse, filters: Filters, query: Mapping[str, Any]) -> Page:
    """Tiles for what was sent and what came of it; the audience sizes; four tables."""
    overview = activation_overview(warehouse)
    audiences = list_audiences(warehouse)
    campaigns = overview["campaigns"]
    sent = sum(row["sent"] for row in campaigns)
    opened = sum(row["opened"] for row in campaigns)
    tiles = [
        Tile("audiences", "Audiences", len(audiences)),
        Tile("sent", "Emails sent", sent),
        Tile("open_rate", "Open rate", opened / sent if sent else None, "percent"),
        Tile("unsubscribed", "Unsubscribed", sum(row["unsubscribed"] for row in campaigns)),
        Tile("fired", "Triggers fired", sum(row["done"] for row in overview["triggers"])),
        Tile("dead", "Dead webhook deliveries", sum(row["dead"] for row in overview["webhooks"])),
    ]
    sizes = warehouse.table("audience_sizes").order_by("computed_at").to_pyarrow().to_pylist()
    times = sorted({row["computed_at"].isoformat() for row in sizes})
    cells = {(row["computed_at"].isoformat(), row["audience"]): row["size"] for row in sizes}
    names = sorted({row["audience"] for row in sizes})
    growth = charts.lines(
        times, {n: [cells.get((t, n)) for t in times] for n in names}, "Audience size per refresh"
    )
    last = {row["audience"]: row for row in sizes}  # oldest first: the last one stays
    audience_rows = [
        {
            "name": row["name"],
            "kind": row.get("kind"),
            "size": row.get("size"),
            "entered": last[row["name"]]["entered"] if row["name"] in last else None,
            "left": last[row["name"]]["left"] if row["name"] in last else None,
            "refreshed_at": row.get("last_refreshed"),
        }
        for row in audiences
    ]
    tables = [
        Table("audiences", "Audiences (entered and left at the last refresh)",
              ["name", "kind", "size", "entered", "left", "refreshed_at"], audience_rows),
        Table("campaigns", "Campaigns: the send log and what the messages did",
              ["campaign_id", "sent", "skipped", "uncertain", "failed", "queued", "opened",
               "clicked", "unsubscribed", "open_rate"], campaigns),
        Table("triggers", "Triggers by outcome",
              ["trigger", "done", "capped", "denied", "skipped", "failed"], overview["triggers"]),
        Table("webhooks", "Webhook deliveries by status",
              ["webhook", "delivered", "pending", "dead", "denied"], overview["webhooks"]),
    ]  # fmt: skip
    return Page(
        "Activation",
        tiles,
        [("audience_sizes", growth)] if sizes else [],
        tables,
        notes=[
            "Skipped sends were refused at the door (no consent for the campaign's purpose,"
            " or an erased person) or had no address; opens, clicks and unsubscribes count"
            " distinct messages."
        ],
    )
