"""What activation did, at a glance: each campaign's send log with its opens, clicks and
unsubscribes, each trigger's firings by outcome, each webhook's deliveries by status.
Counts only (customer ids never leave), for the dashboard and `GET /v1/activation`."""

from __future__ import annotations

from typing import Any

from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.functions import json_text

__all__ = ["activation_overview"]

SEND_STATUSES = ("sent", "skipped", "uncertain", "failed", "queued")
EMAIL_EVENTS = {"Email Opened": "opened", "Email Link Clicked": "clicked",
                "Unsubscribed": "unsubscribed"}  # fmt: skip


def _pivot(rows: list[dict[str, Any]], key: str, column: str, names: tuple[str, ...]) -> dict:
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        out.setdefault(row[key], dict.fromkeys(names, 0))[row[column]] = row["n"]
    return out


def activation_overview(warehouse: Warehouse) -> dict[str, list[dict[str, Any]]]:
    """Per campaign: sends by status and the people who opened, clicked, unsubscribed
    (distinct sends, from the email events); per trigger: firings by status; per
    webhook: deliveries by status."""
    sends = warehouse.table("sends")
    by_status = sends.group_by("campaign_id", "status").agg(n=sends.count())
    campaigns = _pivot(by_status.to_pyarrow().to_pylist(), "campaign_id", "status", SEND_STATUSES)
    events = warehouse.table("events")
    email = events.filter((events.channel == "email") & events.event.isin(list(EMAIL_EVENTS)))
    keyed = email.select(
        "event",
        campaign_id=json_text(email.properties, "campaign_id"),
        send_id=json_text(email.properties, "email_id"),
    )
    engaged = keyed.filter(keyed.send_id.startswith("snd_"))
    reached = engaged.group_by("campaign_id", "event").agg(n=engaged.send_id.nunique())
    for row in reached.to_pyarrow().to_pylist():
        if row["campaign_id"] in campaigns:
            campaigns[row["campaign_id"]][EMAIL_EVENTS[row["event"]]] = row["n"]
    campaign_rows = []
    for campaign_id, counts in sorted(campaigns.items()):
        sent = counts["sent"]
        opened = counts.get("opened", 0)
        campaign_rows.append(
            {
                "campaign_id": campaign_id,
                **counts,
                "opened": opened,
                "clicked": counts.get("clicked", 0),
                "unsubscribed": counts.get("unsubscribed", 0),
                "open_rate": opened / sent if sent else None,
            }
        )
    fires = warehouse.table("trigger_fires")
    fired = fires.group_by("trigger", "status").agg(n=fires.count()).to_pyarrow().to_pylist()
    outcomes = ("done", "capped", "denied", "skipped", "failed", "firing")
    triggers = _pivot(fired, "trigger", "status", outcomes)
    deliveries = warehouse.table("webhook_deliveries")
    states = ("delivered", "pending", "dead", "denied")
    delivered = (
        deliveries.group_by("webhook", "status").agg(n=deliveries.count()).to_pyarrow().to_pylist()
    )
    hooks = _pivot(delivered, "webhook", "status", states)
    return {
        "campaigns": campaign_rows,
        "triggers": [{"trigger": k, **v} for k, v in sorted(triggers.items())],
        "webhooks": [{"webhook": k, **v} for k, v in sorted(hooks.items())],
    }
