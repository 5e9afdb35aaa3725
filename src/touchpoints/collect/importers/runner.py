"""What every importer shares: the report, the options, the source, and the sink that
normalises messages and writes them with the rejected rows, a chunk at a time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from touchpoints.collect.importers.reading import Column, Row, open_table
from touchpoints.collect.importers.values import RowError, digest
from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.collect.sources import add_source, find_source
from touchpoints.collect.spec import Limits
from touchpoints.errors import Conflict, InvalidInput
from touchpoints.warehouse import CHANNELS, Warehouse
from touchpoints.warehouse.writer import EventWriter, open_writer

#: How many bad rows a report lists (all are counted, and all are kept in rejected_events).
MAX_ERRORS = 50

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ImportReport:
    """What an import did. `errors` lists the first 50 bad rows as
    ``{"line", "column", "reason"}``; `skipped` counts rows left out on purpose, by why
    (a bot's visit, an image request, an order held back for a bad line …)."""

    kind: str
    rows_read: int
    events: int
    spend_rows: int
    bad_rows: int
    errors: list[dict]
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    """The arguments of `import_file`, checked, for the importer of one kind."""

    kind: str
    path: Path
    mapping: Mapping[str, str] | None
    channel: str | None
    source_name: str | None
    progress: Progress | None
    chunk_rows: int
    salt: str | None

    def report_progress(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)


class Tally:
    """The counts of one import while it runs."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rows_read = 0
        self.events = 0
        self.spend_rows = 0
        self.bad_rows = 0
        self.errors: list[dict] = []
        self.skipped: Counter[str] = Counter()

    def bad(self, line: int, column: str | None, reason: str) -> None:
        self.bad_rows += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"line": line, "column": column, "reason": reason})

    def report(self) -> ImportReport:
        return ImportReport(
            kind=self.kind,
            rows_read=self.rows_read,
            events=self.events,
            spend_rows=self.spend_rows,
            bad_rows=self.bad_rows,
            errors=list(self.errors),
            skipped=dict(self.skipped),
        )


def check_channel(channel: str | None, default: str) -> str:
    """The events' channel: the `channel` argument when given (one of CHANNELS)."""
    if channel is None:
        return default
    if channel not in CHANNELS:
        raise InvalidInput(
            f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}", field="channel"
        )
    return channel


def ensure_source(warehouse: Warehouse, name: str, channel: str) -> str:
    """The id of the source called `name`, made (with `channel`) when there is none."""
    existing = find_source(warehouse, name)
    if existing is not None:
        return existing.source_id
    try:
        return add_source(warehouse, name, channel).source.source_id
    except Conflict:  # made a moment ago by a concurrent import
        again = find_source(warehouse, name)
        if again is None:
            raise
        return again.source_id


def payload_text(raw: Any) -> str:
    """The raw row as JSON text for rejected_events, cut at 32 KB as the collector does."""
    text = orjson.dumps(raw, default=str).decode()
    return text[: Limits.EVENT_BYTES]


class EventSink:
    """Normalises messages into `events` rows and writes them, with the rejected rows,
    each time `write()` is called (once a chunk), through the warehouse's EventWriter."""

    def __init__(
        self,
        warehouse: Warehouse,
        kind: str,
        source_id: str | None,
        channel: str,
        tally: Tally,
        *,
        unit: str = "line",
        columns: Mapping[str, str] | None = None,
        secret: str = "",
    ) -> None:
        self.kind = kind
        self.tally = tally
        self.unit = unit
        self._columns = dict(columns or {})
        self._secret = secret
        self.envelope = Envelope(source_id or "", channel, now_us())
        self._source_id = source_id
        self._events: list[dict[str, Any]] = []
        self._rejected: list[dict[str, Any]] = []
        self._warehouse = warehouse
        self._writer: EventWriter = open_writer(warehouse)

    def __enter__(self) -> EventSink:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if error is None:
                self.write()
        finally:
            self._writer.close()  # loads everything written: visible once we return

    def column(self, ours: str | None) -> str | None:
        """The file's name of one of our columns, as the user knows it."""
        return self._columns.get(ours, ours) if ours is not None else None

    def add(self, message: dict[str, Any], line: int, raw: Any) -> bool:
        """Normalise and queue one message; a message normalize refuses is rejected."""
        try:
            row = normalize(message, self.envelope, check_size=False)
        except InvalidInput as exc:
            self.reject(line, exc.field, exc.message, raw, message.get("messageId"), ours=False)
            return False
        self._events.append(row)
        self.tally.events += 1
        return True

    def reject(
        self,
        line: int,
        column: str | None,
        reason: str,
        raw: Any,
        message_id: str | None = None,
        *,
        ours: bool = True,
    ) -> None:
        """Report a bad row by its line and keep it in rejected_events."""
        name = self.column(column) if ours else column
        self.tally.bad(line, name, reason)
        where = f"{self.unit} {line}" + (f": {name}" if name else "")
        self.keep(where, reason, raw, message_id)

    def keep(self, where: str, reason: str, raw: Any, message_id: str | None = None) -> None:
        """Queue a rejected_events row; its id is a hash of the kind, source, where (the
        line) and payload, so importing the same file again adds no second copy."""
        payload = payload_text(raw)
        rejected_id = digest(self.kind, self._source_id, where, self._secret, payload)
        self._rejected.append(
            {
                "rejected_id": rejected_id[:32],
                "source_id": self._source_id,
                "message_id": message_id,
                "received_at": self.envelope.received_at_us,
                "field": where,
                "reason": reason,
                "payload": payload,
            }
        )

    def pending(self) -> int:
        return len(self._events) + len(self._rejected)

    def write(self) -> None:
        """Hand the queued rows to the writer (durable when this returns)."""
        if self._rejected and self._warehouse.engine != "duckdb":
            self._rejected = self._not_kept_yet(self._rejected)
        if self._events or self._rejected:
            self._writer.write(self._events, self._rejected)
            self._events, self._rejected = [], []

    def _not_kept_yet(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """DuckDB skips a rejected_id it holds; other engines append, so check here."""
        unique = {row["rejected_id"]: row for row in rows}
        table = self._warehouse.table("rejected_events")
        held = table.filter(table.rejected_id.isin(list(unique))).rejected_id
        for rejected_id in held.to_pyarrow().to_pylist():
            unique.pop(rejected_id, None)
        return list(unique.values())


Build = Callable[[dict[str, Any]], dict[str, Any]]


def run_events(
    warehouse: Warehouse,
    options: Options,
    spec: tuple[Column, ...],
    default_channel: str,
    build: Build,
) -> ImportReport:
    """The import of a file whose every row is one event: read a chunk, build each
    row's message (`build` raises RowError for a bad value), normalise, write."""
    channel = check_channel(options.channel, default_channel)
    tally = Tally(options.kind)
    table = open_table(options.path, spec, options.mapping, options.chunk_rows)
    try:
        source_id = ensure_source(
            warehouse, options.source_name or f"import-{options.kind}", channel
        )
        with EventSink(
            warehouse,
            options.kind,
            source_id,
            channel,
            tally,
            unit=table.unit,
            columns=table.columns,
        ) as sink:
            for chunk in table.chunks():
                for row in chunk:
                    event_row(sink, row, build, channel)
                sink.write()
                options.report_progress(table.done(), table.total)
    finally:
        table.close()
    options.report_progress(table.total, table.total)
    return tally.report()


def event_row(sink: EventSink, row: Row, build: Build, channel: str) -> None:
    sink.tally.rows_read += 1
    if row.problem is not None:
        sink.reject(row.line, row.problem[0], row.problem[1], row.raw)
        return
    try:
        message = build(row.values)
    except RowError as exc:
        sink.reject(row.line, exc.column, exc.reason, row.raw)
        return
    message.setdefault("channel", channel)
    sink.add(message, row.line, row.raw)
