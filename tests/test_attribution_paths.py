"""Conversion paths from raw events (both engines), and end to end from UTM-tagged visits,
email clicks, purchases and spend to the attribution table, report and CLI (DuckDB)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from tests.insights_data import T0, event, write_events
from tests.live import LiveServer
from tests.test_insights_kpis import spend_row, write_spend
from touchpoints.cli.attribution import attribution
from touchpoints.errors import InvalidInput
from touchpoints.insights import attribution_models as m
from touchpoints.insights.attribution import attribute_warehouse
from touchpoints.insights.attribution_paths import conversion_paths, time_decay_credit
from touchpoints.insights.attribution_report import REPORTS
from touchpoints.insights.frame import user_events
from touchpoints.insights.reports import run_report
from touchpoints.privacy.keys import add_key
from touchpoints.warehouse import Warehouse

DAY = 86_400
SEARCH = ("google", "cpc", "brand")
SOCIAL = ("facebook", "paid_social", "spring")
NEWS = ("newsletter", "email", "news-1")


def order(user: str, when: float, revenue: float, channel: str = "web") -> dict:
    return event(user, when, "Order Completed", revenue=revenue, channel=channel)


def click(user: str, when: float) -> dict:
    return event(user, when, "Email Link Clicked", channel="email",
                 properties={"campaign_name": "news-1"})  # fmt: skip


# u1: Paid Search (day 0), an email click (day 2), a direct visit and an order of 100
#     (day 3); later a Paid Social visit and an order of 50 (day 50): two journeys.
# u2: Organic Search on day 1 (out of the 30-day lookback), Direct and 80 on day 40.
# u3: Paid Search twice, a day apart, no order: a non-converting path.
# u4: a store order of 30 with no touchpoint at all.
# u5: an email click and, 10 minutes later, the tagged visit it opens (one touch), 60.
ROWS = [
    event("u1", 0, path="/", utm=SEARCH),
    click("u1", 2 * DAY),
    event("u1", 3 * DAY, path="/"),
    order("u1", 3 * DAY + 60, 100.0),
    event("u1", 50 * DAY, path="/", utm=SOCIAL),
    order("u1", 50 * DAY + 60, 50.0),
    event("u2", DAY, path="/", referrer="https://www.google.com/"),
    event("u2", 40 * DAY, path="/"),
    order("u2", 40 * DAY + 60, 80.0),
    event("u3", 0, path="/", utm=SEARCH),
    event("u3", DAY, path="/", utm=SEARCH),
    order("u4", 5 * DAY, 30.0, channel="store"),
    click("u5", 2 * DAY),
    event("u5", 2 * DAY + 600, path="/", utm=NEWS),
    order("u5", 2 * DAY + 660, 60.0),
]
PATHS = {  # path: (conversions, revenue, nulls)
    "Paid Search > Email > Direct": (1, 100.0, 0),
    "Paid Social": (1, 50.0, 0),
    "Direct": (1, 80.0, 0),
    "(no touchpoint)": (1, 30.0, 0),
    "Email": (1, 60.0, 0),
    "Paid Search > Paid Search": (0, 0.0, 1),
}


def decay_expected(half_life_days: float = 7.0) -> dict[str, tuple[float, float]]:
    """Time decay worked out from the touch times above: u1's first order is 3 days + 60 s
    after Paid Search, 1 day + 60 s after the email click and 60 s after the visit."""
    ages = [3 + 60 / DAY, 1 + 60 / DAY, 60 / DAY]
    raw = [0.5 ** (a / half_life_days) for a in ages]
    shares = [w / sum(raw) for w in raw]
    out = {"Paid Search": shares[0], "Email": shares[1] + 1.0, "Direct": shares[2] + 1.0,
           "Paid Social": 1.0, "(no touchpoint)": 1.0}  # fmt: skip
    revenue = {"Paid Search": 100 * shares[0], "Email": 100 * shares[1] + 60,
               "Direct": 100 * shares[2] + 80, "Paid Social": 50.0,
               "(no touchpoint)": 30.0}  # fmt: skip
    return {k: (out[k], revenue[k]) for k in out}


def test_paths_and_time_decay_from_events(warehouse: Warehouse) -> None:
    """The same paths and time-decay credit on both engines, as worked out by hand."""
    write_events(warehouse, ROWS)
    events = user_events(warehouse)
    table = conversion_paths(events).to_pandas()
    got = {r.path: (r.conversions, r.revenue, r.nulls) for r in table.itertuples()}
    assert got == PATHS
    decay = time_decay_credit(events).to_pandas()
    got_decay = {r.key: (r.conversions, r.revenue) for r in decay.itertuples()}
    expected = decay_expected()
    assert set(got_decay) == set(expected)
    for key, (conv, revenue) in expected.items():
        assert got_decay[key] == pytest.approx((conv, revenue)), key


def test_paths_by_campaign_source_medium_and_lookback(duck: Warehouse) -> None:
    """By campaign the email click is its `campaign_name`; by source / medium a visit
    without UTM but with a referrer is `host / referral`; a 2-day lookback cuts u1's
    Paid Search (3 days old) and a since-date keeps only later conversions."""
    write_events(duck, ROWS)
    events = user_events(duck)

    def paths(**kw: object) -> dict[str, tuple]:
        table = conversion_paths(events, **kw).to_pandas()  # type: ignore[arg-type]
        return {r.path: (r.conversions, r.nulls) for r in table.itertuples()}

    assert paths(by="campaign")["brand > news-1 > (not set)"] == (1, 0)
    assert paths(by="campaign")["news-1"] == (1, 0)
    by_source = paths(by="source_medium", lookback=timedelta(days=60))
    assert by_source["google.com / referral > (direct) / (none)"] == (1, 0)
    assert paths(lookback=timedelta(days=2))["Email > Direct"] == (1, 0)
    import ibis

    later = paths(since=ibis.literal(T0 + timedelta(days=30)))
    assert later == {"Paid Social": (1, 0), "Direct": (1, 0)}
    with pytest.raises(InvalidInput) as err:
        conversion_paths(events, by="device")
    assert err.value.field == "by"


def spend(duck: Warehouse) -> None:
    day = T0.date()
    write_spend(duck, [
        spend_row(day, "Paid Search", "brand", 1000, 20, 40.0, "k1"),
        spend_row(day, "Paid Social", "spring", 500, 10, 25.0, "k2"),
        spend_row(day, "Display", None, 800, 4, 10.0, "k3"),
    ])  # fmt: skip


def test_end_to_end_attribution_table(duck: Warehouse) -> None:
    """From raw events and spend to the table: each model's column equals the model run
    in plain Python on the hand-written paths above, and cost, CPA and ROAS follow from
    the spend rows (Display has spend and no touch: its row shows cost, no conversions)."""
    write_events(duck, ROWS)
    spend(duck)
    table = attribute_warehouse(duck).set_index("channel")
    rows = [m.PathRow(tuple(p.split(" > ")), c, r, n) for p, (c, r, n) in PATHS.items()]
    touched = [p for p in rows if p.channels != ("(no touchpoint)",)]
    expected = {
        "first_touch": m.first_touch(touched), "last_touch": m.last_touch(touched),
        "last_non_direct": m.last_non_direct(touched), "linear": m.linear(touched),
        "position_based": m.position_based(touched), "markov": m.markov(touched).attributed,
        "shapley": m.shapley(touched),
        "time_decay": {k: m.Credit(*v) for k, v in decay_expected().items()},
    }  # fmt: skip
    for model, credit in expected.items():
        credit = {**credit, "(no touchpoint)": m.Credit(1.0, 30.0)}
        for channel in table.index:
            want = credit.get(channel, m.Credit(0.0, 0.0))
            assert table.loc[channel, f"{model}_conversions"] == pytest.approx(want.conversions)
            assert table.loc[channel, f"{model}_revenue"] == pytest.approx(want.revenue)
        assert table[f"{model}_conversions"].sum() == pytest.approx(5)
    # By hand: last touch gives Paid Search nothing, first touch 1 conversion worth 100.
    assert table.loc["Paid Search", "cost"] == 40.0
    assert table.loc["Paid Search", "first_touch_cpa"] == pytest.approx(40.0)
    assert table.loc["Paid Search", "first_touch_roas"] == pytest.approx(100 / 40)
    assert table.loc["Paid Search", "last_touch_roas"] == 0.0
    assert table.loc["Paid Social", "last_touch_cpa"] == pytest.approx(25.0)
    assert table.loc["Display", "cost"] == 10.0
    assert table.loc["Display", "markov_conversions"] == 0.0


def test_report_and_errors(duck: Warehouse) -> None:
    """The report reads text parameters; its rows carry nulls, not NaN."""
    write_events(duck, ROWS)
    spend(duck)
    result = run_report(duck, "attribution", {"by": "campaign", "models": "linear,markov",
                                              "markov_order": "2"}, REPORTS)  # fmt: skip
    assert result.columns[:3] == ["campaign", "cost", "linear_conversions"]
    assert result.columns[-1] == "markov_removal_effect"
    by = {row["campaign"]: row for row in result.rows}
    assert by["brand"]["cost"] == 40.0 and by["news-1"]["cost"] is None
    assert sum(row["linear_conversions"] for row in result.rows) == pytest.approx(5)
    for params, field in [({"markov_order": "4"}, "markov_order"), ({"models": "magic"}, "models"),
                          ({"lookback": "soon"}, "lookback"), ({"by": "os"}, "by")]:  # fmt: skip
        with pytest.raises(InvalidInput) as err:
            run_report(duck, "attribution", params, REPORTS)
        assert err.value.field == field


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(attribution)
    app.command("noop")(lambda: None)  # a second command keeps `attribution` a subcommand
    return app


def test_cli_paths_file_as_json(tmp_path: Path) -> None:
    """`attribution --paths FILE --format json`: one object per channel, all path models."""
    file = tmp_path / "paths.csv"
    file.write_text("path;total_conversions;total_conversion_value;total_null\n"
                    "A > B > C;1;10;0\nC > B;0;0;1\n")  # fmt: skip
    run = CliRunner().invoke(_cli(), ["attribution", "--paths", str(file), "--format", "json"])
    assert run.exit_code == 0, run.output
    rows = {row["channel"]: row for row in json.loads(run.stdout)}
    assert rows["C"]["markov_conversions"] == pytest.approx(6 / 11)
    assert rows["C"]["last_touch_revenue"] == 10.0
    assert "time_decay_conversions" not in rows["C"]
    bad = tmp_path / "bad.csv"
    bad.write_text("path;total_conversions\nA;1\nB;many\n")
    run = CliRunner().invoke(_cli(), ["attribution", "--paths", str(bad)])
    assert isinstance(run.exception, InvalidInput) and "line 3" in run.exception.message


@pytest.mark.slow
def test_rest_and_cli_from_the_warehouse(server: LiveServer, tmp_path: Path) -> None:
    """`GET /v1/insights/attribution` (read key) and `touchpoints attribution --format json`
    give the report's own rows for the same parameters."""
    warehouse = server.warehouse
    write_events(warehouse, ROWS)
    spend(warehouse)
    _, reader = add_key(warehouse, "analyst", "read")
    params = {"models": "last_touch,markov", "lookback": "30d"}
    expected = run_report(warehouse, "attribution", params, REPORTS)
    answer = httpx.get(f"{server.url}/v1/insights/attribution", params=params,
                       headers={"Authorization": f"Bearer {reader}"}, timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == expected.rows
    assert httpx.get(f"{server.url}/v1/insights/attribution",
                     auth=(server.write_key, "")).status_code == 403  # fmt: skip
    from touchpoints.cli.main import app

    shown = CliRunner().invoke(
        app,
        [
            "-w",
            warehouse.url,
            "attribution",
            "--model",
            "last_touch",
            "--model",
            "markov",
            "-f",
            "json",
        ],
    )
    assert shown.exit_code == 0, shown.output
    rows = {row["channel"]: row for row in json.loads(shown.stdout)}
    for row in expected.rows:
        assert rows[row["channel"]]["markov_conversions"] == pytest.approx(
            row["markov_conversions"]
        )
