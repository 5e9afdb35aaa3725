"""What a trigger does when it fires for a person: send a campaign's email to them, call
a webhook with them and the event, or give them an offer's coupon. Each action asks the
door itself (the email and webhook paths do), so a refusal is reported as `denied`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from touchpoints.activate.gate import ERASED
from touchpoints.activate.mailer import MailError
from touchpoints.activate.sending import queue, send_queued
from touchpoints.errors import TouchpointsError
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.writer import EventWriter

__all__ = ["run_action"]


def run_action(
    warehouse: Warehouse,
    trigger: Mapping[str, Any],
    customer_id: str,
    fire_id: str,
    *,
    writer: EventWriter,
    now: datetime,
    context: Mapping[str, Any],
) -> tuple[str, str | None]:
    """(status, reason) of the action: `done`, `denied`, `skipped` or `failed`."""
    kind, target = next(iter(trigger["action"].items()))
    try:
        if kind == "email":
            return _email(warehouse, target, customer_id, fire_id, writer, now)
        if kind == "webhook":
            from touchpoints.activate.webhooks import enqueue

            payload = {
                "trigger": trigger["name"],
                "customer_id": customer_id,
                "fired_at": now.isoformat(),
                **context,
            }
            queued = enqueue(warehouse, target, payload, customer_id=customer_id, now=now)
            if queued["status"] == "denied":
                return "denied", queued.get("last_error")
            return "done", f"webhook delivery {queued['delivery_id']} queued"
        from touchpoints.activate.offers import assign

        with warehouse.lock:
            given = assign(warehouse, target, [customer_id], now=now)[0]
        return "done", f"offer {target}: {given['arm']}"
    except MailError as exc:
        return "failed", exc.message
    except TouchpointsError as exc:
        return "failed", f"{kind} {target}: {exc.message}"


def _email(
    warehouse: Warehouse,
    campaign_id: str,
    customer_id: str,
    fire_id: str,
    writer: EventWriter,
    now: datetime,
) -> tuple[str, str | None]:
    ids = queue(warehouse, campaign_id, [customer_id], occasion=fire_id, now=now)
    result = send_queued(warehouse, campaign_id, writer=writer, now=lambda: now, send_ids=ids)
    if result["sent"]:
        return "done", f"email {ids[0]} sent"
    if result["skipped"]:
        reason = next(iter(result["skipped"]))
        refused = reason == ERASED or reason.endswith("consent")
        return ("denied" if refused else "skipped"), reason
    return "failed", "the email was not sent (see the send log)"
