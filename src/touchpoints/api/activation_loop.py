"""What the server does on its own for activation, every second or so, off the event
loop: refresh the audiences that are due, evaluate the triggers on new events and due
waits, and deliver the webhooks whose time has come (a loop of its own, so that a slow
receiver never holds up the triggers). A failure is logged, never fatal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from touchpoints.activate.audiences import refresh_due, size_history
from touchpoints.activate.trigger_engine import tick
from touchpoints.activate.webhooks import deliver_due
from touchpoints.errors import TouchpointsError

log = logging.getLogger("touchpoints.activation")


def triggers_once(services: Any) -> dict[str, Any]:
    """Audiences due for a refresh, then one round of triggers (see trigger_engine). An
    audience's first refresh finds everyone "new": that is not an entrance, and a
    welcome trigger must not write to the whole audience the day it is made."""
    warehouse, now = services.warehouse, services.clock()
    refreshed = refresh_due(warehouse, now=now)
    entered = {}
    for found in refreshed:
        if found.get("entered_ids"):
            with warehouse.lock:
                refreshes = size_history(warehouse, found["name"]).count().to_pyarrow().as_py()
            if refreshes > 1:
                entered[found["name"]] = found["entered_ids"]
    return tick(
        warehouse,
        writer=services.writer,
        now=now,
        lag_seconds=services.activation_lag_s,
        entered=entered,
    )


def webhooks_once(services: Any) -> dict[str, Any]:
    return deliver_due(services.warehouse, now=services.clock())


async def _forever(name: str, every_s: float, job: Callable[[], Any]) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(job)
        except TouchpointsError as exc:
            log.warning("%s: %s", name, exc.message)
        except Exception:  # keep serving; the next round tries again
            log.exception("%s failed", name)


def start(services: Any, every_s: float) -> list[asyncio.Task[None]]:
    """The background tasks (the caller cancels them on shutdown)."""
    return [
        asyncio.create_task(_forever("triggers", every_s, lambda: triggers_once(services))),
        asyncio.create_task(_forever("webhooks", every_s, lambda: webhooks_once(services))),
    ]
