"""Webhook deliveries as seen afterwards: the latest deliveries and the dead letters
(personal payloads never shown, only their size), and replaying dead letters.

A replayed delivery starts again from zero attempts and, if it carries a person's data,
asks for their consent again before it is sent (`webhook_delivery`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from touchpoints.activate.webhook_delivery import (
    DEAD,
    DELIVERIES,
    MAX_LIST,
    STATUSES,
    check_limit,
    clock,
    read_row,
    view,
)
from touchpoints.activate.webhook_endpoints import TABLE
from touchpoints.errors import InvalidInput, NotFound
from touchpoints.privacy import audit
from touchpoints.warehouse import Warehouse

__all__ = ["dead_letters", "deliveries", "get_delivery", "replay"]


def replay(
    warehouse: Warehouse,
    delivery_ids: Sequence[str] | None = None,
    *,
    now: datetime | None = None,
    actor: str = "server",
) -> dict[str, Any]:
    """Queue dead letters again (attempts from zero, due at `now`): those named, or every
    one not yet replayed. Letters of a webhook that no longer exists are skipped and
    said so. A replayed personal delivery asks for consent again before it is sent."""
    when = clock(now)
    if delivery_ids is not None and (
        isinstance(delivery_ids, str)
        or not isinstance(delivery_ids, Sequence)
        or not all(isinstance(i, str) for i in delivery_ids)
        or len(delivery_ids) > MAX_LIST
    ):
        raise InvalidInput(
            f"delivery_ids is a list of at most {MAX_LIST} delivery ids", field="delivery_ids"
        )
    with warehouse.lock:
        table = warehouse.table(DEAD)
        waiting = table.filter(table.replayed_at.isnull())
        if delivery_ids is not None:
            waiting = waiting.filter(waiting.delivery_id.isin(list(delivery_ids)))
        letters = waiting.order_by("failed_at").to_pyarrow().to_pylist()
        missing = sorted(set(delivery_ids or ()) - {r["delivery_id"] for r in letters})
        if missing:
            raise NotFound(
                f"not a dead letter waiting for replay: {', '.join(missing[:5])}",
                field="delivery_ids",
            )
        hooks = set(warehouse.table(TABLE).name.to_pyarrow().to_pylist())
        replayed = [r["delivery_id"] for r in letters if r["webhook"] in hooks]
        skipped = [
            {"delivery_id": r["delivery_id"], "reason": f"there is no webhook {r['webhook']!r}"}
            for r in letters
            if r["webhook"] not in hooks
        ]
        if replayed:
            times = pa.array([when] * len(replayed), pa.timestamp("us", tz="UTC"))
            again = {
                "delivery_id": replayed,
                "status": ["pending"] * len(replayed),
                "attempts": pa.array([0] * len(replayed), pa.int64()),
                "next_attempt_at": times,
                "delivered_at": pa.nulls(len(replayed), pa.timestamp("us", tz="UTC")),
            }
            warehouse.update_many(DELIVERIES, ["delivery_id"], pa.table(again))
            marked = {"delivery_id": replayed, "replayed_at": times}
            warehouse.update_many(DEAD, ["delivery_id"], pa.table(marked))
        if replayed:
            audit.record(warehouse, actor, "webhook.replay", None, None, {"delivery_ids": replayed})
    return {"replayed": replayed, "skipped": skipped}


def deliveries(
    warehouse: Warehouse,
    webhook: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The latest deliveries, newest first. A personal payload is not shown, only its
    size; others are shown as sent."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    count = check_limit(limit)
    with warehouse.lock:
        table = warehouse.table(DELIVERIES)
        if webhook is not None:
            table = table.filter(table.webhook == webhook)
        if status is not None:
            table = table.filter(table.status == status)
        rows = table.order_by(table.created_at.desc()).limit(count).to_pyarrow()
    return [view(row) for row in rows.to_pylist()]


def get_delivery(warehouse: Warehouse, delivery_id: str) -> dict[str, Any]:
    """One delivery as `deliveries` shows it (NotFound naming `delivery_id`)."""
    with warehouse.lock:
        row = read_row(warehouse, DELIVERIES, delivery_id)
    if row is None:
        raise NotFound(f"there is no delivery {str(delivery_id)[:60]!r}", field="delivery_id")
    return view(row)


def dead_letters(warehouse: Warehouse, limit: int = 100) -> list[dict[str, Any]]:
    """The dead letters, latest failure first, with when each was replayed (if it was)."""
    count = check_limit(limit)
    with warehouse.lock:
        table = warehouse.table(DEAD)
        rows = table.order_by(table.failed_at.desc()).limit(count).to_pyarrow()
    return [view(row) for row in rows.to_pylist()]
