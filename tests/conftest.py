"""Shared fixtures: warehouses on both engines, one Spark session, live servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from touchpoints.warehouse import Warehouse, connect, from_spark_session
from touchpoints.warehouse.vault import KEY_ENV, new_key

pytest_plugins = ["tests.browser"]  # the `browser` and `tab` fixtures (Playwright, Chromium)

# Spark prints much at start; keep the tests' output readable.
os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--conf spark.ui.enabled=false pyspark-shell")
# One encryption key for the run, as a deployment configures it (child processes share
# it); tests of where keys come from unset it.
os.environ.setdefault(KEY_ENV, new_key())


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One local Spark session for the whole run (it takes seconds to start)."""
    from pyspark.sql import SparkSession

    root = tmp_path_factory.mktemp("spark")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("touchpoints-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        # tiny data, many distinct queries: compiling each plan costs more than it saves
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", str(root / "warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={root}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def duckdb_url(path: Path) -> str:
    """A duckdb:// URL for an absolute path (four slashes, as SQLAlchemy spells it)."""
    return f"duckdb:///{path}"


@pytest.fixture(params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def warehouse(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Warehouse]:
    """A fresh, empty warehouse on each engine."""
    if engine == "duckdb":
        wh = connect(duckdb_url(tmp_path / "touchpoints.duckdb"))
    else:
        session = request.getfixturevalue("spark_session")
        wh = from_spark_session(session, database=f"tp_{uuid.uuid4().hex[:10]}")
    yield wh
    wh.close()


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Warehouse]:
    """A fresh DuckDB warehouse, for tests of the embedded write path."""
    wh = connect(duckdb_url(tmp_path / "touchpoints.duckdb"))
    yield wh
    wh.close()


@pytest.fixture
def server(duck: Warehouse):  # type: ignore[no-untyped-def]
    """A live server on a fresh DuckDB warehouse, with one web source."""
    from tests.live import start

    live = start(duck)
    yield live
    live.stop()


@pytest.fixture
def smtp(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real SMTP server on 127.0.0.1 (STARTTLS, a login) keeping what it receives."""
    from tests.smtp import PASSWORD, start_smtp

    os.environ["TP_TEST_SMTP_PASSWORD"] = PASSWORD
    mail = start_smtp(tmp_path)
    yield mail
    mail.controller.stop()
