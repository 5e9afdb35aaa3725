"""The engine versions pinned in pyproject.toml, and what they were pinned for."""

from __future__ import annotations

from importlib.metadata import version

import ibis
import pandas as pd
import pyarrow as pa

from touchpoints.warehouse import Warehouse


def _major_minor(name: str) -> tuple[int, int]:
    major, minor = version(name).split(".")[:2]
    return int(major), int(minor)


def test_pinned_versions_are_installed() -> None:
    assert version("ibis-framework") == "12.0.0"
    assert version("sqlglot") == "30.17.0"
    assert _major_minor("duckdb") == (1, 5)
    assert (3, 5) <= _major_minor("pyspark") < (4, 1)
    assert _major_minor("pandas")[0] == 2


def test_ibis_creates_and_inserts_from_dataframes(duck: Warehouse) -> None:
    """What breaks with sqlglot 30.18+."""
    backend = duck.backend
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    backend.create_table("pin_check", frame)
    backend.insert("pin_check", pd.DataFrame({"a": [3], "b": ["z"]}))
    rows = backend.table("pin_check").order_by("a").to_pyarrow().to_pylist()
    assert rows == [{"a": 1, "b": "x"}, {"a": 2, "b": None}, {"a": 3, "b": "z"}]


def test_record_batches_stream(duck: Warehouse) -> None:
    """What breaks with duckdb 2.0."""
    expr = ibis.memtable({"n": list(range(1000))})
    reader = duck.backend.to_pyarrow_batches(expr, chunk_size=100)
    total = sum(batch.num_rows for batch in reader)
    assert total == 1000
    assert isinstance(duck.table("events").limit(1).to_pyarrow(), pa.Table)
