"""Retention: rows past their table's or their event's period go, the rest stay, and a
dry run only counts. Runs on DuckDB and Spark (the deletion primitive differs)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.insights_data import event, write_events
from touchpoints.errors import InvalidInput
from touchpoints.privacy.retention import enforce_retention, load_settings, save_settings
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.writer import open_writer

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
SETTINGS = {
    "events": "730d",
    "events:Page Viewed": "90d",
    "rejected_events": "30d",
    "audit_log": "2190d",
}


def _ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def _fill(warehouse: Warehouse) -> None:
    write_events(
        warehouse,
        [
            event("pv-old", _ago(100), path="/a"),  # page view past 90 days: goes
            event("pv-new", _ago(10), path="/b"),  # stays
            event("order-mid", _ago(100), "Order Completed"),  # within 730 days: stays
            event("order-old", _ago(800), "Order Completed"),  # goes
            event("id-old", _ago(800), type="identify"),  # goes
            event("id-new", _ago(400), type="identify"),  # stays
        ],
    )
    writer = open_writer(warehouse)
    rejected = [
        {
            "rejected_id": uuid.uuid4().hex, "source_id": "src_web", "message_id": None,
            "received_at": int(_ago(days).timestamp() * 1e6), "field": "type",
            "reason": "bad", "payload": "{}",
        }
        for days in (40, 5)
    ]  # fmt: skip
    writer.write([], rejected)
    writer.close()


def _users(warehouse: Warehouse) -> list[str]:
    return sorted(warehouse.table("events").user_id.to_pyarrow().to_pylist())


def test_retention_per_table_and_event(warehouse: Warehouse) -> None:
    _fill(warehouse)
    save_settings(warehouse, SETTINGS)
    assert load_settings(warehouse) == SETTINGS
    audit_before = warehouse.count("audit_log")

    dry = enforce_retention(warehouse, NOW, dry_run=True)
    expected = {"events:Page Viewed": 1, "events": 2, "rejected_events": 1, "audit_log": 0}
    assert dry["deleted"] == expected and dry["dry_run"] is True
    assert warehouse.count("events") == 6 and warehouse.count("rejected_events") == 2
    assert warehouse.count("audit_log") == audit_before

    done = enforce_retention(warehouse, NOW, actor="test")
    assert done["deleted"] == expected and done["dry_run"] is False
    assert _users(warehouse) == ["id-new", "order-mid", "pv-new"]
    assert warehouse.count("rejected_events") == 1
    log = warehouse.table("audit_log")
    entries = log.filter(log.action == "privacy.retention").to_pyarrow().to_pylist()
    assert len(entries) == 1 and entries[0]["actor"] == "test"

    again = enforce_retention(warehouse, NOW)
    assert sum(again["deleted"].values()) == 0


def test_no_settings_keep_everything(duck: Warehouse) -> None:
    _fill(duck)
    assert enforce_retention(duck, NOW)["deleted"] == {}
    assert duck.count("events") == 6


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"events": "90 days"}, "settings.events"),
        ({"events": "0d"}, "settings.events"),
        ({"profiles": "30d"}, "settings.profiles"),
        ({"rejected_events:x": "30d"}, "settings.rejected_events:x"),
        ({"events:": "30d"}, "settings.events:"),
        (["events"], "settings"),
    ],
)
def test_bad_settings_are_refused(duck: Warehouse, settings: object, field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        save_settings(duck, settings)  # type: ignore[arg-type]
    assert error.value.field == field
    assert load_settings(duck) == {}


def test_cli_enforce_retention(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from touchpoints.cli.main import app
    from touchpoints.warehouse import connect

    url = f"duckdb:///{tmp_path / 'r.duckdb'}"
    warehouse = connect(url)
    write_events(warehouse, [event("old", datetime.now(UTC) - timedelta(days=50), path="/")])
    warehouse.close()
    runner = CliRunner()
    setting = runner.invoke(app, ["-w", url, "privacy", "retention", "--set", "events=30d"])
    assert setting.exit_code == 0, setting.output
    dry = runner.invoke(app, ["-w", url, "privacy", "enforce-retention", "--dry-run", "-f", "json"])
    assert json.loads(dry.stdout)["deleted"] == {"events": 1}
    done = runner.invoke(app, ["-w", url, "privacy", "enforce-retention", "-f", "json"])
    assert json.loads(done.stdout)["deleted"] == {"events": 1}
    warehouse = connect(url)
    assert warehouse.count("events") == 0
    warehouse.close()
