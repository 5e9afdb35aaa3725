"""SQL functions every engine answers to, for analyses written once in Ibis.

`get_json_object(doc, path)` is Spark's name; on DuckDB the warehouse defines a macro
of that name over `json_extract_string`, so `json_text` compiles the same everywhere.
`md5(text)` (hex digest) exists on both under that name.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir


@ibis.udf.scalar.builtin(name="get_json_object")
def _get_json_object(doc: str, path: str) -> str:  # type: ignore[empty-body]
    """The text of a JSON value at `path`."""


@ibis.udf.scalar.builtin(name="md5")
def _md5(text: str) -> str:  # type: ignore[empty-body]
    """The MD5 hex digest of a string."""


def json_text(column: ir.StringValue, key: str) -> ir.StringValue:
    """The value under `key` (dots for nesting) of a JSON text column, as text."""
    return _get_json_object(column, f"$.{key}")


def md5_hex(column: ir.StringValue) -> ir.StringValue:
    return _md5(column)


#: Run on every DuckDB warehouse when it opens.
DUCKDB_MACROS = (
    "CREATE OR REPLACE MACRO get_json_object(doc, path) AS json_extract_string(doc, path)",
)
