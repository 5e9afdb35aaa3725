"""Reports: the one place the CLI and the API turn text parameters into an analysis.
Checked against the analysis functions called directly, at the scope's edges, over HTTP
with API keys, and from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest

from tests.insights_data import T0, event, write_events
from tests.live import LiveServer
from touchpoints.errors import InvalidInput
from touchpoints.insights import funnels, paths, retention, web
from touchpoints.insights.frame import Condition, Scope, first_seen, user_events
from touchpoints.insights.reports import run_report
from touchpoints.insights.sessions import sessionize, sessions
from touchpoints.models.reports import REPORTS
from touchpoints.privacy.keys import add_key
from touchpoints.warehouse import Warehouse

DAY = 86400


def shop_log() -> list[dict]:
    """Three users over two weeks: views, a funnel, an email event, a store order."""
    rows = []
    for n, user in enumerate(("ana", "ben", "cy")):
        start = n * 3600
        rows += [
            event(user, start, path="/", utm=("google", "cpc", "spring") if n == 0 else None),
            event(user, start + 20, path="/shoes"),
            event(user, start + 40, "Product Viewed", properties={"category": "shoes"}),
        ]
        if n < 2:
            rows.append(event(user, start + 90, "Order Completed", revenue=50.0 + n))
        rows.append(event(user, start + 8 * DAY, path="/"))
    rows.append(event("ana", 2 * DAY, "Email Opened", channel="email"))
    rows.append(event("cy", 3 * DAY, "Order Completed", channel="store", revenue=20.0))
    return rows


def rows_of(table) -> list[dict]:  # type: ignore[no-untyped-def]
    return table.to_pyarrow().to_pylist()


def test_reports_run_the_analyses_they_name(warehouse: Warehouse) -> None:
    write_events(warehouse, shop_log())
    steps = [funnels.Step("Product Viewed"), funnels.Step("Order Completed")]
    got = run_report(
        warehouse, "funnel", {"step": ["Product Viewed", "Order Completed"], "window": "1h"}
    )
    want = rows_of(funnels.funnel(user_events(warehouse), steps, timedelta(hours=1)))
    assert got.rows == want and want[1]["users"] == 2  # cy's store order is a day later

    got = run_report(warehouse, "retention", {"period": "week", "periods": "2"})
    assert got.rows == rows_of(retention.retention(user_events(warehouse), "week", periods=2))

    web_only = Scope(where=(Condition("channel", "web"), Condition("channel", "app")))
    visits = sessions(sessionize(user_events(warehouse, web_only)))
    want = rows_of(web.web_overview(visits, "week", None, first_seen(warehouse)))
    got = run_report(warehouse, "web", {"period": "week"})
    assert got.rows == want
    # One visit a user each week: the email open and the store order are not web visits.
    assert [r["sessions"] for r in got.rows] == [3, 3]

    sessionized = sessionize(user_events(warehouse))
    got = run_report(warehouse, "paths", {"from_event": "page:/", "steps": "2"})
    assert got.rows == rows_of(paths.paths(sessionized, "page:/", "after", 2))
    assert got.columns == ["step_1", "step_2", "sessions", "share"]


def test_scope_dates_and_conditions(duck: Warehouse) -> None:
    day = T0.date()
    write_events(
        duck,
        [
            event("a", 0, "Order Completed"),  # 2026-03-02
            event("b", DAY + 14 * 3600 + 59 * 60, "Order Completed"),  # 2026-03-03 23:59
            event("c", 2 * DAY - 9 * 3600, "Order Completed"),  # 2026-03-04 00:00
            event("d", DAY, "Order Completed", utm=("news", "email", "march")),
        ],
    )

    def buyers(**params: object) -> int:
        got = run_report(duck, "funnel", {"step": "Order Completed", **params})
        return got.rows[0]["users"] if got.rows else 0

    assert buyers() == 4
    next_day = (day + timedelta(days=1)).isoformat()
    assert buyers(to=next_day) == 3  # a bare date includes the whole day…
    assert buyers(to=f"{next_day}T23:59:00Z") == 2  # …a time is exclusive
    assert buyers(**{"from": next_day}) == 3
    assert buyers(**{"from": next_day, "to": next_day}) == 2
    assert buyers(where="medium=email") == 1
    assert buyers(where=["medium!=email"]) == 3
    assert buyers(where=["medium=email", "medium=cpc"]) == 1  # same field: either value


def test_web_reads_web_and_app_unless_a_channel_is_named(duck: Warehouse) -> None:
    write_events(
        duck,
        [
            event("a", 0, path="/"),
            event("b", 0, path="/", channel="app"),
            event("c", 0, "Email Opened", channel="email"),
        ],
    )
    users = lambda **p: run_report(duck, "web", {"period": "all", **p}).rows[0]["users"]  # noqa: E731
    assert users() == 2
    assert users(where="channel=email") == 1
    assert "period" not in run_report(duck, "web", {"period": "all"}).columns


@pytest.mark.parametrize(
    ("report", "params", "field"),
    [
        ("nope", {}, "report"),
        ("web", {"colour": "red"}, "colour"),
        ("web", {"period": "fortnight"}, "period"),
        ("web", {"by": "shoe_size"}, "by"),
        ("web", {"to": "2026-02-30"}, "to"),
        ("web", {"from": "2026-03-02", "to": "2026-03-01"}, "to"),
        ("web", {"where": "channel"}, "where"),
        ("funnel", {}, "step"),
        ("funnel", {"step": "a", "window": "7 days"}, "window"),
        ("funnel", {"step": ["a", "b"], "dropped_after": "2"}, "step"),
        ("paths", {}, "from_event"),
        ("paths", {"from_event": "a", "to_event": "b"}, "from_event"),
        ("paths", {"from_event": "a", "steps": "0"}, "steps"),
        ("retention", {"period": "all"}, "period"),
        ("retention", {"periods": "-1"}, "periods"),
        ("kpis", {"by": "device"}, "by"),
        ("kpis", {"customers": "maybe"}, "customers"),
    ],
)
def test_bad_parameters_name_their_field(
    duck: Warehouse, report: str, params: dict, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        run_report(duck, report, params)
    assert caught.value.field == field


@pytest.mark.slow
def test_insights_over_http_need_a_read_key(server: LiveServer) -> None:
    warehouse = server.warehouse
    write_events(warehouse, shop_log())
    _, reader = add_key(warehouse, "analyst", "read")
    url = f"{server.url}/v1/insights/funnel"
    query = [("step", "page:/"), ("step", "Product Viewed"), ("window", "1h")]
    assert httpx.get(url, params=query).status_code == 401
    assert httpx.get(url, params=query, headers=auth(server.write_key)).status_code == 403
    answer = httpx.get(url, params=query, headers=auth(reader))
    assert answer.status_code == 200
    want = run_report(warehouse, "funnel", {"step": ["page:/", "Product Viewed"], "window": "1h"})
    assert answer.json() == json.loads(json.dumps(want.as_dict(), default=str))
    bad = httpx.get(url, params=[("step", "a"), ("window", "soon")], headers=auth(reader))
    assert bad.status_code == 400 and bad.json()["field"] == "window"
    listed = httpx.get(f"{server.url}/v1/insights", headers=auth(reader)).json()
    assert {r["report"] for r in listed} == set(REPORTS)
    assert {"web", "pages", "funnel", "paths", "retention", "kpis"} <= set(REPORTS)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_cli_verbs_print_the_reports(duck: Warehouse, tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_events(duck, shop_log())
    url = f"duckdb:///{tmp_path / 'touchpoints.duckdb'}"
    want = {
        ("funnel", "Product Viewed", "Order Completed", "--window", "1h"): (
            "funnel", {"step": ["Product Viewed", "Order Completed"], "window": "1h"}),
        ("retention", "--period", "week", "--periods", "1"): (
            "retention", {"period": "week", "periods": "1"}),
        ("kpis", "--customers", "--period", "week"): (
            "kpis", {"customers": "true", "period": "week"}),
        ("web", "--pages", "--limit", "2", "--until", "2026-03-05"): (
            "pages", {"limit": "2", "to": "2026-03-05"}),
    }  # fmt: skip
    expected = {args: run_report(duck, *call) for args, call in want.items()}
    duck.close()
    for args, result in expected.items():
        done = subprocess.run(
            [sys.executable, "-m", "touchpoints.cli.main", "-w", url, *args, "-f", "json"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == json.loads(json.dumps(result.rows, default=str))
    done = subprocess.run(
        [sys.executable, "-m", "touchpoints.cli.main", "-w", url, "web", "--period", "hour"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "period" in done.stderr
