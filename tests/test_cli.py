"""The `touchpoints` command, run as a user runs it: a real process."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import duckdb_url
from tests.live import free_port


def cli(*args: str, warehouse: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "touchpoints.cli.main"]
    if warehouse:
        command += ["--warehouse", warehouse]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return duckdb_url(tmp_path / "touchpoints.duckdb")


def test_sources_add_prints_the_key_once_as_json(url: str) -> None:
    made = cli("sources", "add", "website", "--channel", "web", "--format", "json", warehouse=url)
    assert made.returncode == 0, made.stderr
    body = json.loads(made.stdout)
    assert body["name"] == "website" and body["channel"] == "web"
    assert body["write_key"].startswith("tpw_") and len(body["write_key"]) > 30
    listed = json.loads(cli("sources", "list", "--format", "json", warehouse=url).stdout)
    assert [s["name"] for s in listed] == ["website"]
    assert "write_key" not in listed[0]
    stored = cli("sql", "SELECT * FROM sources", "--format", "json", warehouse=url).stdout
    assert body["write_key"] not in stored  # only the hash is kept


def test_sql_formats(url: str) -> None:
    cli("sources", "add", "till", "--channel", "store", warehouse=url)
    query = "SELECT name, channel FROM sources"
    as_csv = cli("sql", query, "--format", "csv", warehouse=url).stdout
    assert list(csv.DictReader(io.StringIO(as_csv))) == [{"name": "till", "channel": "store"}]
    as_json = json.loads(cli("sql", query, "-f", "json", warehouse=url).stdout)
    assert as_json == [{"name": "till", "channel": "store"}]
    as_table = cli("sql", query, warehouse=url).stdout
    assert "till" in as_table and "store" in as_table


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("sources", "add", "web site!"), "source name"),
        (("sources", "add", "shop", "--channel", "fax"), "channel must be one of"),
        (("sql", "DROP TABLE events"), "read-only"),
        (("sql", "SELECT nothing FROM nowhere"), "query failed"),
    ],
)
def test_errors_are_one_line_without_traceback(url: str, args: tuple[str, ...], words: str) -> None:
    result = cli(*args, warehouse=url)
    assert result.returncode == 2
    assert words in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_duplicate_source_name_is_refused(url: str) -> None:
    assert cli("sources", "add", "web", warehouse=url).returncode == 0
    again = cli("sources", "add", "web", warehouse=url)
    assert again.returncode == 2 and "exists already" in again.stderr


def test_bad_warehouse_url() -> None:
    result = cli("sources", "list", warehouse="touchpoints.duckdb")
    assert result.returncode == 2 and "no scheme" in result.stderr


def test_the_cli_asks_the_running_server(tmp_path: Path, url: str) -> None:
    """While a server owns the file, the CLI goes through it instead of opening it."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "touchpoints.cli.main", "-w", url, "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        made = json.loads(
            cli("sources", "add", "app", "--channel", "app", "-f", "json", warehouse=url).stdout
        )
        sent = httpx.post(
            f"http://127.0.0.1:{port}/v1/track",
            json={"writeKey": made["write_key"], "userId": "u1", "event": "Signed Up"},
        )
        assert sent.status_code == 200
        rows = json.loads(
            cli("sql", "SELECT event, channel FROM events", "-f", "json", warehouse=url).stdout
        )
        assert rows == [{"event": "Signed Up", "channel": "app"}]
        second = cli("serve", "--port", str(free_port()), warehouse=url)
        assert second.returncode == 2 and "already served" in second.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not (tmp_path / "touchpoints.duckdb.server.json").exists()


def test_help_lists_every_verb() -> None:
    result = cli("--help")
    for verb in ("serve", "demo", "sources", "sql"):
        assert verb in result.stdout
    for sub in (
        ("serve", "--help"),
        ("demo", "--help"),
        ("sources", "add", "--help"),
        ("sql", "--help"),
    ):
        assert cli(*sub).returncode == 0


def test_build_profile_and_keys_from_the_cli(tmp_path: Path, url: str) -> None:
    from touchpoints.collect.demo import DemoParameters, load_demo
    from touchpoints.warehouse import connect

    warehouse = connect(url)
    load_demo(warehouse, DemoParameters(customers=60, months=2, seed=3))
    warehouse.close()
    built = json.loads(cli("build", "-f", "json", warehouse=url).stdout)
    assert built["customers"] >= 60 and built["profiles"] == built["customers"]
    shown = cli("profile", "customer00007@example.com", "-f", "json", warehouse=url)
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert "email:customer00007@example.com" in found["identifiers"]
    assert found["timeline"] and len(found["timeline"]) <= 20
    missing = cli("profile", "nobody@example.com", warehouse=url)
    assert missing.returncode == 2 and "no customer" in missing.stderr
    key = json.loads(
        cli("keys", "add", "analyst", "--role", "read", "-f", "json", warehouse=url).stdout
    )
    assert key["key"].startswith("tpr_")
    listed = json.loads(cli("keys", "list", "-f", "json", warehouse=url).stdout)
    assert [k["name"] for k in listed] == ["analyst"] and "key" not in listed[0]
    revoked = json.loads(cli("keys", "revoke", key["key_id"], "-f", "json", warehouse=url).stdout)
    assert revoked["revoked_at"]
    bad_role = cli("keys", "add", "x", "--role", "owner", warehouse=url)
    assert bad_role.returncode == 2 and "role must be one of" in bad_role.stderr


def test_import_reports_bad_lines_and_adds_nothing_twice(tmp_path: Path, url: str) -> None:
    orders = tmp_path / "till.csv"
    orders.write_text(
        "Receipt,When,Item,Amount,Card\n"
        "R1,2026-03-01T10:00:00Z,SKU-1,19.90,LC1\n"
        "R1,2026-03-01T10:00:00Z,SKU-2,5.00,LC1\n"
        "R2,2026-03-02T11:00:00Z,SKU-3,lots,LC2\n"
        "R3,2026-03-03T12:00:00Z,SKU-1,19.90,LC3\n"
    )
    args = (
        "import",
        "orders",
        str(orders),
        "-c",
        "order_id=Receipt",
        "-c",
        "timestamp=When",
        "-c",
        "sku=Item",
        "-c",
        "price=Amount",
        "-c",
        "loyalty_id=Card",
        "-f",
        "json",
    )
    first = cli(*args, warehouse=url)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["bad_rows"] == 1 and report["errors"][0]["line"] == 4
    count = "SELECT count(*) AS n, sum(revenue) AS revenue FROM events"
    stored = json.loads(cli("sql", count, "-f", "json", warehouse=url).stdout)[0]
    assert stored["n"] == 2 and stored["revenue"] == pytest.approx(44.80)
    assert cli(*args, warehouse=url).returncode == 0
    again = json.loads(cli("sql", count, "-f", "json", warehouse=url).stdout)[0]
    assert again["n"] == 2
    wrong = cli("import", "orders", str(orders), warehouse=url)
    assert wrong.returncode == 2 and "order_id" in wrong.stderr
    assert "Traceback" not in wrong.stderr
