"""Segments, RFM and personas through the faces: admin writes over HTTP, reads with a read
key, the CLI writing members to Parquet — each checked against the functions below."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.insights_data import event, write_events
from tests.live import LiveServer
from touchpoints.identity import build
from touchpoints.insights.rfm import rfm
from touchpoints.insights.segments import members
from touchpoints.models.reports import run_report
from touchpoints.privacy.keys import add_key
from touchpoints.warehouse import Warehouse

AS_OF = "2026-04-01"


def shop() -> list[dict]:
    """Customer n orders n times (0..7), weekly from the start."""
    rows = []
    for n in range(8):
        rows.append(event(f"c{n}", n * 60, path="/"))
        for k in range(n):
            rows.append(event(f"c{n}", k * 7 * 86400 + 3600, "Order Completed",
                              revenue=10.0 * (n + 1)))  # fmt: skip
    return rows


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_segments_over_http(server: LiveServer) -> None:
    warehouse = server.warehouse
    write_events(warehouse, shop())
    build(warehouse)
    _, reader = add_key(warehouse, "analyst", "read")
    _, admin = add_key(warehouse, "ops", "admin")
    rule = {"computed": "orders", "op": ">=", "value": 4}
    url = f"{server.url}/v1/segments"
    body = {"name": "loyal", "rule": rule}
    assert httpx.post(url, json=body, headers=auth(reader)).status_code == 403
    bad = httpx.post(url, json={"name": "x", "rule": {"and": [{"computed": "orders",
                     "op": ">=", "value": "many"}]}}, headers=auth(admin))  # fmt: skip
    assert bad.status_code == 400 and bad.json()["field"] == "rule.and[0].value"
    assert httpx.post(url, json=body, headers=auth(admin)).status_code == 200
    refreshed = httpx.post(f"{url}/loyal/refresh", headers=auth(admin)).json()
    want = sorted(members(warehouse, rule).to_pyarrow()["customer_id"].to_pylist())
    assert refreshed["size"] == len(want) == 4  # c4..c7
    got = httpx.get(f"{server.url}/v1/insights/segment", params={"name": "loyal"},
                    headers=auth(reader)).json()  # fmt: skip
    assert [r["customer_id"] for r in got["rows"]] == want
    sizes = httpx.get(f"{server.url}/v1/insights/segment_sizes", params={"name": "loyal"},
                      headers=auth(reader)).json()  # fmt: skip
    assert [r["size"] for r in sizes["rows"]] == [4]
    assert httpx.delete(f"{url}/loyal", headers=auth(reader)).status_code == 403
    assert httpx.delete(f"{url}/loyal", headers=auth(admin)).status_code == 200
    gone = httpx.get(f"{server.url}/v1/insights/segment", params={"name": "loyal"},
                     headers=auth(reader))  # fmt: skip
    assert gone.status_code == 404


def test_rfm_and_personas_reports(duck: Warehouse) -> None:
    write_events(duck, shop())
    moment = datetime(2026, 4, 1, tzinfo=UTC)
    got = run_report(duck, "rfm", {"as_of": AS_OF})
    want = rfm(duck, moment).to_pandas().sort_values("customer_id")
    table = pd.DataFrame(got.rows).sort_values("customer_id")
    assert table.customer_id.tolist() == want.customer_id.tolist()
    assert table.rfm.tolist() == want.rfm.tolist()
    summary = run_report(duck, "rfm", {"as_of": AS_OF, "view": "summary"}).rows
    assert sum(r["customers"] for r in summary) == 7  # c0 never ordered


@pytest.mark.slow
def test_cli_writes_members_to_parquet(duck: Warehouse, tmp_path: Path) -> None:
    write_events(duck, shop())
    build(duck)
    rich = {"computed": "revenue", "op": ">", "value": 200}
    want = sorted(members(duck, rich).to_pyarrow()["customer_id"].to_pylist())
    duck.close()
    url = f"duckdb:///{tmp_path / 'touchpoints.duckdb'}"
    rule = tmp_path / "big.yaml"
    rule.write_text("computed: revenue\nop: '>'\nvalue: 200\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "touchpoints.cli.main", "-w", url, *args],
                              capture_output=True, text=True, check=False)  # fmt: skip

    assert cli("segments", "save", "big", str(rule)).returncode == 0
    out = tmp_path / "big.parquet"
    done = cli("segments", "members", "big", "--out", str(out))
    assert done.returncode == 0, done.stderr
    # revenue of c_n is n * 10 * (n + 1): above 200 from n = 5
    assert sorted(pd.read_parquet(out).customer_id) == want and len(want) == 3
    bad = cli("segments", "save", "oops", '{"did": "Order Completed", "at_least": -1}')
    assert bad.returncode == 2 and "at_least" in bad.stderr and "Traceback" not in bad.stderr
