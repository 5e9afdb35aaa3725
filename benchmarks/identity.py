"""Identity resolution benchmark: N people with 3 identifiers each, resolved on DuckDB.

Each person is one identify event carrying an anonymous id, a user id and an email
(3 identifiers, 2 links); a tenth of them also come back on a second device (another
anonymous id), so components are not all alike. Rows are inserted straight into
`events` (this measures resolution, not ingestion).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from touchpoints.identity import resolve
from touchpoints.warehouse import connect
from touchpoints.warehouse.schema import EVENTS


@dataclass
class IdentityResult:
    people: int
    events: int
    identifiers: int
    customers: int
    seconds: float
    new_events: int
    incremental_seconds: float


def _events(people: int) -> pa.Table:
    base = 1_767_225_600_000_000  # 2026-01-01 in µs
    ids = range(people)
    second = range(0, people, 10)
    n = people + len(second)
    columns = {
        "message_id": [f"m{i}" for i in ids] + [f"m2-{i}" for i in second],
        "source_id": ["src_bench"] * n,
        "type": ["identify"] * n,
        "anonymous_id": [f"a{i}" for i in ids] + [f"b{i}" for i in second],
        "user_id": [f"u{i}" for i in ids] + [f"u{i}" for i in second],
        "timestamp": [base + i for i in range(n)],
        "received_at": [base + i for i in range(n)],
        "channel": ["web"] * n,
        "traits": [f'{{"email":"person{i}@example.com"}}' for i in ids] + [None] * len(second),
    }
    schema = EVENTS.to_pyarrow()
    arrays = [pa.array(columns.get(f.name, [None] * n), type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def run_identity(people: int = 1_000_000) -> IdentityResult:
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = connect(f"duckdb:///{Path(tmp) / 'identity.duckdb'}")
        table = _events(people)
        warehouse.insert("events", table)
        start = time.perf_counter()
        summary = resolve(warehouse)
        seconds = time.perf_counter() - start
        # then 1% more: returning people on new devices, received after the first build
        more = _events(people // 100)
        n = more.num_rows
        more = more.set_column(0, "message_id", pa.array([f"n{i}" for i in range(n)]))
        anon = more.schema.get_field_index("anonymous_id")
        more = more.set_column(anon, "anonymous_id", pa.array([f"new-{i}" for i in range(n)]))
        late = more.schema.get_field_index("received_at")
        stamp = pa.array([2_000_000_000_000_000] * n, pa.timestamp("us", tz="UTC"))
        more = more.set_column(late, "received_at", stamp)
        warehouse.insert("events", more)
        start = time.perf_counter()
        again = resolve(warehouse)
        incremental = time.perf_counter() - start
        warehouse.close()
    assert summary.customers == people == again.customers, (summary, again, people)
    assert again.mode == "incremental", again
    return IdentityResult(
        people,
        table.num_rows,
        summary.identifiers,
        summary.customers,
        round(seconds, 2),
        n,
        round(incremental, 2),
    )
