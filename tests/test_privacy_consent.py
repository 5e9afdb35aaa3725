"""Consent per purpose: the history, latest-wins across a customer's identifiers, the
collector path and collection modes over real HTTP, `allowed`/`allowed_many` on both
engines, the API's auth and errors, and the audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import ibis
import pyarrow as pa
import pytest

from tests.live import LiveServer
from tests.personal import revealed
from tests.personal import stored as stored_id
from tests.test_collector_http import post
from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.errors import InvalidInput
from touchpoints.identity import build
from touchpoints.privacy.consent_config import ConsentConfig, save_config
from touchpoints.privacy.consent_read import allowed, allowed_many, consent_status
from touchpoints.privacy.consent_records import import_consents, record, withdraw
from touchpoints.privacy.consent_sync import sync_consents
from touchpoints.privacy.keys import add_key
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import IDENTITIES
from touchpoints.warehouse.writer import open_writer

T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ADMIN = {"Authorization": "Bearer test-admin-token"}


def load(warehouse: Warehouse, messages: list[dict]) -> None:
    envelope = Envelope("src_test", "web", now_us())
    rows = [normalize(m, envelope) for m in messages]
    writer = open_writer(warehouse)
    writer.write(rows)
    writer.close()


def ana(warehouse: Warehouse) -> str:
    """One person known by a user id, a browser and an email; returns their customer."""
    load(
        warehouse,
        [
            {"type": "page", "anonymousId": "a-1", "messageId": "p1"},
            {
                "type": "identify",
                "anonymousId": "a-1",
                "userId": "u-1",
                "traits": {"email": "Ana@Example.com"},
                "messageId": "i1",
            },
        ],
    )
    build(warehouse)
    ids = warehouse.table("identities").to_pyarrow().column("customer_id").to_pylist()
    assert len(set(ids)) == 1
    return ids[0]


def test_latest_record_wins_across_a_customers_identifiers(duck: Warehouse) -> None:
    customer = ana(duck)
    record(duck, "anonymous_id:a-1", {"email_marketing": "granted"}, recorded_at=T0)
    record(duck, "user_id:u-1", {"email_marketing": False}, recorded_at=T0 + DAY)
    assert not allowed(duck, "email:ana@example.com", "email_marketing")
    # an email typed differently is the same identifier (normalised as identity does)
    record(duck, "email: ANA@example.COM", {"email_marketing": True}, recorded_at=T0 + 2 * DAY)
    for who in ("anonymous_id:a-1", "user_id:u-1", "email:ana@example.com", customer):
        assert allowed(duck, who, "email_marketing"), who
    # as of a past time, the record then in force
    assert not allowed(duck, customer, "email_marketing", at=T0 + timedelta(days=1, hours=1))
    assert allowed(duck, customer, "email_marketing", at=T0 + timedelta(hours=1))
    assert not allowed(duck, customer, "email_marketing", at=T0 - timedelta(hours=1))

    # an unsubscribe link withdraws; the history keeps every decision, unchanged
    withdraw(duck, "email:ana@example.com", "email_marketing")
    assert not allowed(duck, "user_id:u-1", "email_marketing")
    status = consent_status(duck, "user_id:u-1")
    assert status["customer_id"] == customer
    email = stored_id(duck, "email:ana@example.com")  # a blind: no one named in clear
    assert status["identifiers"] == sorted(["anonymous_id:a-1", email, "user_id:u-1"])
    history = [(r["subject"], r["status"], r["source"]) for r in status["history"]]
    assert history == [
        ("anonymous_id:a-1", "granted", "api"),
        ("user_id:u-1", "denied", "api"),
        (email, "granted", "api"),
        (email, "withdrawn", "unsubscribe"),
    ]
    mine = status["purposes"]["email_marketing"]
    assert (mine["allowed"], mine["status"], mine["source"]) == (False, "withdrawn", "unsubscribe")
    # defaults: analytics allowed without a record, marketing purposes opt-in
    assert status["purposes"]["analytics"]["allowed"] is True
    assert status["purposes"]["advertising"]["allowed"] is False
    assert allowed(duck, "email:nobody@example.com", "analytics")
    assert not allowed(duck, "email:nobody@example.com", "personalization")

    # every change left an audit row naming who, what and whose
    audit = duck.table("audit_log").to_pyarrow().to_pylist()
    assert len(audit) == duck.count("consents") == 4
    assert {r["action"] for r in audit} == {"consent.set"}
    last = max(audit, key=lambda r: r["at"])
    assert last["subject"] == email and last["actor"] == "server"
    assert json.loads(last["details"])["status"] == "withdrawn"


def test_import_checks_every_row_first_and_is_idempotent(duck: Warehouse) -> None:
    rows = [
        {"subject": "email:b@example.com", "purpose": "advertising", "status": "granted",
         "recorded_at": "2026-01-01T10:00:00Z", "policy_version": "2025-12"},
        {"identifier": "user_id:u-9", "purpose": "analytics", "status": "denied",
         "recorded_at": T0},
    ]  # fmt: skip
    bad = [*rows, {"subject": "user_id:u-9", "purpose": "analytics", "status": "nope",
                   "recorded_at": T0}]  # fmt: skip
    with pytest.raises(InvalidInput) as error:
        import_consents(duck, bad)
    assert error.value.field == "rows[2].status"
    assert duck.count("consents") == 0 and duck.count("audit_log") == 0
    assert import_consents(duck, rows) == 2
    assert import_consents(duck, rows) == 0  # the same file again changes nothing
    assert duck.count("consents") == duck.count("audit_log") == 2
    assert allowed(duck, "email:b@example.com", "advertising")
    assert not allowed(duck, "user_id:u-9", "analytics")
    # configured purposes and defaults
    save_config(duck, ConsentConfig(("analytics", "advertising", "surveys"), {"surveys": True}))
    assert allowed(duck, "user_id:u-9", "surveys")
    with pytest.raises(InvalidInput) as error:
        allowed(duck, "user_id:u-9", "email_marketing")
    assert error.value.field == "purpose"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda w: record(w, "fax:123", {"analytics": True}), "subject"),
        (lambda w: record(w, "nocolon", {"analytics": True}), "subject"),
        (lambda w: record(w, "email:not-an-email", {"analytics": True}), "subject"),
        (lambda w: record(w, "user_id:u", {"marketing": True}), "purposes.marketing"),
        (lambda w: record(w, "user_id:u", {"analytics": "maybe"}), "purposes.analytics"),
        (lambda w: record(w, "user_id:u", {}), "purposes"),
        (
            lambda w: record(
                w, "user_id:u", {"analytics": True}, recorded_at=datetime(2026, 1, 1, 10)
            ),
            "recorded_at",
        ),
        (
            lambda w: record(w, "user_id:u", {"analytics": True}, recorded_at="2026-01-01"),
            "recorded_at",
        ),
        (
            lambda w: record(
                w, "user_id:u", {"analytics": True}, recorded_at=datetime.now(UTC) + timedelta(1)
            ),
            "recorded_at",
        ),
        (lambda w: record(w, "user_id:u", {"analytics": True}, source=""), "source"),
        (lambda w: allowed(w, "user_id:u", "analytics", at=datetime(2026, 1, 1)), "at"),
        (lambda w: allowed(w, "someone", "analytics"), "identifier"),
        (lambda w: withdraw(w, "user_id:u", "newsletter"), "purpose"),
        (lambda w: allowed_many(w, ["cus_1"], "nope"), "purpose"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(duck: Warehouse, call, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as error:
        call(duck)
    assert error.value.field == field
    assert duck.count("consents") == 0 and duck.count("audit_log") == 0


def test_allowed_and_allowed_many_on_both_engines(warehouse: Warehouse) -> None:
    # identities written directly: the rule under test is consent's, not resolution's
    identities = [
        ("user_id:u-1", "user_id", "cus_aaa"),
        (stored_id(warehouse, "email:ana@example.com"), "email", "cus_aaa"),
        ("user_id:u-2", "user_id", "cus_bbb"),
    ]
    warehouse.insert(
        "identities",
        pa.Table.from_pylist(
            [
                {
                    "identifier": i,
                    "kind": k,
                    "customer_id": c,
                    "quarantined": False,
                    "resolved_at": T0,
                }
                for i, k, c in identities
            ],
            schema=IDENTITIES.to_pyarrow(),
        ),
    )
    day = timedelta(days=1)
    decisions = [
        ("user_id:u-1", "email_marketing", "granted", T0),
        ("email:ana@example.com", "email_marketing", "withdrawn", T0 + day),
        ("user_id:u-2", "email_marketing", "granted", T0),
        ("user_id:u-2", "analytics", "denied", T0),
        ("user_id:new", "email_marketing", "granted", T0),
    ]
    columns = ("subject", "purpose", "status", "recorded_at")
    import_consents(warehouse, [dict(zip(columns, d, strict=True)) for d in decisions])
    assert not allowed(warehouse, "user_id:u-1", "email_marketing")  # syncs first

    def answer(table: ibis.Table) -> dict[str, bool]:
        rows = table.to_pyarrow().to_pylist()
        return {r["customer_id"]: r["allowed"] for r in rows}

    ids = ["cus_aaa", "cus_bbb", "cus_zzz", "user:new"]
    assert answer(allowed_many(warehouse, ids, "email_marketing", sync=False)) == {
        "cus_aaa": False,
        "cus_bbb": True,
        "cus_zzz": False,  # no record: marketing is opt-in
        "user:new": True,  # an identifier no build has seen yet
    }
    as_table = warehouse.table("identities").select("customer_id")  # duplicates, too
    assert answer(allowed_many(warehouse, as_table, "analytics", sync=False)) == {
        "cus_aaa": True,  # no record: analytics allowed by default
        "cus_bbb": False,
    }
    if warehouse.engine != "duckdb":
        return  # Spark is slow to ask: the rest runs the same expressions again
    assert allowed(warehouse, "cus_aaa", "email_marketing", at=T0 + day / 2)
    assert allowed(warehouse, "cus_bbb", "email_marketing")
    past = allowed_many(warehouse, ["cus_aaa"], "email_marketing", at=T0 + day / 2)
    assert answer(past) == {"cus_aaa": True}


def test_context_consent_records_changes_only_and_sync_is_idempotent(duck: Warehouse) -> None:
    def page(i: int, analytics: bool, ads: bool) -> dict:
        consent = {"categoryPreferences": {"Analytics": analytics, "Advertising": ads,
                                           "Necessary": True}}  # fmt: skip
        return {
            "type": "page",
            "anonymousId": "a-7",
            "messageId": f"pg{i}",
            "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
            "context": {"consent": consent},
        }

    load(duck, [page(0, True, False), page(1, True, False), page(2, True, True)])
    assert sync_consents(duck) == 3  # analytics granted, ads denied, then ads granted
    load(duck, [page(3, True, True), page(4, False, True)])
    assert sync_consents(duck) == 1
    assert sync_consents(duck) == 0
    history = consent_status(duck, "anonymous_id:a-7")["history"]
    assert sorted((r["recorded_at"], r["purpose"], r["status"]) for r in history) == [
        ((T0 + timedelta(minutes=m)).isoformat(), purpose, status)
        for m, purpose, status in [
            (0, "advertising", "denied"),
            (0, "analytics", "granted"),
            (2, "advertising", "granted"),
            (4, "analytics", "denied"),
        ]
    ]


# -- over real HTTP ------------------------------------------------------------------------


def consent_event(i: int, purposes: dict, user: str = "u-1") -> dict:
    return {
        "type": "track",
        "event": "Consent Updated",
        "userId": user,
        "anonymousId": f"a-{user}",
        "messageId": f"consent-{i}",
        "properties": {"purposes": purposes, "policy_version": "2026-01"},
    }


def test_consent_event_lands_in_the_history_and_the_api(server: LiveServer) -> None:
    _, reader = add_key(server.services.warehouse, "reader", "read")
    event = consent_event(1, {"analytics": True, "email_marketing": True, "functional": True})
    assert post(server, "/v1/track", event).status_code == 200
    later = consent_event(2, {"email_marketing": False})
    later["timestamp"] = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert post(server, "/v1/batch", {"batch": [later]}).status_code == 200

    answer = httpx.get(
        server.url + "/v1/consents/user_id:u-1",
        headers={"Authorization": f"Bearer {reader}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    purposes = body["purposes"]
    assert purposes["analytics"]["status"] == "granted"
    assert purposes["email_marketing"]["status"] == "denied"
    assert purposes["email_marketing"]["policy_version"] == "2026-01"
    assert not purposes["email_marketing"]["allowed"]
    history = [(r["purpose"], r["status"], r["source"]) for r in body["history"]]
    assert sorted(history[:2]) == [
        ("analytics", "granted", "collector"),
        ("email_marketing", "granted", "collector"),
    ]
    assert history[2] == ("email_marketing", "denied", "collector")
    warehouse = server.warehouse
    log = warehouse.table("audit_log")
    audit = log.filter(log.action == "consent.set").to_pyarrow().to_pylist()
    assert len(audit) == 3 and {r["actor"] for r in audit} == {"collector"}
    assert {json.loads(r["details"])["message_id"] for r in audit} == {"consent-1", "consent-2"}
    # retries and repeated syncs add nothing
    assert post(server, "/v1/track", event).status_code == 200
    assert sync_consents(server.warehouse) == 0
    assert warehouse.count("consents") == 3


def test_consent_api_auth_and_errors(server: LiveServer) -> None:
    warehouse = server.services.warehouse
    _, reader = add_key(warehouse, "reader", "read")
    admin_key, admin = add_key(warehouse, "dpo", "admin")
    body = {
        "subject": "email:ana@example.com",
        "purposes": {"email_marketing": "granted", "advertising": False},
        "policy_version": "2026-01",
        "recorded_at": "2026-01-05T10:00:00+01:00",
        "reason": "signed the paper form",
    }

    def send(token: str | None, payload: object = body) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(server.url + "/v1/consents", json=payload, headers=headers, timeout=30)

    assert send(None).status_code == 401
    assert send("tpa_unknown").status_code == 401
    assert send(server.write_key).status_code == 403
    assert send(reader).status_code == 403
    assert warehouse.count("consents") == 0
    made = send(admin)
    assert made.status_code == 200, made.text
    assert [(r["purpose"], r["status"]) for r in made.json()["recorded"]] == [
        ("advertising", "denied"),
        ("email_marketing", "granted"),
    ]
    assert made.json()["purposes"]["email_marketing"]["allowed"] is True
    assert send(admin).json()["recorded"] == []  # a retry is stored once
    log = warehouse.table("audit_log")
    audit = log.filter(log.action == "consent.set").to_pyarrow().to_pylist()
    assert {(r["actor"], r["reason"]) for r in audit} == {
        (admin_key.key_id, "signed the paper form")
    }

    for payload, field in [
        ({**body, "purposes": {"spam": True}}, "purposes.spam"),
        ({**body, "purposes": {"analytics": "yes"}}, "purposes.analytics"),
        ({**body, "subject": "ana@example.com"}, "subject"),
        ({**body, "recorded_at": "2026-01-05T10:00:00"}, "recorded_at"),
    ]:
        bad = send(admin, payload)
        assert bad.status_code == 400, bad.text
        assert bad.json()["field"] == field
    assert warehouse.count("consents") == 2

    def read(path: str, token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(server.url + path, headers=headers, timeout=30)

    assert read("/v1/consents/email:ana@example.com", server.write_key).status_code == 403
    assert read("/v1/consents/email:ana@example.com", reader).status_code == 200
    assert read("/v1/consents/fax:1", reader).json()["field"] == "identifier"
    naive = read("/v1/consents/email:ana@example.com?at=2026-01-05T12:00:00", reader)
    assert naive.status_code == 400 and naive.json()["field"] == "at"
    mode = httpx.put(
        server.url + f"/v1/admin/sources/{server.source_id}/consent-mode",
        json={"mode": "sometimes"},
        headers={"Authorization": f"Bearer {reader}"},
        timeout=30,
    )
    assert mode.status_code == 403
    mode = httpx.put(
        server.url + f"/v1/admin/sources/{server.source_id}/consent-mode",
        json={"mode": "sometimes"},
        headers=ADMIN,
        timeout=30,
    )
    assert mode.status_code == 400 and mode.json()["field"] == "mode"


def set_mode(server: LiveServer, mode: str) -> None:
    response = httpx.put(
        server.url + f"/v1/admin/sources/{server.source_id}/consent-mode",
        json={"mode": mode},
        headers=ADMIN,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["consent_mode"] == mode


def personal_event(i: int, consent: dict | None, minute: int = 0) -> dict:
    context: dict = {
        "ip": "203.0.113.9",
        "traits": {"email": "ana@example.com"},
        "page": {"url": "https://shop.example/thanks?email=ana@example.com", "path": "/thanks"},
        "device": {"id": "device-1", "manufacturer": "Apple"},
    }
    if consent is not None:
        context["consent"] = consent
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u-1",
        "anonymousId": "a-1",
        "messageId": f"m-{i}",
        "timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
        "properties": {"revenue": 30, "email": "ana@example.com", "note": "for ana@example.com"},
        "context": context,
    }


def stored(server: LiveServer) -> dict[str, dict]:
    rows = server.warehouse.table("events").to_pyarrow().to_pylist()
    return {r["message_id"]: r for r in rows}


def test_pseudonymous_mode_strips_people_without_analytics_consent(server: LiveServer) -> None:
    set_mode(server, "pseudonymous")
    granted = {"purposes": {"analytics": True}}
    batch = [
        personal_event(1, None),
        personal_event(2, {"purposes": {"analytics": False}}),
        personal_event(3, granted),
    ]
    assert post(server, "/v1/batch", {"batch": batch}).status_code == 200
    rows = stored(server)
    assert set(rows) == {"m-1", "m-2", "m-3"}
    for message_id in ("m-1", "m-2"):
        row = rows[message_id]
        assert row["user_id"] is None and row["traits"] is None and row["ip"] is None
        assert row["anonymous_id"] == "a-1" and row["revenue"] == 30.0
        text = json.dumps(row, default=str)
        assert "ana@example.com" not in text and "203.0.113.9" not in text, text
        assert "device-1" not in text
        assert json.loads(row["properties"]) == {"revenue": 30, "note": "for [redacted]"}
    kept = rows["m-3"]  # consented: stored as sent
    assert kept["user_id"] == "u-1" and kept["ip"] == "203.0.113.0"  # truncated by default
    assert revealed(server.warehouse, kept["traits"]) == {"email": "ana@example.com"}
    assert revealed(server.warehouse, kept["properties"])["email"] == "ana@example.com"


def test_drop_mode_keeps_only_consented_events_and_consent_decisions(server: LiveServer) -> None:
    set_mode(server, "drop")
    refusal = consent_event(9, {"analytics": False, "email_marketing": True})
    refusal["context"] = {"ip": "203.0.113.9", "page": {"url": "https://shop.example/"}}
    refusal["timestamp"] = (T0 + timedelta(minutes=5)).isoformat()  # after m-3's consent
    batch = [
        personal_event(1, None),
        personal_event(2, {"purposes": {"analytics": False}}),
        personal_event(3, {"purposes": {"analytics": True}}),
        refusal,
    ]
    response = post(server, "/v1/batch", {"batch": batch})
    assert response.status_code == 200 and response.json() == {"success": True}
    # a request whose every message is dropped still succeeds (a retry would not help)
    assert post(server, "/v1/track", personal_event(4, None)).status_code == 200
    rows = stored(server)
    assert set(rows) == {"m-3", "consent-9"}
    assert rows["m-3"]["user_id"] == "u-1" and rows["m-3"]["ip"] == "203.0.113.0"
    decision = rows["consent-9"]  # kept, minimised: who decided what, nothing else
    assert decision["user_id"] == "u-1" and decision["ip"] is None
    assert decision["page_url"] is None and decision["context"] is None
    assert sync_consents(server.warehouse) == 3  # m-3's analytics, then the refusal's two
    assert allowed(server.warehouse, "user_id:u-1", "email_marketing")
    assert not allowed(server.warehouse, "user_id:u-1", "analytics")
    # back to off: everything is stored as sent
    set_mode(server, "off")
    assert post(server, "/v1/track", personal_event(5, None)).status_code == 200
    assert stored(server)["m-5"]["ip"] == "203.0.113.0"
