"""The embedded write path: a durable spool on disk, loaded into DuckDB in bulk.

Each group of requests the writer thread gathers becomes one JSON file per table,
written under a temporary name, fsynced, renamed and its folder fsynced before any of
those requests is acknowledged: an acknowledged event is on disk even if the process
dies the next instant, and a file a crash left half written never has its final name.
A loader thread closes the current segment once it holds a DuckDB row group's worth of
rows (or is `max_delay` seconds old) and inserts all its files in one statement
(`read_json`, C++ end to end); inserts that large go straight to the database file
instead of DuckDB's WAL. A row whose (source_id, message_id) is stored already is
skipped, so loading a segment again after a crash is harmless.

This is the first implementation of the durable log of DESIGN.md; a Kafka or object
storage log for a cluster is a second one behind the same `EventWriter` interface.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from touchpoints.errors import InvalidInput, WarehouseError
from touchpoints.warehouse.connection import Warehouse, _quote, duckdb_insert_sql
from touchpoints.warehouse.result import WriteResult
from touchpoints.warehouse.schema import EVENTS, REJECTED_EVENTS

log = logging.getLogger("touchpoints.spool")

_KINDS = {"events": EVENTS.to_pyarrow(), "rejected_events": REJECTED_EVENTS.to_pyarrow()}
ROW_GROUP = 122_880  # DuckDB's row group size: inserts this large skip the WAL


def _json_columns(schema: pa.Schema) -> tuple[str, str]:
    """The read_json column spec, and the SELECT list that turns µs integers into times.
    A JSON object read into a VARCHAR column arrives as its JSON text, which is what the
    JSON columns (properties, context, …) hold."""
    spec, select = [], []
    for field in schema:
        if pa.types.is_timestamp(field.type):
            spec.append(f"'{field.name}': 'BIGINT'")
            select.append(f"make_timestamptz({_quote(field.name)}) AS {_quote(field.name)}")
        else:
            kind = "DOUBLE" if pa.types.is_floating(field.type) else "VARCHAR"
            spec.append(f"'{field.name}': '{kind}'")
            select.append(_quote(field.name))
    return "{" + ", ".join(spec) + "}", ", ".join(select)


_COLUMNS = {kind: _json_columns(schema) for kind, schema in _KINDS.items()}


@dataclass(slots=True)
class _Pending:
    payloads: dict[str, bytes]
    counts: tuple[int, int]
    future: Future[WriteResult]


class SpoolEventWriter:
    """Durable appends to a spool, bulk loads into DuckDB (see the module docstring)."""

    #: Past this many acknowledged rows not yet loaded, new writes are refused (503) so
    #: that clients back off instead of the spool growing without bound.
    max_unloaded_rows = 5_000_000
    #: A segment that fails to load this many times running is moved to `failed/`.
    max_load_attempts = 3

    def __init__(self, warehouse: Warehouse, directory: Path, *, max_delay: float = 2.0) -> None:
        self._warehouse = warehouse
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._max_delay = max_delay
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._segment_lock = threading.Lock()  # guards the current segment's counters
        self._load_lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._failures: dict[int, int] = {}
        self._segment_rows: dict[int, int] = {}
        self._unloaded = 0
        self._retry_at = 0.0
        self.loaded_events = 0
        for leftover in self._dir.glob("*.tmp"):  # never renamed: never acknowledged
            leftover.unlink()
        self._segment = self._last_number() + 1
        try:
            self._load_segments(before=self._segment)  # what a crash left behind
        except WarehouseError as exc:  # logged; the loader thread retries
            log.error("%s", exc)
        self._group = 0
        self._rows = 0
        self._opened = time.monotonic()
        self._appender = threading.Thread(
            target=self._append_loop, daemon=True, name="touchpoints-spool"
        )
        self._loader = threading.Thread(
            target=self._load_loop, daemon=True, name="touchpoints-loader"
        )
        self._appender.start()
        self._loader.start()

    # -- the EventWriter interface ------------------------------------------------
    def submit(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> Future[WriteResult]:
        """Queue rows for the spool. Raises InvalidInput for a value JSON cannot hold
        (nested deeper than 254 levels); the future fails with WarehouseError if the
        spool cannot take them."""
        future: Future[WriteResult] = Future()
        events, rejected = self._warehouse.seal(events, rejected)
        try:
            payloads = {}
            if events:
                payloads["events"] = orjson.dumps(list(events))
            if rejected:
                payloads["rejected_events"] = orjson.dumps(list(rejected))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise InvalidInput(f"a value cannot be stored as JSON: {exc}", field="body") from exc
        with self._submit_lock:
            if self._closed:
                future.set_exception(WarehouseError("the event writer is closed"))
            elif self._unloaded > self.max_unloaded_rows:
                future.set_exception(
                    WarehouseError("the warehouse is behind on loading events; retry shortly")
                )
            else:
                self._queue.put(_Pending(payloads, (len(events), len(rejected)), future))
        return future

    def write(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> WriteResult:
        return self.submit(events, rejected).result()

    def flush(self) -> None:
        """Return once everything acknowledged so far is loaded into the warehouse."""
        if not self._closed:
            self.submit([]).result()
        self._rotate_and_load()

    def close(self) -> None:
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._appender.join()
        self._stop.set()
        self._loader.join()
        self._rotate_and_load()

    # -- appending -------------------------------------------------------------------
    def _append_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, stopping = [first], False
            while len(group) < 2000:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
            try:
                self._append(group)
            except Exception:  # never let the writer thread die
                log.exception("appending to the spool failed")
                for item in group:
                    _settle(item.future, error=WarehouseError("could not write the spool"))
            if stopping:
                return

    def _append(self, group: list[_Pending]) -> None:
        written: list[Path] = []
        try:
            with self._segment_lock:
                rows = sum(item.counts[0] for item in group)
                for kind in _KINDS:
                    parts = [item.payloads[kind] for item in group if kind in item.payloads]
                    if parts:
                        written.append(self._write_file(kind, parts))
                if written:
                    _fsync_dir(self._dir)
                    self._group += 1
                    self._rows += rows
                    self._segment_rows[self._segment] = (
                        self._segment_rows.get(self._segment, 0) + rows
                    )
                    self._unloaded += rows
        except Exception as exc:  # disk full, permissions: nothing is acknowledged
            for path in written:  # so nothing of the group may be loaded either
                path.unlink(missing_ok=True)
            error = WarehouseError(f"could not write the event spool: {exc}")
            for item in group:
                _settle(item.future, error=error)
            return
        for item in group:
            _settle(item.future, result=WriteResult(*item.counts))

    def _write_file(self, kind: str, arrays: list[bytes]) -> Path:
        final = self._dir / f"{self._segment:010d}.{self._group:08d}.{kind}.json"
        temporary = final.with_name(final.name + ".tmp")
        with open(temporary, "wb") as handle:
            # concatenate the requests' JSON arrays into one array
            handle.write(b"[")
            handle.write(b",".join(array[1:-1] for array in arrays if array != b"[]"))
            handle.write(b"]")
            handle.flush()
            os.fdatasync(handle.fileno())
        os.replace(temporary, final)
        return final

    # -- loading ---------------------------------------------------------------------
    def _load_loop(self) -> None:
        while not self._stop.wait(0.1):
            full = self._rows >= ROW_GROUP
            old = self._rows and time.monotonic() - self._opened >= self._max_delay
            retry = self._failures and time.monotonic() >= self._retry_at
            if full or old or retry:
                with contextlib.suppress(WarehouseError):  # logged; files stay for a retry
                    self._rotate_and_load()

    def _rotate_and_load(self) -> None:
        """Close the current segment and load every closed one; raise WarehouseError
        (after trying them all) if any failed."""
        with self._load_lock:
            with self._segment_lock:
                if self._group:
                    self._segment += 1
                    self._group = self._rows = 0
                    self._opened = time.monotonic()
                current = self._segment
            self._load_segments(before=current)

    def _load_segments(self, before: int) -> None:
        numbers = sorted({int(p.name.split(".", 1)[0]) for p in self._dir.glob("*.json")})
        errors = []
        for number in numbers:
            if number >= before:
                continue
            try:
                self._load_segment(number)
            except Exception as exc:
                errors.append(f"segment {number}: {exc}")
                self._failed(number, exc)
            else:
                self._failures.pop(number, None)
                with self._segment_lock:
                    self._unloaded -= self._segment_rows.pop(number, 0)
        if errors:
            raise WarehouseError(
                "could not load the spool into the warehouse: " + "; ".join(errors)
            )

    def _failed(self, number: int, exc: Exception) -> None:
        attempts = self._failures.get(number, 0) + 1
        self._failures[number] = attempts
        self._retry_at = time.monotonic() + 5.0
        log.error("loading spool segment %s failed (attempt %s): %s", number, attempts, exc)
        if attempts >= self.max_load_attempts:
            aside = self._dir / "failed"
            aside.mkdir(exist_ok=True)
            for path in self._dir.glob(f"{number:010d}.*.json"):
                os.replace(path, aside / path.name)
            self._failures.pop(number, None)
            with self._segment_lock:
                self._unloaded -= self._segment_rows.pop(number, 0)
            log.error("spool segment %s moved to %s for an operator to inspect", number, aside)

    def _load_segment(self, number: int) -> None:
        cursor = self._warehouse.backend.con.cursor()
        files = {kind: sorted(self._dir.glob(f"{number:010d}.*.{kind}.json")) for kind in _KINDS}
        try:
            cursor.execute("BEGIN TRANSACTION")
            for kind, paths in files.items():
                if not paths:
                    continue
                spec, select = _COLUMNS[kind]
                names = "[" + ", ".join(_sql_string(str(p)) for p in paths) + "]"
                source = (
                    f"(SELECT {select} FROM read_json({names}, format='array', "
                    f"columns={spec}, maximum_object_size=67108864))"
                )
                cursor.execute(duckdb_insert_sql(kind, list(_KINDS[kind].names), source))
                row = cursor.fetchone()
                if kind == "events":
                    self.loaded_events += int(row[0]) if row else 0
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()
        for paths in files.values():
            for path in paths:
                path.unlink(missing_ok=True)

    def _last_number(self) -> int:
        numbers = [int(p.name.split(".", 1)[0]) for p in self._dir.glob("*.json")]
        return max(numbers, default=0)


def recover(warehouse: Warehouse, directory: Path) -> int:
    """Load whatever a stopped or killed writer left in the spool; returns rows added."""
    if not directory.is_dir() or not any(directory.glob("*.json")):
        return 0
    try:
        writer = SpoolEventWriter(warehouse, directory)
    except OSError as exc:  # the files stay; the next start tries again
        log.error("cannot open the spool %s: %s", directory, exc)
        return 0
    added = writer.loaded_events
    try:
        writer.close()
    except WarehouseError as exc:
        log.error("%s", exc)
    return added


def _settle(
    future: Future[WriteResult],
    *,
    result: WriteResult | None = None,
    error: Exception | None = None,
) -> None:
    """Resolve a future unless its waiter gave up (a cancelled request)."""
    if not future.set_running_or_notify_cancel():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
