"""SQL functions every engine answers to, for analyses written once in Ibis.

`get_json_object(doc, path)` is Spark's name; on DuckDB the warehouse defines a macro
of that name over `json_extract_string`, so `json_text` compiles the same everywhere.
`md5(text)` (hex digest) exists on both under that name; `unix_micros(ts)` is Spark's
name, defined on DuckDB over `epoch_us`.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir


@ibis.udf.scalar.builtin(name="get_json_object")
def _get_json_object(doc: str, path: str) -> str:  # type: ignore[empty-body]
    """The text of a JSON value at `path`."""


@ibis.udf.scalar.builtin(name="md5")
def _md5(text: str) -> str:  # type: ignore[empty-body]
    """The MD5 hex digest of a string."""


@ibis.udf.scalar.builtin(name="unix_micros")
def _unix_micros(ts: dt.timestamp) -> dt.int64:  # type: ignore[empty-body]
    """Microseconds since 1970-01-01 UTC."""


def epoch_micros(column: ir.TimestampValue) -> ir.IntegerValue:
    """A timestamp as whole microseconds since the epoch: exact time arithmetic on every
    engine (Ibis' `epoch_seconds` drops the fraction)."""
    return _unix_micros(column)


def json_text(column: ir.StringValue, key: str) -> ir.StringValue:
    """The value under `key` (dots for nesting) of a JSON text column, as text."""
    return _get_json_object(column, f"$.{key}")


def md5_hex(column: ir.StringValue) -> ir.StringValue:
    return _md5(column)


#: Run on every DuckDB warehouse when it opens.
DUCKDB_MACROS = (
    "CREATE OR REPLACE MACRO get_json_object(doc, path) AS json_extract_string(doc, path)",
    "CREATE OR REPLACE MACRO unix_micros(ts) AS epoch_us(ts)",
)
