"""What the server does on its own: enforce the retention periods once a day (and once
shortly after it starts), holding the warehouse lock, off the event loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from touchpoints.errors import TouchpointsError
from touchpoints.privacy.retention import enforce_retention, load_settings

log = logging.getLogger("touchpoints.housekeeping")
DAY_S = 86_400.0
FIRST_RUN_S = 60.0


def enforce_once(services: Any) -> dict[str, Any] | None:
    """Load what the collector acknowledged, then delete what is past its period; nothing
    when no retention period is set."""
    warehouse = services.warehouse
    with warehouse.lock:
        if not load_settings(warehouse):
            return None
    services.writer.flush()
    with warehouse.lock:
        return enforce_retention(warehouse, actor="server")


async def run_daily(services: Any, every_s: float = DAY_S, first_s: float = FIRST_RUN_S) -> None:
    """Forever: wait, enforce retention, repeat. A failure is logged, never fatal."""
    delay = min(first_s, every_s)
    while True:
        await asyncio.sleep(delay)
        delay = every_s
        try:
            done = await asyncio.to_thread(enforce_once, services)
        except TouchpointsError as exc:
            log.warning("retention not enforced: %s", exc.message)
        except Exception:  # keep serving; the next day tries again
            log.exception("retention enforcement failed")
        else:
            if done:
                log.info("retention enforced: %s", done.get("deleted"))
