"""The write path for events: one interface, one implementation per kind of engine.

`EventWriter.submit` hands over validated rows and returns a future that resolves only
once they are durable; `flush` waits until they are visible in the warehouse. A row
whose (source_id, message_id) is stored already is skipped, so retries are harmless.

- DuckDB: `SpoolEventWriter` (durable spool on disk, bulk loads; see `spool.py`).
- Any other Ibis backend (Spark): `IbisEventWriter`, which appends under a lock after an
  anti-join on the key.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa

from touchpoints.errors import WarehouseError
from touchpoints.warehouse.connection import Warehouse
from touchpoints.warehouse.result import WriteResult
from touchpoints.warehouse.schema import EVENTS, JSON_COLUMNS, REJECTED_EVENTS

EVENTS_ARROW = EVENTS.to_pyarrow()
REJECTED_ARROW = REJECTED_EVENTS.to_pyarrow()

__all__ = ["EventWriter", "IbisEventWriter", "WriteResult", "open_writer", "spool_dir"]


class EventWriter(Protocol):
    """Durable, idempotent appends of event rows and rejected messages."""

    def submit(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> Future[WriteResult]: ...

    def write(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> WriteResult: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def rows_to_arrow(
    rows: Sequence[dict[str, Any]], schema: pa.Schema, json_columns: Sequence[str] = ()
) -> pa.Table:
    """An Arrow table from row dicts (timestamps as µs since the epoch; the JSON columns
    as objects, stored as their text)."""
    if json_columns:
        rows = [{**row, **{c: _json_text(row.get(c)) for c in json_columns}} for row in rows]
    return pa.Table.from_pylist(list(rows), schema=schema)


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def spool_dir(warehouse: Warehouse) -> Path:
    """Where the embedded warehouse keeps its spool: beside the file, or a temp folder."""
    if warehouse.path is not None:
        return warehouse.path.with_name(warehouse.path.name + ".spool")
    return Path(tempfile.mkdtemp(prefix="touchpoints-spool-"))


def open_writer(warehouse: Warehouse, *, max_delay: float = 2.0) -> EventWriter:
    """The best writer for the warehouse's engine; events become visible within
    `max_delay` seconds, or at once after `flush()`."""
    if warehouse.engine == "duckdb":
        from touchpoints.warehouse.spool import SpoolEventWriter

        return SpoolEventWriter(warehouse, spool_dir(warehouse), max_delay=max_delay)
    return IbisEventWriter(warehouse)


class IbisEventWriter:
    """Appends through Ibis on any backend (Spark): anti-join on the key, then insert."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse
        self._lock = threading.Lock()

    def submit(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> Future[WriteResult]:
        future: Future[WriteResult] = Future()
        try:
            future.set_result(self._write(events, rejected))
        except Exception as exc:
            future.set_exception(WarehouseError(f"could not store the events: {exc}"))
        return future

    def write(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> WriteResult:
        return self.submit(events, rejected).result()

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def _write(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]]
    ) -> WriteResult:
        events, rejected = self._warehouse.seal(events, rejected)
        with self._lock:
            unique: dict[tuple[str, str], dict[str, Any]] = {}
            for row in events:
                unique.setdefault((row["source_id"], row["message_id"]), row)
            if unique:
                table = self._warehouse.table("events")
                ids = sorted({message_id for _, message_id in unique})
                existing = (
                    table.filter(table.message_id.isin(ids))
                    .select("source_id", "message_id")
                    .to_pyarrow()
                    .to_pylist()
                )
                for key in existing:
                    unique.pop((key["source_id"], key["message_id"]), None)
            fresh = rows_to_arrow(list(unique.values()), EVENTS_ARROW, JSON_COLUMNS["events"])
            self._warehouse.insert("events", fresh)
            self._warehouse.insert("rejected_events", rows_to_arrow(rejected, REJECTED_ARROW))
            return WriteResult(len(events), len(rejected))
