"""The server enforces retention by itself: a live server with a short schedule deletes
what is past its period and records it in the audit log as the server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.insights_data import event, write_events
from tests.live import start
from touchpoints.api.ratelimit import ApiSettings
from touchpoints.privacy.retention import save_settings
from touchpoints.warehouse import Warehouse


@pytest.mark.slow
def test_the_server_enforces_retention_on_its_schedule(duck: Warehouse) -> None:
    now = datetime.now(UTC)
    write_events(duck, [event("old", now - timedelta(days=40), "Order Completed"),
                        event("new", now - timedelta(days=2), "Order Completed")])  # fmt: skip
    save_settings(duck, {"events": "30d"})
    live = start(duck, api_settings=ApiSettings(retention_every_s=0.5))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and duck.count("events") > 1:
            time.sleep(0.2)
        users = duck.table("events").user_id.to_pyarrow().to_pylist()
        assert users == ["new"]
        log = duck.table("audit_log")
        runs = log.filter(log.action == "privacy.retention").actor.to_pyarrow().to_pylist()
        assert runs and set(runs) == {"server"}
    finally:
        live.stop()
