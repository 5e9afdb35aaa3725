"""The write path for events: one interface, one implementation per kind of engine.

`EventWriter.submit` hands over validated rows and returns a future that resolves only
once they are durable. On DuckDB one writer thread drains a queue and commits whatever
has gathered as one transaction (group commit); a row whose (source_id, message_id) is
already stored is skipped, so retries are harmless. Other engines (Spark) get a simpler
writer that appends under a lock after an anti-join on the same key.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from touchpoints.errors import WarehouseError
from touchpoints.warehouse.connection import Warehouse, duckdb_insert_sql
from touchpoints.warehouse.schema import EVENTS, REJECTED_EVENTS

EVENTS_ARROW = EVENTS.to_pyarrow()
REJECTED_ARROW = REJECTED_EVENTS.to_pyarrow()


@dataclass(frozen=True, slots=True)
class WriteResult:
    """How many of the submitted events were new (the rest were already stored)."""

    inserted: int
    duplicates: int
    rejected: int


class EventWriter(Protocol):
    """Durable, idempotent appends of event rows and rejected messages."""

    def submit(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> Future[WriteResult]: ...

    def write(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> WriteResult: ...

    def close(self) -> None: ...


def rows_to_arrow(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Column-wise Arrow table from row dicts (timestamps as µs since the epoch)."""
    return pa.Table.from_pylist(list(rows), schema=schema)


def open_writer(warehouse: Warehouse, *, max_group_events: int = 50_000) -> EventWriter:
    """The best writer for the warehouse's engine."""
    if warehouse.engine == "duckdb":
        return DuckDBEventWriter(warehouse, max_group_events=max_group_events)
    return IbisEventWriter(warehouse)


class _Base:
    def write(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> WriteResult:
        return self.submit(events, rejected).result()  # type: ignore[attr-defined]


@dataclass(slots=True)
class _Pending:
    events: Sequence[dict[str, Any]]
    rejected: Sequence[dict[str, Any]]
    future: Future[WriteResult]


class DuckDBEventWriter(_Base):
    """A single writer thread with group commit, the shape DuckDB wants."""

    def __init__(self, warehouse: Warehouse, *, max_group_events: int = 50_000) -> None:
        self._con = warehouse.backend.con.cursor()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._max_group = max_group_events
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="touchpoints-writer", daemon=True)
        self._thread.start()

    def submit(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> Future[WriteResult]:
        future: Future[WriteResult] = Future()
        if self._closed:
            future.set_exception(WarehouseError("the event writer is closed"))
        else:
            self._queue.put(_Pending(events, rejected, future))
        return future

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self._con.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            group, size = [first], len(first.events)
            while size < self._max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                size += len(item.events)
            self._commit_group(group)

    def _commit_group(self, group: list[_Pending]) -> None:
        try:
            results = self._commit(group)
        except Exception as exc:
            if len(group) == 1:
                group[0].future.set_exception(WarehouseError(f"could not store the events: {exc}"))
                return
            for item in group:  # isolate the request that broke the group
                self._commit_group([item])
            return
        for item, result in zip(group, results, strict=True):
            item.future.set_result(result)

    def _commit(self, group: list[_Pending]) -> list[WriteResult]:
        owner: dict[tuple[str, str], int] = {}
        rows: list[dict[str, Any]] = []
        for index, item in enumerate(group):
            for row in item.events:
                key = (row["source_id"], row["message_id"])
                if key not in owner:  # the first copy in the group is the one kept
                    owner[key] = index
                    rows.append(row)
        rejected = [row for item in group for row in item.rejected]
        inserted = [0] * len(group)
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            if rows:
                con.register("_tp_events", rows_to_arrow(rows, EVENTS_ARROW))
                stored = con.execute(
                    duckdb_insert_sql(
                        "events",
                        EVENTS_ARROW.names,
                        "_tp_events",
                        returning="source_id, message_id",
                    )
                ).fetchall()
                con.unregister("_tp_events")
                for key in stored:
                    inserted[owner[key]] += 1
            if rejected:
                con.register("_tp_rejected", rows_to_arrow(rejected, REJECTED_ARROW))
                con.execute(
                    duckdb_insert_sql("rejected_events", REJECTED_ARROW.names, "_tp_rejected")
                )
                con.unregister("_tp_rejected")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return [
            WriteResult(inserted[i], len(item.events) - inserted[i], len(item.rejected))
            for i, item in enumerate(group)
        ]


class IbisEventWriter(_Base):
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

    def close(self) -> None:
        return None

    def _write(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]]
    ) -> WriteResult:
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
            fresh = list(unique.values())
            self._warehouse.insert("events", rows_to_arrow(fresh, EVENTS_ARROW))
            self._warehouse.insert("rejected_events", rows_to_arrow(rejected, REJECTED_ARROW))
            return WriteResult(len(fresh), len(events) - len(fresh), len(rejected))
