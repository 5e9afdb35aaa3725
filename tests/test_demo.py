"""The demo shop: repeatable, idempotent, and what it says it made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import duckdb_url
from touchpoints.collect.demo import CAMPAIGNS, DemoParameters, load_demo
from touchpoints.warehouse import Warehouse, connect

SMALL = DemoParameters(customers=150, months=3, seed=11)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Warehouse, dict]:
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    warehouse = connect(duckdb_url(path))
    summary = load_demo(warehouse, SMALL)
    return warehouse, summary


def _fingerprint(warehouse: Warehouse) -> list[tuple]:
    return [
        tuple(r.values())
        for r in warehouse.query(
            "SELECT message_id, type, event, user_id, anonymous_id, timestamp, revenue "
            "FROM events ORDER BY message_id"
        ).to_pylist()
    ]


def test_the_same_seed_makes_the_same_shop(demo, tmp_path: Path) -> None:
    warehouse, summary = demo
    twin = connect(duckdb_url(tmp_path / "twin.duckdb"))
    assert load_demo(twin, SMALL)["events"] == summary["events"]
    assert _fingerprint(twin) == _fingerprint(warehouse)
    other = connect(duckdb_url(tmp_path / "other.duckdb"))
    load_demo(other, DemoParameters(customers=150, months=3, seed=12))
    assert _fingerprint(other) != _fingerprint(warehouse)


def test_loading_again_adds_nothing(demo) -> None:
    warehouse, summary = demo
    before = warehouse.count("events")
    again = load_demo(warehouse, SMALL)
    assert again["events_added"] == 0
    assert warehouse.count("events") == before == summary["events"]
    assert warehouse.count("sources") == 4


def test_the_counts_it_reports_are_in_the_data(demo) -> None:
    warehouse, summary = demo
    orders = warehouse.query(
        "SELECT count(*) AS n FROM events WHERE event = 'Order Completed'"
    ).to_pylist()[0]["n"]
    assert orders == summary["orders"]
    # every customer identifies once with an email: on the web, or at the till
    emails = warehouse.query(
        "SELECT count(DISTINCT traits->>'email') AS n FROM events WHERE type = 'identify'"
    ).to_pylist()[0]["n"]
    assert emails == SMALL.customers == summary["customers"]
    channels = {
        r["channel"] for r in warehouse.query("SELECT DISTINCT channel FROM events").to_pylist()
    }
    assert channels == {"web", "app", "store", "email"}
    assert 0 < summary["churned"] < SMALL.customers


def test_visitors_browse_anonymously_before_they_identify(demo) -> None:
    warehouse, _ = demo
    rows = warehouse.query("""
        WITH first_identify AS (
            SELECT anonymous_id, min(timestamp) AS at FROM events
            WHERE type = 'identify' AND user_id IS NOT NULL GROUP BY anonymous_id)
        SELECT count(*) AS n FROM events e JOIN first_identify f USING (anonymous_id)
        WHERE e.type = 'page' AND e.user_id IS NULL AND e.timestamp < f.at
    """).to_pylist()
    assert rows[0]["n"] > 0
    never = warehouse.query("""
        SELECT count(DISTINCT anonymous_id) AS n FROM events
        WHERE anonymous_id NOT IN (SELECT anonymous_id FROM events WHERE type = 'identify')
          AND channel = 'web' AND user_id IS NULL
    """).to_pylist()[0]["n"]
    assert never >= SMALL.customers * SMALL.anonymous_visitors_per_customer * 0.9


def test_ad_spend_covers_the_paid_sessions(demo) -> None:
    warehouse, _ = demo
    spend = {
        r["campaign"]: r
        for r in warehouse.query(
            "SELECT campaign, sum(clicks)::BIGINT AS clicks, sum(impressions)::BIGINT AS "
            "impressions, sum(cost) AS cost FROM spend GROUP BY campaign"
        ).to_pylist()
    }
    # every demo session opens on the home page, so those views count the sessions
    sessions = {
        r["utm_campaign"]: r["n"]
        for r in warehouse.query(
            "SELECT utm_campaign, count(*) AS n FROM events WHERE type IN ('page', 'screen') "
            "AND page_path = '/' GROUP BY utm_campaign"
        ).to_pylist()
    }
    assert set(spend) == set(CAMPAIGNS)
    for campaign, row in spend.items():
        assert sessions[campaign] > 0
        assert row["clicks"] >= sessions[campaign]
        assert row["impressions"] > row["clicks"] > 0
        assert row["cost"] == pytest.approx(row["clicks"] * CAMPAIGNS[campaign][2], rel=0.01)


def test_hidden_parameters_are_recorded(demo) -> None:
    warehouse, _ = demo
    meta = {r["key"]: r["value"] for r in warehouse.table("meta").to_pyarrow().to_pylist()}
    recorded = json.loads(meta["demo_parameters"])
    assert recorded["r"] == SMALL.r and recorded["alpha"] == SMALL.alpha
    assert recorded["customers"] == SMALL.customers
    assert json.loads(meta["demo_counts"])["orders"] > 0


def test_purchase_counts_follow_the_planted_rates(tmp_path: Path) -> None:
    """Customers' repeat purchases per day alive average E[λ] = r/α under BG/NBD; the
    observed mean over the sample must sit near it (a loose, two-sided check)."""
    params = DemoParameters(
        customers=1500,
        months=12,
        seed=5,
        newsletter_every_days=365,
        anonymous_visitors_per_customer=0.0,
        sessions_per_purchase=0.0,
    )
    warehouse = connect(duckdb_url(tmp_path / "rates.duckdb"))
    load_demo(warehouse, params)
    per_customer = warehouse.query("""
        WITH ids AS (
            SELECT DISTINCT coalesce(user_id, anonymous_id) AS who, traits->>'email' AS email
            FROM events WHERE type = 'identify'),
        orders AS (
            SELECT coalesce(user_id, anonymous_id) AS who, count(*) AS n FROM events
            WHERE event = 'Order Completed' GROUP BY 1)
        SELECT avg(n) AS mean_orders, count(*) AS buyers FROM orders JOIN ids USING (who)
    """).to_pylist()[0]
    assert per_customer["buyers"] > 1000
    assert 1.5 < per_customer["mean_orders"] < 6.0


def test_identity_resolution_finds_the_customers_the_generator_made(demo) -> None:
    from touchpoints.identity import build

    warehouse, _ = demo
    made = build(warehouse)
    people = warehouse.query("""
        SELECT count(DISTINCT customer_id) AS customers,
               count(*) AS emails
        FROM identities WHERE kind = 'email'
    """).to_pylist()[0]
    # one customer per generated person, and no person split or glued to another
    assert people == {"customers": SMALL.customers, "emails": SMALL.customers}
    per_customer = warehouse.query("""
        SELECT customer_id, count(*) FILTER (WHERE kind = 'email') AS emails
        FROM identities GROUP BY customer_id
    """).to_pylist()
    assert max(r["emails"] for r in per_customer) == 1
    # everyone else is an anonymous visitor who never identified
    visitors = int(SMALL.customers * SMALL.anonymous_visitors_per_customer)
    assert made["customers"] == SMALL.customers + visitors
    assert made["quarantined"] == 0
