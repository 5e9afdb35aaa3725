"""Webhooks against a real HTTP receiver on 127.0.0.1 that fails the first attempts (500,
a closed connection, a timeout) and checks every signature with `hmac` itself: backoff,
delivery once, dead letters and replay, consent asked before every attempt, the REST
API's errors and keys, and the CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import duckdb_url
from tests.test_cli import cli
from touchpoints.activate.webhooks import (
    dead_letters,
    deliver_due,
    enqueue,
    get_delivery,
    list_webhooks,
    replay,
    rotate_secret,
    save_webhook,
    verify_signature,
)
from touchpoints.errors import InvalidInput, NotFound
from touchpoints.privacy.consent_records import record, withdraw
from touchpoints.privacy.keys import add_key
from touchpoints.warehouse import Warehouse

NOTHING = {"delivered": 0, "retrying": 0, "dead": 0, "denied": 0}
SECOND = timedelta(seconds=1)
TIMEOUT = 0.3  # the webhook's; the receiver's "timeout" answer comes later than this


class Receiver:
    """An HTTP endpoint that answers the first requests as scripted (`500`, `close`:
    hang up without answering, `timeout`: answer too late, `slow`: answer 200 after a
    moment), then 200; it records each request and whether its signature holds."""

    def __init__(self, script: list[str] | None = None) -> None:
        self.script = list(script or [])
        self.secret = ""
        self.seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    action = receiver.script.pop(0) if receiver.script else "ok"
                    receiver.seen.append(
                        {
                            "delivery_id": self.headers["Touchpoints-Delivery"],
                            "content_type": self.headers["Content-Type"],
                            "valid": receiver.signed(self.headers, body),
                            "body": json.loads(body),
                            "accepted": action in {"ok", "slow"},
                        }
                    )
                if action == "close":
                    self.close_connection = True
                    return
                if action in {"timeout", "slow"}:
                    time.sleep(TIMEOUT * 2 if action == "timeout" else 0.2)
                status = 200 if action in {"ok", "slow"} else 500
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"no" if status == 500 else b"ok")
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/touchpoints"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def signed(self, headers: Any, body: bytes) -> bool:
        """The signature checked from the documented scheme, not with our own code."""
        parts = dict(p.split("=", 1) for p in headers["Touchpoints-Signature"].split(","))
        made = int(parts["t"])
        expected = hmac.new(
            self.secret.encode(), f"{made}.".encode() + body, hashlib.sha256
        ).hexdigest()
        return abs(time.time() - made) < 60 and hmac.compare_digest(expected, parts["v1"])

    def accepted(self) -> list[str]:
        return [s["delivery_id"] for s in self.seen if s["accepted"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.stop()


def t0() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def hook(warehouse: Warehouse, receiver: Receiver, **definition: Any) -> str:
    saved = save_webhook(warehouse, "orders", {"url": receiver.url, **definition})
    receiver.secret = saved["secret"]
    return saved["secret"]


def stored(warehouse: Warehouse, delivery_id: str) -> dict[str, Any]:
    table = warehouse.table("webhook_deliveries")
    return table.filter(table.delivery_id == delivery_id).to_pyarrow().to_pylist()[0]


def test_retries_back_off_exponentially_and_deliver_once(duck: Warehouse, receiver: Receiver):
    receiver.script = ["500", "close", "timeout", "500"]
    hook(duck, receiver, backoff_seconds=30, max_backoff_seconds=3600, timeout_seconds=TIMEOUT)
    start = t0()
    payload = {"type": "order", "order_id": "o-1", "total": 42.5, "items": ["sku-1"]}
    queued = enqueue(duck, "orders", payload, now=start)
    assert (queued["status"], queued["attempts"], queued["payload"]) == ("pending", 0, payload)

    now, schedule, errors = start, [start], []
    for _ in range(6):
        outcome = deliver_due(duck, now=now)
        row = get_delivery(duck, queued["delivery_id"])
        if row["status"] == "delivered":
            assert outcome == {**NOTHING, "delivered": 1}
            break
        assert outcome == {**NOTHING, "retrying": 1}
        errors.append(row["last_error"])
        assert deliver_due(duck, now=row["next_attempt_at"] - SECOND) == NOTHING  # not early
        now = row["next_attempt_at"]
        schedule.append(now)

    gaps = [(b - a).total_seconds() for a, b in pairwise(schedule)]
    assert gaps == [30, 60, 120, 240]
    assert all(later == 2 * earlier for earlier, later in pairwise(gaps))
    assert errors[0].startswith("HTTP 500") and "timed out" in errors[2]
    assert "request failed" in errors[1]
    assert (row["attempts"], row["delivered_at"], row["last_error"]) == (5, now, None)

    assert len(receiver.seen) == 5  # the same delivery every time, signed every time
    assert {s["delivery_id"] for s in receiver.seen} == {queued["delivery_id"]}
    assert all(s["valid"] and s["content_type"] == "application/json" for s in receiver.seen)
    assert all(s["body"] == payload for s in receiver.seen)
    assert receiver.accepted() == [queued["delivery_id"]]
    assert deliver_due(duck, now=now + timedelta(days=30)) == NOTHING
    assert len(receiver.seen) == 5


def test_overlapping_calls_send_a_delivery_once(duck: Warehouse, receiver: Receiver) -> None:
    receiver.script = ["slow"]
    hook(duck, receiver, timeout_seconds=5)
    start = t0()
    enqueue(duck, "orders", {"n": 1}, now=start)
    results: list[dict[str, int]] = []
    threads = [
        threading.Thread(target=lambda: results.append(deliver_due(duck, now=start)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and sum(r["delivered"] for r in results) == 1
    assert len(receiver.seen) == 1


def test_dead_after_the_last_attempt_then_replayed(duck: Warehouse, receiver: Receiver) -> None:
    receiver.script = ["500"] * 3
    hook(duck, receiver, max_attempts=3, backoff_seconds=10, max_backoff_seconds=15)
    start = t0()
    queued = enqueue(duck, "orders", {"type": "order", "order_id": "o-2"}, now=start)
    delivery_id = queued["delivery_id"]
    now, schedule = start, [start]
    while (outcome := deliver_due(duck, now=now))["dead"] == 0:
        assert outcome["retrying"] == 1
        now = get_delivery(duck, delivery_id)["next_attempt_at"]
        schedule.append(now)
    assert [(b - a).total_seconds() for a, b in pairwise(schedule)] == [10, 15]  # capped
    row = get_delivery(duck, delivery_id)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("dead", 3, None)
    [letter] = dead_letters(duck)
    assert letter["delivery_id"] == delivery_id and letter["attempts"] == 3
    assert letter["last_error"].startswith("HTTP 500") and letter["failed_at"] == now
    assert letter["replayed_at"] is None and letter["payload"] == queued["payload"]
    assert deliver_due(duck, now=now + timedelta(days=1)) == NOTHING

    with pytest.raises(NotFound) as missing:
        replay(duck, [delivery_id, "whd_nope"])
    assert missing.value.field == "delivery_ids"
    assert get_delivery(duck, delivery_id)["status"] == "dead"  # nothing changed

    later = now + timedelta(hours=1)
    assert replay(duck, now=later) == {"replayed": [delivery_id], "skipped": []}
    row = get_delivery(duck, delivery_id)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("pending", 0, later)
    assert dead_letters(duck)[0]["replayed_at"] == later
    assert replay(duck, now=later)["replayed"] == []  # each letter once
    assert deliver_due(duck, now=later) == {**NOTHING, "delivered": 1}
    assert len(receiver.seen) == 4 and receiver.accepted() == [delivery_id]
    assert all(s["valid"] for s in receiver.seen)


def test_consent_is_asked_before_every_attempt(duck: Warehouse, receiver: Receiver) -> None:
    hook(duck, receiver)  # purpose: personalization (the default)
    record(duck, "user_id:u1", {"personalization": "granted"})
    record(duck, "user_id:u3", {"personalization": "granted"})
    start = t0()
    people = {
        cid: enqueue(
            duck,
            "orders",
            {"email": f"{name}@example.com", "tier": "gold"},
            customer_id=cid,
            now=start,
        )
        for cid, name in (("user:u1", "u1"), ("user:u2", "u2"), ("user:u3", "u3"))
    }
    # u2 never consented: refused at the door, its payload not kept
    assert people["user:u2"]["status"] == "denied"
    assert people["user:u2"]["last_error"] == "no personalization consent"
    assert stored(duck, people["user:u2"]["delivery_id"])["payload"] == ""
    # u1's payload waits sealed: no address in clear in the warehouse
    waiting = stored(duck, people["user:u1"]["delivery_id"])["payload"]
    assert waiting.startswith("tp1:") and "example.com" not in waiting

    withdraw(duck, "user_id:u1", "personalization")  # between queuing and the attempt
    assert deliver_due(duck, now=start) == {**NOTHING, "delivered": 1, "denied": 1}
    assert [s["body"]["email"] for s in receiver.seen] == ["u3@example.com"]
    assert receiver.accepted() == [people["user:u3"]["delivery_id"]]
    u1 = get_delivery(duck, people["user:u1"]["delivery_id"])
    assert (u1["status"], u1["attempts"], u1["last_error"]) == (
        "denied",
        0,
        "no personalization consent",
    )
    assert stored(duck, u1["delivery_id"])["payload"] == ""
    u3 = get_delivery(duck, people["user:u3"]["delivery_id"])
    assert "payload" not in u3 and u3["personal"]  # never shown, only its size
    sent = json.dumps({"email": "u3@example.com", "tier": "gold"}, separators=(",", ":"))
    assert u3["payload_bytes"] == len(sent.encode())


def test_signature_check_for_receivers() -> None:
    secret, body, made = "tpwh_test", b'{"a":1}', 1_800_000_000
    digest = hmac.new(secret.encode(), b"1800000000." + body, hashlib.sha256).hexdigest()
    header = f"t={made},v1={digest}"
    assert verify_signature(secret, header, body, now=made + 10)
    assert verify_signature(secret, f"t={made},v1=00,v1={digest}", body, now=made)
    assert not verify_signature(secret, header, b'{"a":2}', now=made)
    assert not verify_signature("tpwh_other", header, body, now=made)
    assert not verify_signature(secret, header, body, now=made + 301)  # too old
    for broken in ("", "v1=" + digest, f"t=soon,v1={digest}", f"t={made}"):
        assert not verify_signature(secret, broken, body, now=made)


def test_rotating_the_secret(duck: Warehouse, receiver: Receiver) -> None:
    first = hook(duck, receiver)
    second = rotate_secret(duck, "orders")["secret"]
    assert second != first and second.startswith("tpwh_")
    listed = list_webhooks(duck)
    assert "secret" not in listed[0] and first not in str(listed) and second not in str(listed)
    raw = duck.table("webhooks").to_pyarrow().to_pylist()[0]["secret"]
    assert raw.startswith("tp1:") and second not in raw
    enqueue(duck, "orders", {"n": 1})
    receiver.secret = second
    assert deliver_due(duck)["delivered"] == 1 and receiver.seen[0]["valid"]


BAD = [
    ({"url": "ftp://example.com/in"}, "url"),
    ({"url": "http://user:pw@example.com/in"}, "url"),
    ({}, "url"),
    ({"url": "https://example.com/in", "max_attempts": 0}, "max_attempts"),
    ({"url": "https://example.com/in", "max_attempts": 2.5}, "max_attempts"),
    ({"url": "https://example.com/in", "backoff_seconds": "30"}, "backoff_seconds"),
    ({"url": "https://example.com/in", "purpose": "spam"}, "purpose"),
    ({"url": "https://example.com/in", "retries": 3}, "retries"),
    (
        {"url": "https://example.com/in", "backoff_seconds": 60, "max_backoff_seconds": 10},
        "max_backoff_seconds",
    ),
]


@pytest.mark.slow
def test_rest_api(server: Any, receiver: Receiver) -> None:
    _, reader = add_key(server.warehouse, "analyst", "read")
    _, admin = add_key(server.warehouse, "ops", "admin")
    as_reader = {"Authorization": f"Bearer {reader}"}
    as_admin = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for definition, field in BAD:
            bad = client.put("/v1/webhooks/orders", json=definition, headers=as_admin)
            assert bad.status_code == 400 and bad.json()["field"] == field, (definition, bad.text)
        bad_name = client.put("/v1/webhooks/Bad!", json={"url": receiver.url}, headers=as_admin)
        assert bad_name.status_code == 400 and bad_name.json()["field"] == "name"
        assert client.get("/v1/webhooks", headers=as_reader).json() == []  # nothing saved

        good = {"url": receiver.url, "backoff_seconds": 5}
        assert client.put("/v1/webhooks/orders", json=good, headers=as_reader).status_code == 403
        made = client.put("/v1/webhooks/orders", json=good, headers=as_admin)
        assert made.status_code == 201, made.text
        receiver.secret = made.json()["secret"]
        again = client.put("/v1/webhooks/orders", json={**good, "timeout_seconds": 3},
                           headers=as_admin)  # fmt: skip
        assert again.status_code == 200 and "secret" not in again.json()
        listed = client.get("/v1/webhooks", headers=as_reader)
        assert listed.json()[0]["timeout_seconds"] == 3 and receiver.secret not in listed.text

        assert client.post("/v1/webhooks/orders/test", headers=as_reader).status_code == 403
        tested = client.post("/v1/webhooks/orders/test", headers=as_admin)
        assert tested.status_code == 200 and tested.json()["status"] == "delivered"
        assert receiver.seen[0]["valid"] and receiver.seen[0]["body"]["type"] == "ping"
        assert client.post("/v1/webhooks/nope/test", headers=as_admin).status_code == 404

        shown = client.get("/v1/webhooks/deliveries", params={"webhook": "orders"},
                           headers=as_reader).json()  # fmt: skip
        assert [(d["delivery_id"], d["status"]) for d in shown] == [
            (tested.json()["delivery_id"], "delivered")
        ]
        wrong = client.get("/v1/webhooks/deliveries", params={"status": "lost"},
                           headers=as_reader)  # fmt: skip
        assert wrong.status_code == 400 and wrong.json()["field"] == "status"
        assert client.get("/v1/webhooks/dead-letters", headers=as_reader).json() == []

        path = "/v1/webhooks/dead-letters/replay"
        assert client.post(path, json={}, headers=as_reader).status_code == 403
        assert client.post(path, json={}, headers=as_admin).json()["replayed"] == []
        odd = client.post(path, json={"delivery_ids": "whd_1"}, headers=as_admin)
        assert odd.status_code == 400 and odd.json()["field"] == "delivery_ids"

        assert client.delete("/v1/webhooks/orders", headers=as_reader).status_code == 403
        assert client.delete("/v1/webhooks/orders", headers=as_admin).status_code == 200
        assert client.delete("/v1/webhooks/orders", headers=as_admin).status_code == 404


def test_bad_definitions_change_nothing(duck: Warehouse) -> None:
    save_webhook(duck, "crm", {"url": "https://example.com/in", "max_attempts": 4})
    before = duck.table("webhooks").to_pyarrow().to_pylist()
    for definition, field in BAD:
        with pytest.raises(InvalidInput) as error:
            save_webhook(duck, "crm", definition)
        assert error.value.field == field
    assert duck.table("webhooks").to_pyarrow().to_pylist() == before
    with pytest.raises(NotFound):
        enqueue(duck, "nope", {"a": 1})
    with pytest.raises(InvalidInput) as error:
        enqueue(duck, "crm", ["not", "an", "object"])  # type: ignore[arg-type]
    assert error.value.field == "payload" and duck.count("webhook_deliveries") == 0


@pytest.mark.slow
def test_cli(tmp_path: Path, receiver: Receiver) -> None:
    url = duckdb_url(tmp_path / "touchpoints.duckdb")
    added = cli("webhooks", "add", "crm", receiver.url, "--backoff", "5", "-f", "json",
                warehouse=url)  # fmt: skip
    assert added.returncode == 0, added.stderr
    receiver.secret = json.loads(added.stdout)["secret"]
    tested = cli("webhooks", "test", "crm", "-f", "json", warehouse=url)
    assert tested.returncode == 0, tested.stderr
    assert json.loads(tested.stdout)["status"] == "delivered" and receiver.seen[0]["valid"]
