"""The warehouse layer: the one place that knows about engines (DuckDB, Spark, …)."""

from touchpoints.warehouse.connection import (
    DEFAULT_URL,
    Warehouse,
    connect,
    default_url,
    duckdb_path,
    from_spark_session,
)
from touchpoints.warehouse.schema import CHANNELS, TABLES

__all__ = [
    "CHANNELS",
    "DEFAULT_URL",
    "TABLES",
    "Warehouse",
    "connect",
    "default_url",
    "duckdb_path",
    "from_spark_session",
]
