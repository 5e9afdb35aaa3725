"""Audiences: who entered and left between refreshes (checked against set differences
of an independent reading of the data), rule audiences on both engines, uploaded lists
kept pseudonymous, funnel drop-offs against a brute-force funnel in plain Python, model
lists, schedules, consent-checked hashed exports for Google and Meta, and the faces."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.insights_data import event, write_events
from tests.live import LiveServer
from touchpoints.activate.audience_exports import export_audience
from touchpoints.activate.audiences import (
    current_members,
    delete_audience,
    get_audience,
    list_audiences,
    refresh,
    refresh_due,
    save_audience,
    size_history,
)
from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.errors import Conflict, InvalidInput, NotFound
from touchpoints.identity.lookup import find_customer
from touchpoints.privacy.consent_records import record, withdraw
from touchpoints.privacy.erasure import erase
from touchpoints.privacy.keys import add_key
from touchpoints.privacy.rebuild import rebuild
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.writer import open_writer

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
_ids = itertools.count()


def load(warehouse: Warehouse, messages: list[dict[str, Any]]) -> None:
    """Store Segment messages through normalisation and the writer."""
    envelope = Envelope("src_test", "web", now_us())
    writer = open_writer(warehouse)
    writer.write([normalize({"messageId": f"m{next(_ids)}", **m}, envelope) for m in messages])
    writer.close()


def identify(user: str, when: datetime, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "timestamp": when.isoformat(), "traits": traits}


def track(user: str, when: datetime, name: str) -> dict[str, Any]:
    return {"type": "track", "userId": user, "timestamp": when.isoformat(), "event": name}


def customers(warehouse: Warehouse) -> dict[str, str]:
    """user id -> customer id, read from the identities table."""
    ids = warehouse.table("identities").to_pyarrow().to_pylist()
    return {r["identifier"].removeprefix("user_id:"): r["customer_id"] for r in ids
            if r["kind"] == "user_id"}  # fmt: skip


def stays(warehouse: Warehouse, name: str) -> list[dict[str, Any]]:
    table = warehouse.table("audience_members")
    return table.filter(table.audience == name).to_pyarrow().to_pylist()


# -- entered and left --------------------------------------------------------------------


GOLD_OR_BUSY = {"or": [{"trait": "tier", "op": "=", "value": "gold"},
                       {"did": "Order Completed", "at_least": 2, "in_last_days": 7}]}  # fmt: skip


def expected(messages: list[dict[str, Any]], now: datetime) -> set[str]:
    """GOLD_OR_BUSY read straight from the messages: the latest tier, orders in 7 days."""
    tier: dict[str, tuple[str, Any]] = {}
    orders: dict[str, int] = {}
    for m in messages:
        newer = m["userId"] not in tier or tier[m["userId"]][0] <= m["timestamp"]
        if m["type"] == "identify" and "tier" in m["traits"] and newer:
            tier[m["userId"]] = (m["timestamp"], m["traits"]["tier"])
        when = datetime.fromisoformat(m["timestamp"])
        if m["type"] == "track" and now - 7 * DAY <= when < now:
            orders[m["userId"]] = orders.get(m["userId"], 0) + 1
    gold = {u for u, (_, t) in tier.items() if t == "gold"}
    return gold | {u for u, n in orders.items() if n >= 2}


def test_entered_and_left_follow_the_data(duck: Warehouse) -> None:
    first = [identify(f"u{i}", T0, tier="gold" if i < 2 else "silver") for i in range(6)]
    first += [
        track(u, T0 + DAY + timedelta(hours=h), "Order Completed")
        for u in ("u2", "u3")
        for h in (1, 2)
    ] + [track("u4", T0 + DAY, "Order Completed")]
    load(duck, first)
    rebuild(duck)
    save_audience(duck, "vip", {"rule": GOLD_OR_BUSY, "description": "gold or busy"})
    now1, now2 = T0 + 3 * DAY, T0 + 9 * DAY
    one = refresh(duck, "vip", now=now1)
    ids = customers(duck)
    s1 = {ids[u] for u in expected(first, now1)}
    assert set(one["entered_ids"]) == s1 and one["left_ids"] == [] and one["size"] == len(s1)

    later = T0 + 4 * DAY
    second = [identify("u1", later, tier="silver"), identify("u5", later, tier="gold"),
              track("u4", later, "Order Completed")]  # fmt: skip
    second += [track("u3", T0 + 8 * DAY + timedelta(hours=h), "Order Completed") for h in (1, 2)]
    load(duck, second)
    rebuild(duck)
    two = refresh(duck, "vip", now=now2)
    ids = customers(duck)
    s2 = {ids[u] for u in expected(first + second, now2)}
    assert set(two["entered_ids"]) == s2 - s1 and set(two["left_ids"]) == s1 - s2
    assert (two["entered"], two["left"], two["size"]) == (len(s2 - s1), len(s1 - s2), len(s2))
    assert s2 - s1 and s1 - s2 and s1 & s2  # the data was made so that all three happen

    rows = stays(duck, "vip")
    assert {r["customer_id"] for r in rows if r["left_at"] is None} == s2
    assert {r["customer_id"] for r in rows if r["left_at"] == now2} == s1 - s2
    assert {r["customer_id"] for r in rows if r["entered_at"] == now2} == s2 - s1
    assert set(current_members(duck, "vip").to_pyarrow()["customer_id"].to_pylist()) == s2

    again = refresh(duck, "vip", now=now2 + timedelta(minutes=1))
    assert (again["entered"], again["left"], again["size"]) == (0, 0, len(s2))
    history = size_history(duck, "vip").to_pyarrow().to_pylist()
    assert [(h["size"], h["entered"], h["left"]) for h in history] == [
        (len(s1), len(s1), 0), (len(s2), len(s2 - s1), len(s1 - s2)), (len(s2), 0, 0)]  # fmt: skip
    listed = list_audiences(duck)
    assert [(a["name"], a["kind"], a["size"], a["description"]) for a in listed] == [
        ("vip", "rule", len(s2), "gold or busy")]  # fmt: skip


def test_rule_audience_on_both_engines(warehouse: Warehouse) -> None:
    rows = [event("a", 0, "Order Completed"), event("b", 3600, "Order Completed"),
            event("c", 5 * 86400, "Order Completed"), event("d", 60, path="/")]  # fmt: skip
    write_events(warehouse, rows)
    save_audience(warehouse, "buyers", {"rule": {"did": "Order Completed", "in_last_days": 3}})
    first = refresh(warehouse, "buyers", now=T0 + 2 * DAY)
    assert first["entered_ids"] == ["user:a", "user:b"]  # no build yet: ids from user ids
    second = refresh(warehouse, "buyers", now=T0 + 6 * DAY)  # a, b fall out; c comes in
    assert (second["entered_ids"], second["left_ids"]) == (["user:c"], ["user:a", "user:b"])
    kept = {
        r["customer_id"]: r["left_at"] and r["left_at"].replace(tzinfo=UTC)
        for r in stays(warehouse, "buyers")
    }  # Spark answers naive UTC times
    assert kept == {"user:a": T0 + 6 * DAY, "user:b": T0 + 6 * DAY, "user:c": None}


# -- uploaded lists ----------------------------------------------------------------------


def test_uploaded_list_is_resolved_and_kept_pseudonymous(duck: Warehouse) -> None:
    load(duck, [identify("u1", T0, email="Ana.Lima@Example.com"),
                identify("u2", T0, phone="+44 20 7946 0018"),
                identify("u3", T0), identify("bo@example.org", T0)])  # fmt: skip
    rebuild(duck)
    given = ["email:  ana.lima@EXAMPLE.com ", "phone:0044 20 7946 0018", "user_id:u3",
             "user_id:bo@example.org", "email:nobody@example.com", "user_id:ghost"]  # fmt: skip
    saved = save_audience(duck, "upload", {"list": given})
    assert (saved["listed"], saved["unmatched"]) == (6, 2)
    stored = duck.query("SELECT definition FROM audiences").column(0).to_pylist()[0]
    assert "@" not in stored and "7946" not in stored  # blinds only, never the addresses
    got = refresh(duck, "upload", now=T0 + DAY)
    want = {find_customer(duck, i) for i in given[:4]}
    assert set(got["entered_ids"]) == want and got["unmatched"] == 2
    with pytest.raises(InvalidInput) as bad:
        save_audience(duck, "bad", {"list": ["email:ana@example.com", "email:not-an-address"]})
    assert bad.value.field == "list[1]"
    with pytest.raises(InvalidInput) as bad:
        save_audience(duck, "bad", {"list": ["fax:123"]})
    assert bad.value.field == "list[0]"
    with pytest.raises(NotFound):
        get_audience(duck, "bad")  # nothing was saved


BAD = [
    ({"funnel": {"steps": ["a", "b"], "dropped_after": 2}}, "funnel.dropped_after"),
    ({"funnel": {"steps": ["a", "b"], "dropped_after": 1, "window": "soon"}}, "funnel.window"),
    ({"funnel": {"steps": ["a", "b[x"], "dropped_after": 1}}, "funnel.steps[1]"),
    ({"rule": {"and": [{"computed": "orders", "op": ">=", "value": "many"}]}},
     "rule.and[0].value"),
    ({"model": "churn", "min_risk": 2}, "min_risk"),
    ({"model": "recommend", "product_id": "p1"}, "top"),
    ({"model": "recommend", "product_id": "p1", "top": 5, "min_risk": 1}, "min_risk"),
    ({"segment": "nope"}, "segment"),
    ({"rule": {"did": "x"}, "list": ["user_id:a"]}, "definition"),
    ({"rule": {"did": "x"}, "refresh_every_minutes": 0}, "refresh_every_minutes"),
    ({"rule": {"did": "x"}, "colour": "red"}, "colour"),
]  # fmt: skip


def test_bad_definitions_name_the_field_and_change_nothing(duck: Warehouse) -> None:
    for definition, field in BAD:
        with pytest.raises(InvalidInput) as caught:
            save_audience(duck, "x", definition)
        assert caught.value.field == field, definition
    with pytest.raises(InvalidInput) as caught:
        save_audience(duck, "no/slash", {"rule": {"did": "x"}})
    assert caught.value.field == "name"
    assert duck.count("audiences") == 0


# -- funnel drop-off ---------------------------------------------------------------------


STEPS = ["View", "Cart", "Buy"]


def brute_force_levels(frame: pd.DataFrame, window: timedelta) -> dict[str, int]:
    """Per user, the furthest step reached: for every step-1 event as start, take the
    earliest next-step event after it (time, then step order) within the window."""
    levels = {}
    for user, mine in frame.groupby("user"):
        ordered = mine.sort_values(["when", "step"]).to_dict("records")
        best = 0
        for i, start in enumerate(ordered):
            if start["step"] != 1:
                continue
            level = 1
            for e in ordered[i + 1 :]:
                if e["step"] == level + 1 and e["when"] - start["when"] <= window:
                    level += 1
            best = max(best, level)
        levels[user] = best
    return levels


def test_funnel_drop_off_matches_a_brute_force_funnel(duck: Warehouse) -> None:
    rng = random.Random(8)
    rows = []
    for n in range(30):
        for _ in range(rng.randint(2, 8)):
            step = rng.choice([1, 1, 2, 2, 3])
            hours = rng.randint(0, 24 * 14)
            rows.append({"user": f"u{n}", "step": step, "when": T0 + timedelta(hours=hours)})
    write_events(duck, [event(r["user"], r["when"], STEPS[r["step"] - 1]) for r in rows])
    now = T0 + 20 * DAY
    definition = {"funnel": {"steps": STEPS, "dropped_after": 1, "within_days": 10,
                             "window": "3d"}}  # fmt: skip
    save_audience(duck, "carts", definition)
    got = set(refresh(duck, "carts", now=now)["entered_ids"])
    frame = pd.DataFrame(rows)
    frame = frame[(frame.when >= now - 10 * DAY) & (frame.when < now)]
    levels = brute_force_levels(frame, timedelta(days=3))
    want = {f"user:{u}" for u, level in levels.items() if level == 1}
    assert got == want and 3 <= len(want) < 30
    definition["funnel"]["dropped_after"] = 2  # reached the cart, did not buy
    save_audience(duck, "carts", definition)
    refresh(duck, "carts", now=now)
    members = set(current_members(duck, "carts").to_pyarrow()["customer_id"].to_pylist())
    assert members == {f"user:{u}" for u, level in levels.items() if level == 2} != set()


# -- model lists -------------------------------------------------------------------------


class Precomputed:
    """Scores handed in (as a deployment scoring elsewhere would): a `ModelScores`."""

    def __init__(self, risk: pd.Series, clv: pd.Series, affinity: pd.Series) -> None:
        self.risk, self.value, self.affinity = risk, clv, affinity

    def churn_risk(self, warehouse: Warehouse, horizon: timedelta) -> pd.Series:
        return self.risk

    def clv(self, warehouse: Warehouse) -> pd.Series:
        return self.value

    def product_scores(self, warehouse: Warehouse, product_id: str, algorithm: str) -> pd.Series:
        return self.affinity


def test_model_lists_from_scores(duck: Warehouse) -> None:
    rng = random.Random(3)
    ids = [f"cus_{n:03d}" for n in range(60)]
    risk = pd.Series([rng.random() for _ in ids], index=ids)
    clv = pd.Series([rng.uniform(0, 300) for _ in ids[:50]], index=ids[:50])  # 10 unknown
    affinity = pd.Series([rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in ids], index=ids)
    models = Precomputed(risk, clv, affinity)
    save_audience(duck, "at-risk", {"model": "churn", "min_risk": 0.6, "min_clv": 100.0})
    got = set(refresh(duck, "at-risk", now=T0, models=models)["entered_ids"])
    assert got == {c for c in ids if risk[c] >= 0.6 and clv.get(c, 0.0) >= 100.0}
    save_audience(duck, "shoes", {"model": "recommend", "product_id": "p1", "top": 12})
    got = refresh(duck, "shoes", now=T0, models=models)["entered_ids"]
    ranked = sorted((c for c in ids if affinity[c] > 0), key=lambda c: (-affinity[c], c))
    assert set(got) == set(ranked[:12])


def test_recommend_list_from_a_fitted_model(duck: Warehouse) -> None:
    """Co-occurrence: the customers who touched what buyers of p1 also touched, minus
    those who bought p1; nobody whose products never met p1."""

    def order(user: str, when: int, product: str) -> dict:
        return event(user, when, "Order Completed",
                     properties={"products": [{"product_id": product}]})  # fmt: skip

    rows = [order("b1", 0, "p1"), order("b1", 10, "p2"), order("b2", 0, "p1"),
            order("b2", 10, "p3"), order("x1", 0, "p2"), order("x2", 0, "p3"),
            order("x3", 0, "p9"), order("x3", 5, "p8"), order("x4", 0, "p8")]  # fmt: skip
    write_events(duck, rows)
    save_audience(duck, "p1-fans", {"model": "recommend", "product_id": "p1", "top": 10,
                                    "algorithm": "cooccurrence"})  # fmt: skip
    assert refresh(duck, "p1-fans", now=T0 + DAY)["entered_ids"] == ["user:x1", "user:x2"]
    save_audience(duck, "nothing", {"model": "recommend", "product_id": "p0", "top": 1})
    with pytest.raises(InvalidInput) as caught:
        refresh(duck, "nothing")
    assert caught.value.field == "product_id"


# -- schedules ---------------------------------------------------------------------------


def test_refresh_due_follows_the_schedule(duck: Warehouse) -> None:
    write_events(duck, [event("a", 0, "Order Completed",
                              properties={"products": [{"product_id": "p1"}]})])  # fmt: skip
    rule = {"did": "Order Completed"}
    save_audience(duck, "hourly", {"rule": rule, "refresh_every_minutes": 60})
    save_audience(duck, "manual", {"rule": rule})
    broken = {"model": "recommend", "product_id": "zz", "top": 3, "algorithm": "popularity"}
    save_audience(duck, "broken", {**broken, "refresh_every_minutes": 30})
    first = refresh_due(duck, now=T0 + DAY)
    assert [r["name"] for r in first] == ["hourly"] and first[0]["entered_ids"] == ["user:a"]
    assert get_audience(duck, "broken")["last_error"]["field"] == "product_id"
    assert refresh_due(duck, now=T0 + DAY + timedelta(minutes=29)) == []  # nothing due
    later = refresh_due(duck, now=T0 + DAY + timedelta(minutes=60))
    assert [r["name"] for r in later] == ["hourly"]  # broken retried, failed again
    assert get_audience(duck, "manual")["last_refreshed"] is None


def test_delete_is_refused_while_a_campaign_uses_it(duck: Warehouse) -> None:
    import pyarrow as pa

    save_audience(duck, "gone", {"rule": {"did": "x"}})
    refresh(duck, "gone", now=T0)
    stamp = pa.array([T0], pa.timestamp("us", tz="UTC"))
    duck.insert("campaigns", pa.table({"campaign_id": ["spring"], "definition": [
        json.dumps({"audience": "gone", "subject": "Hi"})], "created_at": stamp,
        "updated_at": stamp}))  # fmt: skip
    with pytest.raises(Conflict):
        delete_audience(duck, "gone")
    duck.delete_where("campaigns", lambda t: t.campaign_id == "spring")
    assert delete_audience(duck, "gone") == {"deleted": "gone"}
    assert duck.count("audience_sizes") == 0 and duck.count("audiences") == 0


# -- exports -----------------------------------------------------------------------------


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def consented_shop(warehouse: Warehouse) -> dict[str, str]:
    """Six people who joined; who may be advertised to differs (see the test)."""
    people = {
        "p0": {"email": " P0.Person@Example.com ", "phone": "+44 20 7946 0000"},
        "p1": {"email": "p1@example.com"},
        "p2": {"email": "p2@example.org", "phone": "+33 1 70 00 00 02"},
        "p3": {},
        "p4": {"phone": "(415) 555-0104"},
        "p5": {"email": "p5@example.com"},
    }
    load(warehouse, [identify(u, T0, **traits) for u, traits in people.items()]
         + [track(u, T0 + DAY, "Joined") for u in people])  # fmt: skip
    rebuild(warehouse)
    for user in ("p0", "p1", "p3", "p4", "p5"):
        record(warehouse, f"user_id:{user}", {"advertising": "granted"}, recorded_at=T0)
    withdraw(warehouse, "email:p1@example.com", "advertising")  # p2 never granted
    erase(warehouse, "email:p5@example.com", reason="Art. 17 request", compact=False)
    # p5's address comes back (a till import, say) after the erasure
    load(warehouse, [identify("p5-again", T0 + 2 * DAY, email="p5@example.com"),
                     track("p5-again", T0 + 2 * DAY, "Joined")])  # fmt: skip
    rebuild(warehouse)
    return customers(warehouse)


def test_hashed_exports_leave_out_and_count_who_may_not_be_reached(
    duck: Warehouse, tmp_path: Path
) -> None:
    ids = consented_shop(duck)
    save_audience(duck, "joined", {"rule": {"did": "Joined"}})
    with pytest.raises(Conflict):
        export_audience(duck, "joined", tmp_path / "x.csv", format="google")  # never refreshed
    assert refresh(duck, "joined", now=T0 + 3 * DAY)["size"] == 6  # p5 is back, as a new id
    left_out = {"erased": 1, "no advertising consent": 2, "no email or phone": 1}

    google = export_audience(duck, "joined", tmp_path / "g.csv", format="google")
    assert (google["written"], google["left_out"]) == (2, left_out)
    assert google["purpose"] == "advertising"
    rows = list(csv.reader(io.StringIO((tmp_path / "g.csv").read_text())))
    assert rows[0] == ["Email", "Phone"]
    assert sorted(rows[1:]) == sorted([[sha("p0.person@example.com"), sha("+442079460000")],
                                       ["", sha("+14155550104")]])  # fmt: skip

    meta = export_audience(duck, "joined", tmp_path / "m.csv", format="meta")
    assert (meta["written"], meta["left_out"]) == (2, left_out)
    rows = list(csv.reader(io.StringIO((tmp_path / "m.csv").read_text())))
    assert rows[0] == ["email", "phone"]
    assert sorted(rows[1:]) == sorted([[sha("p0.person@example.com"), sha("442079460000")],
                                       ["", sha("14155550104")]])  # fmt: skip
    text = (tmp_path / "g.csv").read_text() + (tmp_path / "m.csv").read_text()
    for refused in ("p1@example.com", "p2@example.org", "p5@example.com", "+33170000002"):
        assert sha(refused) not in text and sha(refused.lstrip("+")) not in text

    with pytest.raises(InvalidInput) as caught:
        export_audience(duck, "joined", tmp_path / "ids.csv", format="csv")
    assert caught.value.field == "purpose"
    plain = export_audience(duck, "joined", tmp_path / "ids.parquet", format="parquet",
                            purpose="analytics")  # fmt: skip
    assert plain["left_out"] == {"erased": 1}  # analytics is allowed by default
    written = pq.read_table(tmp_path / "ids.parquet").to_pylist()
    allowed = sorted(ids[u] for u in ("p0", "p1", "p2", "p3", "p4"))
    assert sorted(r["customer_id"] for r in written) == allowed
    assert {r["entered_at"] for r in written} == {T0 + 3 * DAY}

    audit = [r for r in duck.table("audit_log").to_pyarrow().to_pylist()
             if r["action"] == "audience.export"]  # fmt: skip
    assert len(audit) == 3
    details = [json.loads(r["details"]) for r in audit]
    assert sorted(d["format"] for d in details) == ["google", "meta", "parquet"]
    assert all("@" not in r["details"] and "cus_" not in r["details"] for r in audit)


# -- faces -------------------------------------------------------------------------------


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_http_read_and_admin(server: LiveServer) -> None:
    warehouse = server.warehouse
    people = {"h0": "h0@example.com", "h1": "h1@example.org", "h2": None}
    load(warehouse, [identify(u, T0, **({"email": e} if e else {})) for u, e in people.items()]
         + [track(u, T0 + DAY, "Joined") for u in people])  # fmt: skip
    rebuild(warehouse)
    for user in ("h0", "h2"):
        record(warehouse, f"user_id:{user}", {"advertising": "granted"}, recorded_at=T0)
    _, reader = add_key(warehouse, "analyst", "read")
    _, admin = add_key(warehouse, "ops", "admin")
    url = f"{server.url}/v1/audiences"
    body = {"rule": {"did": "Joined"}, "refresh_every_minutes": 60}
    assert httpx.put(f"{url}/joined", json=body, headers=auth(reader)).status_code == 403
    bad = httpx.put(f"{url}/joined", json={"rule": {"did": 3}}, headers=auth(admin))
    assert bad.status_code == 400 and bad.json()["field"].startswith("rule")
    assert httpx.put(f"{url}/joined", json=body, headers=auth(admin)).status_code == 200
    assert httpx.post(f"{url}/joined/refresh", headers=auth(reader)).status_code == 403
    done = httpx.post(f"{url}/joined/refresh", headers=auth(admin)).json()
    assert (done["size"], done["entered"], done["left"]) == (3, 3, 0)
    listed = httpx.get(url, headers=auth(reader)).json()
    assert [(a["name"], a["size"]) for a in listed] == [("joined", 3)]
    shown = httpx.get(f"{url}/joined", headers=auth(reader)).json()
    assert shown["definition"] == body and [s["entered"] for s in shown["sizes"]] == [3]
    members = httpx.get(f"{url}/joined/members", params={"limit": 2}, headers=auth(reader))
    assert members.json()["size"] == 3 and len(members.json()["members"]) == 2
    params = {"format": "meta"}
    assert httpx.get(f"{url}/joined/export", params=params,
                     headers=auth(reader)).status_code == 403  # fmt: skip
    got = httpx.get(f"{url}/joined/export", params=params, headers=auth(admin))
    assert got.status_code == 200 and got.text.splitlines() == [
        "email,phone",
        f"{sha('h0@example.com')},",
    ]
    assert got.headers["X-Touchpoints-Written"] == "1"
    assert json.loads(got.headers["X-Touchpoints-Left-Out"]) == {
        "no advertising consent": 1, "no email or phone": 1}  # fmt: skip
    assert "attachment" in got.headers["content-disposition"]
    missing = httpx.get(f"{url}/nobody", headers=auth(reader))
    assert missing.status_code == 404
    assert httpx.delete(f"{url}/joined", headers=auth(reader)).status_code == 403
    assert httpx.delete(f"{url}/joined", headers=auth(admin)).json() == {"deleted": "joined"}


def test_cli_save_refresh_members_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from touchpoints.cli.audiences import audiences_app
    from touchpoints.cli.context import state
    from touchpoints.warehouse import connect

    url = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    warehouse = connect(url)
    write_events(warehouse, [event(u, 0, "Order Completed") for u in ("a", "b", "c")])
    warehouse.close()
    monkeypatch.setattr(state, "warehouse", url)
    file = tmp_path / "buyers.yaml"
    file.write_text("rule:\n  did: Order Completed\ndescription: everyone who bought\n")
    runner = CliRunner()
    saved = runner.invoke(audiences_app, ["save", "buyers", str(file), "--every", "15",
                                          "-f", "json"])  # fmt: skip
    assert saved.exit_code == 0, saved.output
    assert json.loads(saved.stdout)["kind"] == "rule"
    refreshed = runner.invoke(audiences_app, ["refresh", "buyers", "-f", "json"])
    assert json.loads(refreshed.stdout)["entered"] == 3
    listed = runner.invoke(audiences_app, ["members", "buyers", "-f", "json"])
    assert [r["customer_id"] for r in json.loads(listed.stdout)] == ["user:a", "user:b", "user:c"]
    out = tmp_path / "buyers.csv"
    exported = runner.invoke(audiences_app, ["export", "buyers", str(out), "--purpose",
                                             "analytics", "-f", "json"])  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["written"] == 3
    assert [r["customer_id"] for r in csv.DictReader(out.open())] == ["user:a", "user:b",
                                                                      "user:c"]  # fmt: skip
    shown = runner.invoke(audiences_app, ["show", "buyers"])
    assert shown.exit_code == 0 and "everyone who bought" in shown.stdout
