"""Tables of saved definitions (campaigns, triggers, audiences, offers, surveys…): one
row per key with the definition as JSON text and when it was created and last changed.
One implementation of saving, reading and deleting them, whatever they define."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import ibis
import pyarrow as pa

from touchpoints.errors import NotFound
from touchpoints.warehouse.connection import Warehouse

__all__ = ["delete_definition", "load_definition", "load_definitions", "store_definition"]


def store_definition(
    warehouse: Warehouse,
    table: str,
    key_column: str,
    key: str,
    definition: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> bool:
    """Create or replace the definition of `key` (and set the `extra` columns, a table's
    own, when given); True when it is new."""
    text = json.dumps(definition, sort_keys=True, default=str)
    now = datetime.now(UTC)
    with warehouse.lock:
        rows = warehouse.table(table)
        exists = rows.filter(rows[key_column] == key).count().to_pyarrow().as_py()
        if exists:
            changes = {"definition": text, "updated_at": now, **(extra or {})}
            warehouse.update_rows(table, key_column, key, changes)
            return False
        stamp = pa.array([now], pa.timestamp("us", tz="UTC"))
        columns = {key_column: [key], "definition": [text], "created_at": stamp}
        columns |= {"updated_at": stamp, **{k: [v] for k, v in (extra or {}).items()}}
        warehouse.insert(table, pa.table(columns))
        return True


def load_definition(
    warehouse: Warehouse, table: str, key_column: str, key: str, what: str
) -> dict[str, Any]:
    """The stored definition of `key`; NotFound naming `what` ("campaign") if none."""
    rows = warehouse.table(table)
    found = rows.filter(rows[key_column] == key).definition.to_pyarrow().to_pylist()
    if not found:
        raise NotFound(f"there is no {what} {key!r}", field=key_column)
    return json.loads(found[0])


def load_definitions(warehouse: Warehouse, table: str, key_column: str) -> list[dict[str, Any]]:
    """Every stored definition, by key, with `created_at` and `updated_at`."""
    rows = warehouse.table(table).order_by(key_column).to_pyarrow().to_pylist()
    return [
        {
            **json.loads(row["definition"]),
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
        }
        for row in rows
    ]


def delete_definition(
    warehouse: Warehouse, table: str, key_column: str, key: str, what: str
) -> None:
    """Remove the definition of `key`; NotFound if there is none."""
    with warehouse.lock:
        removed = warehouse.delete_where(table, lambda t: t[key_column] == ibis.literal(key))
    if not removed:
        raise NotFound(f"there is no {what} {key!r}", field=key_column)
