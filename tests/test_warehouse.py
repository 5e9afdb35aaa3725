"""The warehouse on DuckDB and on Spark: one suite, both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pytest

from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.errors import InvalidInput
from touchpoints.warehouse import TABLES, Warehouse, connect
from touchpoints.warehouse.writer import open_writer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _rows(n: int, source: str = "src_a", start: int = 0) -> list[dict]:
    envelope = Envelope(source, "web", now_us())
    return [
        normalize(
            {
                "type": "track",
                "event": "Order Completed",
                "userId": f"u{i % 3}",
                "messageId": f"m{i}",
                "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
                "properties": {"revenue": 10.0 + i, "currency": "EUR"},
            },
            envelope,
        )
        for i in range(start, start + n)
    ]


def test_tables_have_the_documented_schema(warehouse: Warehouse) -> None:
    for name, schema in TABLES.items():
        assert name in warehouse.list_tables()
        found = warehouse.table(name).schema()
        assert list(found.names) == list(schema.names), name
        for column in schema.names:
            assert found[column].is_timestamp() == schema[column].is_timestamp(), column
            assert found[column].is_numeric() == schema[column].is_numeric(), column


def test_ensure_schema_is_idempotent(warehouse: Warehouse) -> None:
    writer = open_writer(warehouse)
    writer.write(_rows(3))
    writer.close()
    warehouse.ensure_schema()
    warehouse.ensure_schema()
    assert warehouse.count("events") == 3
    meta = warehouse.table("meta").to_pyarrow().to_pylist()
    assert [row["key"] for row in meta].count("schema_version") == 1


def test_writer_stores_each_message_once(warehouse: Warehouse) -> None:
    writer = open_writer(warehouse)
    assert writer.write(_rows(5)).accepted == 5
    writer.flush()
    assert warehouse.count("events") == 5
    writer.write(_rows(5) + _rows(2, start=5) + _rows(2, start=5))
    writer.write(_rows(1, source="src_b"))  # the same messageId from another source
    writer.flush()
    assert warehouse.count("events") == 8
    writer.close()
    reopened = open_writer(warehouse)
    reopened.write(_rows(7))
    reopened.close()
    assert warehouse.count("events") == 8
    by_source = warehouse.query(
        "SELECT source_id, count(*) AS n FROM events GROUP BY source_id ORDER BY source_id"
    )
    assert by_source.to_pylist() == [{"source_id": "src_a", "n": 7}, {"source_id": "src_b", "n": 1}]


def test_events_round_trip_with_utc_times_and_typed_columns(warehouse: Warehouse) -> None:
    writer = open_writer(warehouse)
    writer.write(_rows(3))
    writer.close()
    events = warehouse.table("events")
    rows = events.order_by("message_id").to_pyarrow().to_pylist()
    assert [r["message_id"] for r in rows] == ["m0", "m1", "m2"]
    assert [r["revenue"] for r in rows] == [10.0, 11.0, 12.0]
    assert orjson.loads(rows[1]["properties"]) == {"revenue": 11.0, "currency": "EUR"}
    assert rows[1]["traits"] is None
    stamps = [r["timestamp"] for r in rows]
    assert stamps[0].astimezone(UTC) == T0
    # compare with intervals, not epoch seconds (which differ between engines)
    later = events.filter(events.timestamp >= pa.scalar(T0 + timedelta(seconds=30)).as_py())
    assert later.count().execute() == 2


def test_rejected_events_are_kept_with_their_reason(warehouse: Warehouse) -> None:
    writer = open_writer(warehouse)
    result = writer.write(
        _rows(1),
        [
            {
                "rejected_id": "r1",
                "source_id": "src_a",
                "message_id": None,
                "received_at": now_us(),
                "field": "batch[1].userId",
                "reason": "userId or anonymousId is required",
                "payload": "{}",
            }
        ],
    )
    writer.close()
    assert result.rejected == 1 and result.accepted == 1
    stored = warehouse.table("rejected_events").to_pyarrow().to_pylist()
    assert [(r["field"], r["reason"]) for r in stored] == [
        ("batch[1].userId", "userId or anonymousId is required")
    ]


def test_query_is_read_only(warehouse: Warehouse) -> None:
    assert warehouse.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 0}]
    for statement in (
        "DROP TABLE events",
        "DELETE FROM events",
        "SELECT 1; SELECT 2",
        "INSERT INTO meta VALUES ('a', 'b')",
    ):
        with pytest.raises(InvalidInput):
            warehouse.query(statement)
    assert "events" in warehouse.list_tables()


def test_bad_warehouse_urls_say_what_to_do(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="no scheme"):
        connect("touchpoints.duckdb")


@pytest.mark.spark
def test_spark_url_uses_the_named_database(spark_session) -> None:  # type: ignore[no-untyped-def]
    warehouse = connect("pyspark://local[2]?database=tp_url_check")
    assert warehouse.engine == "pyspark" and warehouse.database == "tp_url_check"
    assert set(TABLES) <= set(warehouse.list_tables())
    assert warehouse.query("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 0}]
