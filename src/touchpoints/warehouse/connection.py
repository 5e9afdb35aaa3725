"""The warehouse: an Ibis backend made from a URL, and the only code that knows engines.

URLs:
- ``duckdb:///path/touchpoints.duckdb`` (relative) or ``duckdb:////abs/path.duckdb``:
  the embedded default; ``duckdb://:memory:`` for a throwaway one.
- ``pyspark://local[2]`` (local mode) or ``pyspark://host:7077`` (a standalone cluster),
  optionally ``?database=NAME``.
- any other URL Ibis understands (``postgres://…``, ``snowflake://…``) through
  ``ibis.connect``; those run the analyses but not the embedded write path.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import sqlglot
import sqlglot.expressions as sge

from touchpoints.errors import InvalidInput, MissingDependency, WarehouseError
from touchpoints.warehouse.functions import DUCKDB_MACROS
from touchpoints.warehouse.personal import IdentifierRules, seal_event, seal_rejected
from touchpoints.warehouse.schema import PRIMARY_KEYS, SCHEMA_VERSION, TABLES
from touchpoints.warehouse.vault import KEY_CHECK, KEY_ENV, KEY_FILE_ENV, Vault, load_master

#: DuckDB-only column: a hash of the primary key, indexed instead of the key itself.
HASH_KEY = "_key"
HASHED_KEY_TABLES = frozenset({"events"})

DEFAULT_URL = "duckdb:///touchpoints.duckdb"
ENV_VAR = "TOUCHPOINTS_WAREHOUSE"
#: Where identity keeps its settings in `meta` (the canonical forms depend on them).
IDENTITY_SETTINGS = "identity_settings"


def default_url() -> str:
    """The warehouse URL from ``TOUCHPOINTS_WAREHOUSE``, or the embedded default."""
    return os.environ.get(ENV_VAR) or DEFAULT_URL


@dataclass
class Warehouse:
    """An open warehouse: the Ibis backend plus what Touchpoints needs to know of it."""

    url: str
    backend: Any
    engine: str
    database: str | None = None
    path: Path | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _vault: Vault | None = field(default=None, repr=False)
    _rules: IdentifierRules | None = field(default=None, repr=False)

    @property
    def lock(self) -> threading.RLock:
        """Held while one thread uses the Ibis connection (one per process)."""
        return self._lock

    # -- reading -----------------------------------------------------------------
    @property
    def vault(self) -> Vault:
        """The cipher of this warehouse's personal data (see `vault`), its key checked
        against the one that sealed what is stored already."""
        if self._vault is not None:  # no lock: writers on the event loop call this
            return self._vault
        with self._lock:
            if self._vault is None:
                shared = None if self.engine == "duckdb" else f"{self.engine}-{self.database}"
                master, origin = load_master(self.path, shared)
                vault = Vault(master, origin)
                stored = self.get_meta(KEY_CHECK)
                if stored is None:
                    self.set_meta(KEY_CHECK, vault.check_value)
                elif stored != vault.check_value:
                    raise WarehouseError(
                        f"the encryption key from {origin} is not the key this warehouse's "
                        f"personal data was sealed with; set {KEY_ENV} or {KEY_FILE_ENV} "
                        "to the right one"
                    )
                self._vault = vault
            return self._vault

    @property
    def identifier_rules(self) -> IdentifierRules:
        """How emails and phones are made canonical before they are blinded: the rules
        of the last identity build (`identity_settings` in meta), else the defaults."""
        if self._rules is None:
            with self._lock:
                self._rules = IdentifierRules.from_settings(self.get_meta(IDENTITY_SETTINGS))
        return self._rules

    def use_identifier_rules(self, rules: IdentifierRules) -> None:
        """Seal with these rules from now on (identity is about to store them)."""
        self._rules = rules

    def seal(
        self, events: Sequence[dict[str, Any]], rejected: Sequence[dict[str, Any]] = ()
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Event and rejected-message rows with their personal values sealed: every
        writer calls this before a row reaches disk."""
        vault, rules, memo = self.vault, self.identifier_rules, {}
        return (
            [seal_event(vault, row, rules, memo) for row in events],
            [seal_rejected(vault, row, rules) for row in rejected],
        )

    def table(self, name: str) -> ibis.Table:
        """An Ibis table expression of one of the warehouse's tables."""
        if self.database is not None:
            table = self.backend.table(name, database=self.database)
        else:
            table = self.backend.table(name)
        if HASH_KEY in table.columns:
            table = table.drop(HASH_KEY)
        return table

    def query(self, sql: str) -> pa.Table:
        """Run one read-only SQL statement (SELECT, WITH, …) and return its rows."""
        if self.engine == "duckdb":
            cursor = self.backend.con.cursor()
            try:
                statement = _duckdb_read_only(cursor, sql)
                return cursor.execute(statement).to_arrow_table()
            except InvalidInput:
                raise
            except Exception as exc:  # duckdb raises its own error types for bad SQL
                raise InvalidInput(f"the query failed: {_first_line(exc)}", field="sql") from exc
            finally:
                cursor.close()
        statement = _parse_read_only(sql, self.engine)
        try:
            with self._lock:
                if self.engine == "pyspark" and self.database is not None:
                    self.backend._session.catalog.setCurrentDatabase(self.database)
                return self.backend.sql(statement).to_pyarrow()
        except Exception as exc:
            raise InvalidInput(f"the query failed: {_first_line(exc)}", field="sql") from exc

    def count(self, name: str) -> int:
        return int(self.table(name).count().execute())

    # -- writing -----------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create every table that is missing; safe to call at every start."""
        with self._lock:
            if self.engine == "duckdb":
                for macro in DUCKDB_MACROS:
                    self.backend.raw_sql(macro)
            existing = set(self.list_tables())
            for name, schema in TABLES.items():
                if name in existing:
                    continue
                if self.engine == "duckdb":
                    self._create_duckdb_table(name, schema)
                else:
                    self.backend.create_table(name, schema=schema, **self._db_kw())
            self._check_version()

    def list_tables(self) -> list[str]:
        return list(self.backend.list_tables(**self._db_kw()))

    def insert(self, name: str, rows: pa.Table) -> None:
        """Append rows to a table; on DuckDB rows whose key exists already are skipped."""
        if rows.num_rows == 0:
            return
        with self._lock:
            if self.engine == "duckdb":
                insert_arrow_duckdb(self.backend.con, name, rows)
            else:
                self._insert_spark(name, rows)

    def _insert_spark(self, name: str, rows: pa.Table) -> None:
        """Append Arrow rows to a Spark table without a trip through pandas, which turns
        missing numbers into NaN (and a null in an integer column into nulls for all)."""
        session = self.backend._session
        target = session.table(_spark_name(name, self.database))
        columns = []
        for spark_field in target.schema.fields:
            if spark_field.name in rows.column_names:
                columns.append(rows.column(spark_field.name))
            else:
                columns.append(pa.nulls(rows.num_rows))
        aligned = pa.table(columns, names=target.schema.names)
        frame = session.createDataFrame(aligned, schema=target.schema)
        frame.write.insertInto(_spark_name(name, self.database))

    def update_rows(
        self, name: str, key_column: str, key_value: Any, values: dict[str, Any]
    ) -> None:
        """Set `values` on the rows whose `key_column` equals `key_value` (small tables:
        keys, settings)."""
        with self._lock:
            if self.engine == "duckdb":
                assignments = ", ".join(f"{_quote(c)} = ?" for c in values)
                cursor = self.backend.con.cursor()
                try:
                    cursor.execute(
                        f"UPDATE {_quote(name)} SET {assignments} WHERE {_quote(key_column)} = ?",
                        [*values.values(), key_value],
                    )
                finally:
                    cursor.close()
                return
            table = self.table(name)
            hit = table[key_column] == key_value
            updated = table.mutate(
                **{
                    c: hit.ifelse(ibis.literal(v, type=table[c].type()), table[c])
                    for c, v in values.items()
                }
            )
            rows = updated.to_pyarrow()
            self.backend.create_table(name, ibis.memtable(rows), overwrite=True, **self._db_kw())

    def update_many(self, name: str, key: Sequence[str], rows: pa.Table) -> None:
        """Set the columns of `rows` other than `key` on the rows of `name` with the
        same key (many at once: one UPDATE on DuckDB, a rewrite elsewhere)."""
        values = [c for c in rows.column_names if c not in key]
        with self._lock:
            if self.engine == "duckdb":
                cursor = self.backend.con.cursor()
                try:
                    cursor.register("_tp_updates", rows)
                    assignments = ", ".join(f"{_quote(c)} = u.{_quote(c)}" for c in values)
                    match = " AND ".join(f"t.{_quote(c)} = u.{_quote(c)}" for c in key)
                    cursor.execute(
                        f"UPDATE {_quote(name)} AS t SET {assignments} "
                        f"FROM _tp_updates AS u WHERE {match}"
                    )
                    cursor.unregister("_tp_updates")
                finally:
                    cursor.close()
                return
            table = self.table(name)
            updates = ibis.memtable(rows).rename({f"_new_{c}": c for c in values})
            joined = table.left_join(updates, list(key))
            merged = joined.select(
                *[
                    ibis.coalesce(joined[f"_new_{c}"], joined[c]).name(c)
                    if c in values
                    else joined[c]
                    for c in table.columns
                ]
            )
            materialised = merged.to_pyarrow()
            self.backend.create_table(
                name, ibis.memtable(materialised), overwrite=True, **self._db_kw()
            )

    def get_meta(self, key: str) -> str | None:
        meta = self.table("meta")
        found = meta.filter(meta.key == key).value.to_pyarrow().to_pylist()
        return found[0] if found else None

    def set_meta(self, key: str, value: str) -> None:
        if key == IDENTITY_SETTINGS:  # kept in memory: the write path must not query
            self._rules = IdentifierRules.from_settings(value)
        if self.get_meta(key) is None:
            self.insert("meta", pa.table({"key": [key], "value": [value]}))
        else:
            self.update_rows("meta", "key", key, {"value": value})

    def replace(self, name: str, expr: ibis.Table) -> ibis.Table:
        """Store the result of `expr` as table `name` (replacing it) and return it."""
        with self._lock:
            self.backend.create_table(name, expr, overwrite=True, **self._db_kw())
        return self.table(name)

    def truncate(self, name: str) -> None:
        """Remove every row of a table, keeping the table, its keys and constraints."""
        with self._lock:
            if self.engine == "duckdb":
                self.backend.raw_sql(f"DELETE FROM {_quote(name)}")
            else:
                self.backend._session.sql(f"TRUNCATE TABLE {_spark_name(name, self.database)}")

    def delete_where(self, name: str, predicate: Callable[[ibis.Table], ir.BooleanValue]) -> int:
        """Delete the rows of table `name` for which `predicate(table)` is true (a null
        keeps the row); returns how many went. DuckDB runs one DELETE, so the table keeps
        its keys (and hidden `_key`); Spark rewrites the table with the other rows."""
        with self._lock:
            if self.engine == "duckdb":
                base = self.backend.sql(f"SELECT rowid AS _tp_rowid, * FROM {_quote(name)}")
                if HASH_KEY in base.columns:
                    base = base.drop(HASH_KEY)
                doomed = base.filter(predicate(base)).select("_tp_rowid")
                self.backend._run_pre_execute_hooks(doomed)  # registers in-memory tables
                inner = self.backend.compile(doomed)
                found = self.backend.raw_sql(
                    f"DELETE FROM {_quote(name)} WHERE rowid IN (SELECT _tp_rowid FROM ({inner}))"
                ).fetchone()
                return int(found[0]) if found else 0
            table = self.table(name)
            count = int(table.filter(predicate(table)).count().execute())
            if count == 0:
                return 0
            kept = table.filter(~ibis.coalesce(predicate(table), False))
            session = self.backend._session
            if self.database is not None:
                session.catalog.setCurrentDatabase(self.database)
            self.backend._run_pre_execute_hooks(kept)
            frame = session.sql(self.backend.compile(kept)).localCheckpoint()
            frame.write.insertInto(_spark_name(name, self.database), overwrite=True)
            return count

    def compact(self) -> bool:
        """Rewrite an embedded (DuckDB file) warehouse into a fresh file and swap it in, so
        that deleted rows leave no bytes behind (DuckDB reuses freed blocks but never
        clears them). Temporary tables are lost. Returns False (nothing to do) for other
        engines and in-memory databases. Callers stop other writers first."""
        if self.engine != "duckdb" or self.path is None:
            return False
        with self._lock:
            con = self.backend.con
            fresh = self.path.with_name(self.path.name + ".compact")
            for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
                leftover.unlink(missing_ok=True)
            con.execute("CHECKPOINT")
            catalog = con.execute("SELECT current_database()").fetchone()[0]
            con.execute(f"ATTACH {_sql_text(str(fresh))} AS _tp_compact")
            try:
                con.execute(f"COPY FROM DATABASE {_quote(catalog)} TO _tp_compact")
            except Exception:
                con.execute("DETACH _tp_compact")
                fresh.unlink(missing_ok=True)
                raise
            marker = os.urandom(8).hex()  # proves below that the new file is the one open
            con.execute(
                "INSERT OR REPLACE INTO _tp_compact.meta VALUES ('compact_marker', ?)", [marker]
            )
            con.execute("DETACH _tp_compact")
            con.close()
            try:
                os.replace(fresh, self.path)
                self.path.with_name(self.path.name + ".wal").unlink(missing_ok=True)
            finally:
                self.backend.do_connect(str(self.path))
                self.backend._memtables = weakref.WeakSet()  # registrations died with con
                for macro in DUCKDB_MACROS:
                    self.backend.raw_sql(macro)
            if self.get_meta("compact_marker") != marker:
                raise WarehouseError(
                    f"{self.path} was still open elsewhere in this process while it was "
                    "rewritten; restart Touchpoints before writing to it"
                )
            self.backend.raw_sql("DELETE FROM meta WHERE key = 'compact_marker'")
        return True

    def drop(self, name: str) -> None:
        with self._lock:
            self.backend.drop_table(name, force=True, **self._db_kw())

    def scratch(self, expr: ibis.Table, name: str) -> ibis.Table:
        """Compute `expr` now into a temporary table of this session (iterative work:
        each round reads the last one's result, not a growing expression)."""
        with self._lock:
            if self.engine == "pyspark":
                session = self.backend._session
                if self.database is not None:
                    session.catalog.setCurrentDatabase(self.database)
                self.backend._run_pre_execute_hooks(expr)  # registers in-memory tables
                frame = session.sql(self.backend.compile(expr)).localCheckpoint()
                frame.createOrReplaceTempView(name)
                return self.backend.table(name)
            self.backend.create_table(name, expr, temp=True, overwrite=True)
            return self.backend.table(name)

    def drop_scratch(self, name: str) -> None:
        with self._lock:
            if self.engine == "pyspark":
                self.backend._session.catalog.dropTempView(name)
            else:
                self.backend.drop_table(name, force=True)

    def close(self) -> None:
        disconnect = getattr(self.backend, "disconnect", None)
        if disconnect is not None and self.engine == "duckdb":
            disconnect()

    # -- internals ---------------------------------------------------------------
    def _db_kw(self) -> dict[str, str]:
        return {"database": self.database} if self.database is not None else {}

    def _create_duckdb_table(self, name: str, schema: ibis.Schema) -> None:
        columns = ", ".join(col.sql("duckdb") for col in schema.to_sqlglot_column_defs("duckdb"))
        key = PRIMARY_KEYS.get(name, ())
        if name in HASHED_KEY_TABLES:
            # A 128-bit hash of the key columns indexes far faster than the strings do.
            columns = f"{HASH_KEY} UHUGEINT PRIMARY KEY, {columns}"
        elif key:
            columns += f", PRIMARY KEY ({', '.join(_quote(c) for c in key)})"
        self.backend.raw_sql(f"CREATE TABLE IF NOT EXISTS {_quote(name)} ({columns})")

    def _check_version(self) -> None:
        meta = self.table("meta")
        found = meta.filter(meta.key == "schema_version").value.to_pyarrow().to_pylist()
        if not found:
            self.insert(
                "meta",
                pa.table({"key": ["schema_version"], "value": [str(SCHEMA_VERSION)]}),
            )
        elif int(found[0]) > SCHEMA_VERSION:
            raise WarehouseError(
                f"the warehouse has schema version {found[0]}, newer than this Touchpoints "
                f"({SCHEMA_VERSION}); upgrade touchpoints"
            )


def duckdb_insert_sql(name: str, columns: list[str], source: str, returning: str = "") -> str:
    """INSERT … SELECT from a registered relation, skipping rows whose key exists."""
    names = ", ".join(_quote(c) for c in columns)
    target, select = names, names
    if name in HASHED_KEY_TABLES:
        parts = " || chr(31) || ".join(_quote(c) for c in PRIMARY_KEYS[name])
        target, select = f"{HASH_KEY}, {names}", f"md5_number({parts}), {names}"
    conflict = " ON CONFLICT DO NOTHING" if name in PRIMARY_KEYS else ""
    suffix = f" RETURNING {returning}" if returning else ""
    return f"INSERT INTO {_quote(name)} ({target}) SELECT {select} FROM {source}{conflict}{suffix}"


def insert_arrow_duckdb(con: Any, name: str, rows: pa.Table) -> int:
    """Insert an Arrow table into a DuckDB table by column name, skipping existing keys."""
    cursor = con.cursor()
    try:
        cursor.register("_tp_rows", rows)
        cursor.execute(duckdb_insert_sql(name, rows.column_names, "_tp_rows"))
        inserted = cursor.fetchone()
        cursor.unregister("_tp_rows")
        return int(inserted[0]) if inserted else 0
    finally:
        cursor.close()


def connect(url: str | None = None, *, create: bool = True) -> Warehouse:
    """Open the warehouse at `url` (see the module docstring) and create its tables."""
    url = url or default_url()
    scheme, _, rest = url.partition("://")
    if not rest:
        raise InvalidInput(
            f"warehouse URL {url!r} has no scheme; use e.g. {DEFAULT_URL}", field="warehouse"
        )
    if scheme == "duckdb":
        warehouse = _connect_duckdb(url, rest)
    elif scheme in {"pyspark", "spark"}:
        warehouse = _connect_spark(url, rest)
    else:
        try:
            backend = ibis.connect(url)
        except Exception as exc:
            raise WarehouseError(f"cannot open warehouse {url}: {_first_line(exc)}") from exc
        warehouse = Warehouse(url=url, backend=backend, engine=backend.name)
    if create:
        warehouse.ensure_schema()
        warehouse.vault  # noqa: B018 - a wrong key is refused when the warehouse opens
        warehouse.identifier_rules  # noqa: B018 - read now, not on the write path
        if warehouse.path is not None:  # events acknowledged before a crash come first
            from touchpoints.warehouse.spool import recover
            from touchpoints.warehouse.writer import spool_dir

            recover(warehouse, spool_dir(warehouse))
    return warehouse


def from_spark_session(session: Any, database: str | None = None) -> Warehouse:
    """A warehouse on an existing SparkSession (a notebook's, or the tests' shared one)."""
    backend = _ibis_backend("pyspark").connect(session)
    if database is not None:
        session.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    warehouse = Warehouse(
        url="pyspark://session", backend=backend, engine="pyspark", database=database
    )
    warehouse.ensure_schema()
    warehouse.vault  # noqa: B018 - a wrong key is refused when the warehouse opens
    warehouse.identifier_rules  # noqa: B018 - read now, not on the write path
    return warehouse


def duckdb_path(url: str) -> Path | None:
    """The file of a ``duckdb://`` URL (None for in-memory or another engine)."""
    scheme, _, rest = url.partition("://")
    if scheme != "duckdb":
        return None
    target = rest[1:] if rest.startswith("/") else rest
    if target in {"", ":memory:"}:
        return None
    return Path(target).expanduser().resolve()


def _connect_duckdb(url: str, rest: str) -> Warehouse:
    path = duckdb_path(url)
    target = ":memory:" if path is None else str(path)
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        backend = ibis.duckdb.connect(target)
    except Exception as exc:
        text = _first_line(exc)
        if "lock" in text.lower():
            raise WarehouseError(
                f"the warehouse file {path} is held by another process (is `touchpoints "
                "serve` running? stop it, or let the CLI talk to it)"
            ) from exc
        raise WarehouseError(f"cannot open warehouse {url}: {text}") from exc
    return Warehouse(url=url, backend=backend, engine="duckdb", path=path)


def _connect_spark(url: str, rest: str) -> Warehouse:
    master, _, query = rest.partition("?")
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    if not master.startswith("local") and "://" not in master:
        master = f"spark://{master}"
    pyspark_sql = _import_pyspark()
    builder = (
        pyspark_sql.SparkSession.builder.master(master)
        .appName("touchpoints")
        .config("spark.sql.session.timeZone", "UTC")
    )
    for key, value in options.items():
        if key.startswith("spark."):
            builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
        warehouse = from_spark_session(session, database=options.get("database"))
    except Exception as exc:  # Py4J and Spark errors, whatever their class
        raise WarehouseError(f"cannot open Spark at {master}: {_first_line(exc)}") from exc
    warehouse.url = url
    return warehouse


def _import_pyspark() -> Any:
    try:
        import pyspark.sql as pyspark_sql
    except ImportError as exc:
        raise MissingDependency(
            "the Spark warehouse needs PySpark: pip install 'touchpoints[spark]'"
        ) from exc
    return pyspark_sql


def _ibis_backend(name: str) -> Any:
    if name == "pyspark":
        _import_pyspark()
    return getattr(ibis, name)


def _duckdb_read_only(cursor: Any, sql: str) -> str:
    import duckdb

    try:
        statements = cursor.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidInput(f"the query does not parse: {_first_line(exc)}", field="sql") from exc
    if len(statements) != 1:
        raise InvalidInput("give exactly one SQL statement", field="sql")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise InvalidInput(
            f"only read-only queries (SELECT, WITH …) are allowed, not {kind.name}", field="sql"
        )
    return statements[0].query


def _parse_read_only(sql: str, engine: str) -> str:
    dialect = "spark" if engine == "pyspark" else engine
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.ParseError as exc:
        raise InvalidInput(f"the query does not parse: {_first_line(exc)}", field="sql") from exc
    if len(statements) != 1:
        raise InvalidInput("give exactly one SQL statement", field="sql")
    statement = statements[0]
    if not isinstance(statement, sge.Query | sge.Describe):
        raise InvalidInput(
            f"only read-only queries (SELECT, WITH …) are allowed, not {statement.key.upper()}",
            field="sql",
        )
    return sql.strip().rstrip(";")


def _spark_name(name: str, database: str | None) -> str:
    return f"`{database}`.`{name}`" if database else f"`{name}`"


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
