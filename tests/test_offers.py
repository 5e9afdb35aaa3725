"""Offers and coupons: definitions, pools and assignment in a real DuckDB warehouse;
redemption and incremental revenue measured from `Order Completed` events written through
the real write path and checked against pandas and statsmodels on the same rows; the next
best offer on planted scores; the REST routes with read and admin keys; the CLI."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from tests.insights_data import T0, event, write_events
from touchpoints.activate.offer_define import ALPHABET, codes_from_text, parse_offer
from touchpoints.activate.offers import assign, code_for, list_offers, load_codes, save_offer
from touchpoints.errors import Conflict, InvalidInput, NotFound
from touchpoints.insights.frame import user_events
from touchpoints.insights.redemption import arm_summary, person_outcomes
from touchpoints.models.next_best_offer import Scores, best_offers, choose
from touchpoints.models.offer_results import incremental_revenue, offer_results
from touchpoints.models.reports import run_report
from touchpoints.warehouse import Warehouse

OFFER: dict[str, Any] = {
    "offer_id": "spring10",
    "name": "Spring 10%",
    "discount": {"percent": 10},
    "valid_days": 14,
    "codes": {"generate": {"prefix": "SPR", "length": 8}},
    "holdout": 0.3,
}
POOL: dict[str, Any] = {
    "offer_id": "till5",
    "name": "Five off at the till",
    "discount": {"amount": 5, "currency": "eur"},
    "valid_days": 30,
    "codes": {"pool": True},
    "holdout": 0,
}


def expected_arm(offer_id: str, customer: str, share: float) -> str:
    """The arm by the documented rule, computed here from hashlib."""
    digest = hashlib.sha256(f"offer:{offer_id}:{customer}".encode()).digest()
    return "holdout" if int.from_bytes(digest[:8], "big") / 2**64 < share else "offer"


# -- definitions, pools, assignment ------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"offer_id": "bad id"}, "offer_id"),
        ({"discount": {"percent": 0}}, "discount.percent"),
        ({"discount": {"percent": 10, "amount": 5}}, "discount"),
        ({"discount": {"amount": 5, "currency": "euro"}}, "discount.currency"),
        ({"valid_days": 0}, "valid_days"),
        ({"codes": {"pool": False}}, "codes.pool"),
        ({"codes": {"generate": {"length": 3}}}, "codes.generate.length"),
        ({"holdout": 0.6}, "holdout"),
        ({"min_churn_risk": 2}, "min_churn_risk"),
        ({"product_id": "p1", "category": "shoes"}, "category"),
        ({"valid_day": 3}, "valid_day"),
    ],
)
def test_definition_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_offer({**OFFER, **change})
    assert caught.value.field == field


def test_bad_definition_changes_nothing_and_defaults_fill_in(duck: Warehouse) -> None:
    with pytest.raises(InvalidInput):
        save_offer(duck, {**OFFER, "holdout": -1})
    assert duck.count("offers") == 0
    stored = save_offer(duck, {k: v for k, v in POOL.items() if k != "holdout"})
    assert stored["holdout"] == 0.1 and stored["discount"]["currency"] == "EUR"
    assert stored["priority"] == 0 and stored["active"] is True
    assert save_offer(duck, {**POOL, "valid_days": 7})["valid_days"] == 7
    assert duck.count("offers") == 1


def test_generated_codes_and_idempotent_assignment(duck: Warehouse) -> None:
    save_offer(duck, OFFER)
    people = [f"cust-{i:03d}" for i in range(120)]
    given = assign(duck, "spring10", people, now=T0)
    assert [g["customer_id"] for g in given] == people
    for g in given:
        assert g["arm"] == expected_arm("spring10", g["customer_id"], 0.3)
    offered = [g for g in given if g["arm"] == "offer"]
    assert 0 < len(offered) < len(given)
    codes = [g["code"] for g in offered]
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(f"SPR[{ALPHABET}]{{8}}", c) for c in codes)
    assert all(g["code"] is None and g["expires_at"] is None
               for g in given if g["arm"] == "holdout")  # fmt: skip
    assert {g["expires_at"] for g in offered} == {(T0 + timedelta(days=14)).isoformat()}
    # asked again (later, in another order, with new people): the same answers
    again = assign(duck, "spring10", [*reversed(people[:50]), "cust-new"], now=T0 + timedelta(1))
    assert {g["customer_id"]: g for g in again[:-1]} == {g["customer_id"]: g for g in given[:50]}
    assert again[-1]["assigned_at"] == (T0 + timedelta(1)).isoformat()
    assert duck.count("offer_assignments") == 121
    assert duck.count("coupons") == len(offered) + (again[-1]["arm"] == "offer")
    assert code_for(duck, "spring10", people[0]) == given[0]
    assert code_for(duck, "spring10", "nobody") is None
    with pytest.raises(NotFound):
        assign(duck, "nope", ["x"])
    with pytest.raises(InvalidInput) as caught:
        assign(duck, "spring10", ["ok", ""])
    assert caught.value.field == "customer_ids[1]"


def test_pool_codes_exhaustion_and_duplicates(duck: Warehouse) -> None:
    save_offer(duck, POOL)
    with pytest.raises(InvalidInput) as caught:
        load_codes(duck, "till5", ["aaa-1", "bbb-2", " AAA-1 "])
    assert "codes[2]" in caught.value.message and "codes[0]" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        load_codes(duck, "till5", ["ok-1", "no good"])
    assert "codes[1]" in caught.value.message
    assert duck.count("coupons") == 0
    loaded = load_codes(duck, "till5", [" ccc-3", "aaa-1", "bbb-2"])
    assert loaded == {"offer_id": "till5", "loaded": 3, "free": 3}
    with pytest.raises(Conflict) as stored:
        load_codes(duck, "till5", ["ddd-4", "BBB-2"])
    assert "codes[1]" in stored.value.message and "BBB-2" in stored.value.message
    assert duck.count("coupons") == 3
    # four people, three codes: refused, nobody assigned, every code still free
    with pytest.raises(Conflict) as short:
        assign(duck, "till5", ["p1", "p2", "p3", "p4"], now=T0)
    assert "3 free codes" in short.value.message
    assert duck.count("offer_assignments") == 0
    coupons = duck.table("coupons").to_pyarrow().to_pylist()
    assert all(c["customer_id"] is None for c in coupons)
    given = assign(duck, "till5", ["p1", "p2", "p3"], now=T0)
    assert [g["code"] for g in given] == ["AAA-1", "BBB-2", "CCC-3"]  # upload time, then code
    assert list_offers(duck)[0]["free_codes"] == 0
    with pytest.raises(Conflict):
        assign(duck, "till5", ["p4"], now=T0)
    assert assign(duck, "till5", ["p2"])[0]["code"] == "BBB-2"
    codes, labels = codes_from_text("code\nxyz-1\n\nabc-2,extra\n")
    assert (codes, labels) == (["XYZ-1", "ABC-2"], ["line 2", "line 4"])
    with pytest.raises(InvalidInput) as caught:
        codes_from_text("code\nxyz-1\nXYZ-1\n")
    assert "line 3" in caught.value.message and "line 2" in caught.value.message


# -- redemption from events ----------------------------------------------------------------


def plan_orders(given: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Orders of a population: a fixed story for the first few, random spend for all."""
    offered = [g for g in given if g["arm"] == "offer"]
    holdout = [g for g in given if g["arm"] == "holdout"]
    orders = []

    def order(person: str, day: float, revenue: float, coupon: str | None = None) -> None:
        orders.append({"user": person, "when": T0 + timedelta(days=day), "revenue": revenue,
                       "coupon": coupon})  # fmt: skip

    for n, g in enumerate(offered):
        who, code = g["customer_id"], g["code"]
        if n < 8:
            order(who, 1 + n, round(float(rng.uniform(20, 90)), 2), code.lower())  # redeemed
        if n == 8:
            order(who, 20, 40.0, code)  # expired (valid 14 days), still in the 30-day window
        if n == 9:
            order(who, 3, 35.0, offered[0]["code"])  # someone else's code
        if n % 3 == 0:
            order(who, 5 + n % 7, round(float(rng.uniform(5, 60)), 2))
    for n, g in enumerate(holdout):
        if n % 2 == 0:
            order(g["customer_id"], 2 + n % 9, round(float(rng.uniform(5, 60)), 2))
    order(offered[1]["customer_id"], -2, 99.0, offered[1]["code"])  # before it was given
    order(holdout[0]["customer_id"], 45, 500.0)  # after the window
    return orders


def expected_people(given: list[dict[str, Any]], orders: list[dict[str, Any]],
                    window: int) -> pd.DataFrame:  # fmt: skip
    """Per person, by the documented rules, in pandas."""
    people = pd.DataFrame(given)[["customer_id", "arm", "code", "expires_at"]]
    frame = pd.DataFrame(orders).rename(columns={"user": "customer_id"})
    frame = frame.merge(people, on="customer_id")
    frame["when"] = pd.to_datetime(frame["when"], utc=True)
    expires = pd.to_datetime(frame["expires_at"], utc=True)
    in_window = (frame["when"] >= T0) & (frame["when"] < T0 + timedelta(days=window))
    own = frame["coupon"].fillna("").str.strip().str.upper() == frame["code"].fillna("#")
    redeemed = own & (frame["when"] >= T0) & (frame["when"] <= expires)
    spent = frame[in_window].groupby("customer_id")["revenue"].agg(["sum", "count"])
    out = people.set_index("customer_id")
    out["revenue"] = spent["sum"].reindex(out.index).fillna(0.0)
    out["orders"] = spent["count"].reindex(out.index).fillna(0).astype(int)
    hits = frame[redeemed].groupby("customer_id").size()
    out["redeemed"] = (hits.reindex(out.index).fillna(0) > 0).astype(int)
    return out


def test_redemption_and_incremental_revenue_match_pandas_and_statsmodels(
    duck: Warehouse,
) -> None:
    save_offer(duck, OFFER)
    population = [f"c{i:02d}" for i in range(60)]
    # before an identity build, a user's customer id is `user:` + their user id
    given = assign(duck, "spring10", [f"user:{p}" for p in population], now=T0)
    orders = plan_orders(given, np.random.default_rng(3))
    write_events(duck, [
        event(o["user"].removeprefix("user:"), o["when"], "Order Completed",
              revenue=o["revenue"], properties={"coupon": o["coupon"]} if o["coupon"] else {})
        for o in orders
    ])  # fmt: skip
    found = offer_results(duck, "spring10", window_days=30)
    truth = expected_people(given, orders, 30)
    for arm in found["arms"]:
        mine = truth[truth["arm"] == arm["arm"]]
        assert arm["people"] == len(mine)
        assert arm["redeemers"] == mine["redeemed"].sum()
        assert arm["redemption_rate"] == pytest.approx(mine["redeemed"].mean())
        assert arm["orders_per_person"] == pytest.approx(mine["orders"].mean())
        assert arm["revenue_per_person"] == pytest.approx(mine["revenue"].mean())
    assert found["arms"][0]["redeemers"] == 8
    assert found["uses"] == {"redemption": 8, "expired": 1, "early": 1, "not_owner": 1}
    offer = truth.loc[truth["arm"] == "offer", "revenue"].to_numpy()
    held = truth.loc[truth["arm"] == "holdout", "revenue"].to_numpy()
    compare = CompareMeans(DescrStatsW(offer), DescrStatsW(held))
    low, high = compare.tconfint_diff(alpha=0.05, usevar="unequal")
    _, p_value, _ = ttest_ind(offer, held, usevar="unequal")
    result = found["incremental"]
    assert result["incremental_revenue"] == pytest.approx((offer.mean() - held.mean()) * len(offer))
    assert result["low"] == pytest.approx(low * len(offer))
    assert result["high"] == pytest.approx(high * len(offer))
    assert result["p_value"] == pytest.approx(p_value)
    report = run_report(duck, "offer", {"offer_id": "spring10", "window_days": "30"})
    assert [r["arm"] for r in report.rows] == ["offer", "holdout"]
    assert report.rows[0]["incremental_revenue"] == pytest.approx(result["incremental_revenue"])
    with pytest.raises(NotFound):
        offer_results(duck, "nope")


def test_incremental_revenue_matches_statsmodels() -> None:
    rng = np.random.default_rng(11)
    offer, held = rng.gamma(2.0, 30.0, 80), rng.gamma(2.0, 25.0, 35)
    found = incremental_revenue(offer, held, confidence=0.9)
    low, high = CompareMeans(DescrStatsW(offer), DescrStatsW(held)).tconfint_diff(
        alpha=0.1, usevar="unequal"
    )
    assert found.low == pytest.approx(low * 80) and found.high == pytest.approx(high * 80)
    assert np.isnan(incremental_revenue([1.0], [2.0, 3.0]).low)


def test_redemption_analysis_on_both_engines(warehouse: Warehouse) -> None:
    save_offer(warehouse, {**OFFER, "holdout": 0.5})
    given = assign(warehouse, "spring10", ["user:a", "user:b", "user:c", "user:d"], now=T0)
    offered = [g for g in given if g["arm"] == "offer"]
    orders = [
        {"user": offered[0]["customer_id"], "when": T0 + timedelta(days=2), "revenue": 30.0,
         "coupon": offered[0]["code"].lower()},
        {"user": "user:d", "when": T0 + timedelta(days=3), "revenue": 12.5, "coupon": None},
        {"user": "user:b", "when": T0 + timedelta(days=40), "revenue": 9.0, "coupon": None},
    ]  # fmt: skip
    write_events(warehouse, [
        event(o["user"][5:], o["when"], "Order Completed", revenue=o["revenue"],
              properties={"coupon": o["coupon"]} if o["coupon"] else {}) for o in orders
    ])  # fmt: skip
    assignments = warehouse.table("offer_assignments")
    outcomes = person_outcomes(assignments, warehouse.table("coupons"),
                               user_events(warehouse), window_days=30)  # fmt: skip
    got = outcomes.to_pandas().set_index("customer_id").sort_index()
    truth = expected_people(given, orders, 30).sort_index()
    assert got["redeemed"].tolist() == truth["redeemed"].tolist()
    assert got["orders"].tolist() == truth["orders"].tolist()
    assert got["revenue"].tolist() == pytest.approx(truth["revenue"].tolist())
    summary = arm_summary(outcomes).to_pandas().set_index("arm")
    assert summary.loc["offer", "redeemers"] == 1
    for arm, rows in truth.groupby("arm"):
        assert summary.loc[arm, "revenue_per_person"] == pytest.approx(rows["revenue"].mean())


# -- next best offer ---------------------------------------------------------------------


def test_next_best_offer_on_planted_scores(duck: Warehouse) -> None:
    base = {"discount": {"percent": 10}, "valid_days": 7, "codes": {"generate": {}}}
    offers = [
        {**base, "offer_id": "winback", "name": "Win back", "min_churn_risk": 0.5},
        {**base, "offer_id": "boots", "name": "Boots", "product_id": "p-boot"},
        {**base, "offer_id": "shoes", "name": "Shoes", "category": "shoes"},
        {**base, "offer_id": "welcome", "name": "Welcome", "priority": 1},
        {**base, "offer_id": "thanks", "name": "Thanks", "priority": 0},
        {**base, "offer_id": "vip", "name": "VIP", "audience": "vips", "min_clv": 500},
        {**base, "offer_id": "old", "name": "Old", "active": False},
    ]
    for offer in offers:
        save_offer(duck, offer)
    risk = {"ann": 0.9, "bob": 0.2, "cy": 0.6, "dee": 0.1}
    clv = {"ann": 800.0, "bob": 900.0, "cy": 50.0, "dee": 20.0}
    value = {"ann": 60.0, "bob": 80.0, "cy": 40.0, "dee": 30.0}
    purchase = [("bob", "p-boot", 0.5), ("bob", "p-sneak", 0.7), ("cy", "p-sneak", 0.9),
                ("ann", "p-boot", 0.1)]  # fmt: skip
    scores = Scores(
        churn_risk=pd.Series(risk), clv=pd.Series(clv), order_value=pd.Series(value),
        purchase=pd.DataFrame(purchase, columns=["customer_id", "item_id", "probability"]),
        categories=pd.Series({"p-boot": "boots", "p-sneak": "shoes"}),
    )  # fmt: skip
    duck.insert("audience_members", _members([("vips", "bob", None), ("vips", "ann", T0)]))
    # worth by the documented method, computed here
    worth = {
        "ann": {"winback": 0.9 * 800, "boots": 0.1 * 60},  # vip: left the audience
        "bob": {"boots": 0.5 * 80, "shoes": 0.7 * 80, "vip": 0.0},  # risk below 0.5
        "cy": {"winback": 0.6 * 50, "shoes": 0.9 * 40},
        "dee": {},
    }
    found = {r["customer_id"]: r for r in best_offers(duck, list(risk), scores=scores)}
    for customer, values in worth.items():
        expected = max(values, key=values.get) if values else "welcome"  # ties: priority
        assert found[customer]["offer_id"] == expected, customer
        assert found[customer]["value"] == pytest.approx(values.get(expected, 0.0))
        assert "old" not in {c["offer_id"] for c in found[customer]["candidates"]}
    # bob: vip worth 0 ties with welcome/thanks; welcome has the higher priority
    ties = choose([o for o in map(parse_offer, offers) if o["offer_id"] in ("thanks", "welcome")],
                  ["dee"], scores)  # fmt: skip
    assert ties[0]["offer_id"] == "welcome"
    # once ann was given the win-back offer, her next best is the next worth
    assign(duck, "winback", ["ann"], now=T0)
    again = best_offers(duck, ["ann"], scores=scores)[0]
    assert again["offer_id"] == "boots"
    assert {c["offer_id"]: c["reason"] for c in again["candidates"]}["winback"] == (
        "already decided for this customer"
    )


def _members(rows: list[tuple[str, str, datetime | None]]) -> Any:
    import pyarrow as pa

    stamp = pa.timestamp("us", tz="UTC")
    return pa.table({
        "audience": [r[0] for r in rows], "customer_id": [r[1] for r in rows],
        "entered_at": pa.array([T0 - timedelta(days=9)] * len(rows), stamp),
        "left_at": pa.array([r[2] for r in rows], stamp),
    })  # fmt: skip


# -- faces ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_http_routes_read_and_admin(server: Any) -> None:
    import httpx

    from touchpoints.privacy.keys import add_key

    _, reader = add_key(server.warehouse, "analyst", "read")
    _, admin = add_key(server.warehouse, "ops", "admin")
    as_reader = {"Authorization": f"Bearer {reader}"}
    as_admin = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.put("/v1/offers/till5", json=POOL, headers=as_reader).status_code == 403
        bad = client.put("/v1/offers/till5", json={**POOL, "valid_days": "x"}, headers=as_admin)
        assert bad.status_code == 400 and bad.json()["field"] == "valid_days"
        saved = client.put("/v1/offers/till5", json=POOL, headers=as_admin)
        assert saved.status_code == 200 and saved.json()["discount"]["currency"] == "EUR"
        csv = "code\nabc-1\nabc-2\nABC-1\n"
        path = "/v1/offers/till5/codes"
        text_headers = {**as_admin, "Content-Type": "text/csv"}
        assert client.post(path, content=csv, headers={**as_reader, "Content-Type": "text/csv"}
                           ).status_code == 403  # fmt: skip
        dup = client.post(path, content=csv, headers=text_headers)
        assert dup.status_code == 400 and "line 4" in dup.json()["message"]
        loaded = client.post(path, content=csv[:-6], headers=text_headers)
        assert loaded.json() == {"offer_id": "till5", "loaded": 2, "free": 2}
        more = client.post(path, json=["abc-3"], headers=as_admin)
        assert more.json()["free"] == 3
        body = {"customer_ids": ["user:ann", "user:bob"]}
        assert client.post("/v1/offers/till5/assign", json=body, headers=as_reader
                           ).status_code == 403  # fmt: skip
        given = client.post("/v1/offers/till5/assign", json=body, headers=as_admin).json()
        assert [g["code"] for g in given] == ["ABC-1", "ABC-2"]
        listed = client.get("/v1/offers", headers=as_reader).json()
        assert listed[0]["offered"] == 2 and listed[0]["free_codes"] == 1
        best = client.get("/v1/offers/next-best", params={"customer_id": "user:cy"},
                          headers=as_reader).json()  # fmt: skip
        assert best["offer_id"] == "till5" and best["kind"] == "general"
        done = client.get("/v1/offers/next-best", params={"customer_id": "user:ann"},
                          headers=as_reader).json()  # fmt: skip
        assert done["offer_id"] is None
        write_events(server.warehouse, [
            event("ann", datetime.now(UTC), "Order Completed", revenue=20.0,
                  properties={"coupon": "abc-1"}),
        ])  # fmt: skip
        results = client.get("/v1/offers/till5/results", params={"window_days": 7},
                             headers=as_reader).json()  # fmt: skip
        assert results["arms"][0]["redeemers"] == 1 and results["uses"]["redemption"] == 1
        report = client.get("/v1/insights/offer", params={"offer_id": "till5"}, headers=as_reader)
        assert report.status_code == 200 and report.json()["rows"][0]["redeemers"] == 1
        missing = client.get("/v1/offers/nope/results", headers=as_reader)
        assert missing.status_code == 404


def test_cli_save_codes_assign_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml
    from typer.testing import CliRunner

    from touchpoints.cli.context import state
    from touchpoints.cli.offers import offers_app

    monkeypatch.setattr(state, "warehouse", f"duckdb:///{tmp_path / 'cli.duckdb'}")
    file = tmp_path / "till5.yaml"
    file.write_text(yaml.safe_dump(POOL))
    codes = tmp_path / "codes.csv"
    codes.write_text("code\nxyz-1\nxyz-2\n")
    runner = CliRunner()
    saved = runner.invoke(offers_app, ["save", str(file), "-f", "json"])
    assert saved.exit_code == 0, saved.output
    assert json.loads(saved.stdout)["offer_id"] == "till5"
    loaded = runner.invoke(offers_app, ["codes", "till5", str(codes), "-f", "json"])
    assert json.loads(loaded.stdout)["loaded"] == 2, loaded.output
    given = runner.invoke(offers_app, ["assign", "till5", "user:ann", "-f", "json"])
    assert json.loads(given.stdout)[0]["code"] == "XYZ-1", given.output
    results = runner.invoke(offers_app, ["results", "till5", "-f", "json"])
    assert json.loads(results.stdout)["arms"][0]["people"] == 1, results.output
    table = runner.invoke(offers_app, ["list"])
    assert table.exit_code == 0 and "till5" in table.stdout
    codes.write_text("code\nxyz-3\nXYZ-3\n")
    refused = runner.invoke(offers_app, ["codes", "till5", str(codes)])
    assert refused.exit_code != 0
