"""The customer 360 on DuckDB and Spark, the profile endpoint, and API key roles."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from tests.live import LiveServer
from tests.test_identity import load
from touchpoints.errors import NotFound
from touchpoints.identity import build, profile
from touchpoints.privacy.keys import add_key, revoke_key
from touchpoints.warehouse import Warehouse


def _story(warehouse: Warehouse) -> None:
    load(
        warehouse,
        [
            {"type": "page", "anonymousId": "a-1", "timestamp": "2026-02-01T09:00:00Z"},
            {"type": "page", "anonymousId": "a-1", "timestamp": "2026-02-01T09:10:00Z"},
            {
                "type": "identify",
                "anonymousId": "a-1",
                "userId": "u-1",
                "timestamp": "2026-02-01T09:12:00Z",
                "traits": {"email": "ana@example.com", "plan": "free", "city": "Lisbon"},
            },
            {
                "type": "track",
                "event": "Product Viewed",
                "userId": "u-1",
                "timestamp": "2026-02-03T18:00:00Z",
                "properties": {"category": "Shoes"},
            },
            {
                "type": "track",
                "event": "Product Viewed",
                "userId": "u-1",
                "timestamp": "2026-02-03T18:01:00Z",
                "properties": {"category": "Shoes"},
            },
            {
                "type": "track",
                "event": "Product Viewed",
                "userId": "u-1",
                "timestamp": "2026-02-03T18:02:00Z",
                "properties": {"category": "Bags"},
            },
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "u-1",
                "timestamp": "2026-02-03T18:05:00Z",
                "properties": {"order_id": "o1", "revenue": 80},
            },
            {
                "type": "identify",
                "userId": "u-1",
                "timestamp": "2026-03-01T10:00:00Z",
                "traits": {"plan": "pro"},
            },
        ],
    )
    load(
        warehouse,
        [
            {
                "type": "track",
                "event": "Order Completed",
                "anonymousId": "pos-9",
                "timestamp": "2026-03-05T12:00:00Z",
                "context": {"traits": {"email": "ANA@example.com"}},
                "properties": {"order_id": "o2", "revenue": 20},
            },
        ],
        channel="store",
    )
    load(
        warehouse,
        [
            {
                "type": "track",
                "event": "Email Delivered",
                "anonymousId": "esp-1",
                "timestamp": "2026-03-06T08:00:00Z",
                "context": {"traits": {"email": "ana@example.com"}},
            },
            {
                "type": "track",
                "event": "Email Opened",
                "anonymousId": "esp-1",
                "timestamp": "2026-03-06T09:00:00Z",
                "context": {"traits": {"email": "ana@example.com"}},
            },
        ],
        channel="email",
    )


def test_profile_of_a_person_across_channels(warehouse: Warehouse) -> None:
    _story(warehouse)
    made = build(warehouse)
    assert made["customers"] == 1 and made["profiles"] == 1
    found = profile(warehouse, "ANA@example.com")
    assert found == profile(warehouse, "u-1") | {"timeline": found["timeline"]}
    assert found["orders"] == 2 and found["revenue"] == pytest.approx(100.0)
    assert found["average_order_value"] == pytest.approx(50.0)
    assert sorted(found["channels"]) == ["email", "store", "web"]
    assert found["last_channel"] == "email"
    # web sessions: 09:00-09:12 is one visit (gaps under 30 minutes), 18:00-18:05 two
    # days later another, the identify of 1 March a third
    assert found["sessions"] == 3
    assert list(found["favourite_categories"])[:2] == ["Shoes", "Bags"]
    assert (found["emails_delivered"], found["emails_opened"]) == (1, 1)
    traits = json.loads(found["traits"])
    assert traits["plan"] == "pro" and traits["city"] == "Lisbon"  # latest value per trait
    assert found["first_seen"].astimezone(UTC) == datetime(2026, 2, 1, 9, tzinfo=UTC)
    stamps = [e["timestamp"] for e in found["timeline"]]
    assert len(stamps) == 11 and stamps == sorted(stamps, reverse=True)
    assert {e["channel"] for e in found["timeline"]} == {"web", "store", "email"}


def test_unknown_identifiers_are_not_found(warehouse: Warehouse) -> None:
    _story(warehouse)
    build(warehouse)
    with pytest.raises(NotFound):
        profile(warehouse, "nobody@example.com")


def _get(server: LiveServer, path: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(server.url + path, headers=headers, timeout=30)


def test_profile_endpoint_needs_a_read_key(server: LiveServer) -> None:
    _story(server.warehouse)
    build(server.warehouse)
    warehouse = server.warehouse
    _, reader = add_key(warehouse, "analyst", "read")
    revoked_key, revoked = add_key(warehouse, "old", "read")
    revoke_key(warehouse, revoked_key.key_id)
    path = "/v1/profiles/email:ana@example.com"
    ok = _get(server, path, reader)
    assert ok.status_code == 200 and ok.json()["orders"] == 2
    assert _get(server, path, None).status_code == 401
    assert _get(server, path, revoked).status_code == 401
    assert _get(server, path, server.write_key).status_code == 403
    assert _get(server, "/v1/profiles/nobody@example.com", reader).status_code == 404


def test_read_keys_cannot_administer(server: LiveServer) -> None:
    warehouse = server.warehouse
    _, reader = add_key(warehouse, "analyst", "read")
    _, admin = add_key(warehouse, "ops", "admin")
    for path in ("/v1/admin/keys", "/v1/admin/sources"):
        assert _get(server, path, reader).status_code == 403
        assert _get(server, path, server.write_key).status_code == 403
        assert _get(server, path, admin).status_code == 200
    made = httpx.post(
        server.url + "/v1/admin/keys",
        json={"name": "bi", "role": "read"},
        headers={"Authorization": f"Bearer {admin}"},
    ).json()
    assert made["key"].startswith("tpr_")
    assert _get(server, "/v1/admin/keys", made["key"]).status_code == 403
    revoked = httpx.post(
        f"{server.url}/v1/admin/keys/{made['key_id']}/revoke",
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert revoked.json()["revoked_at"]
    assert _get(server, "/v1/profiles/x", made["key"]).status_code == 401
    stored = warehouse.query("SELECT * FROM api_keys").to_pylist()
    assert made["key"] not in json.dumps(stored, default=str)
