"""Webhooks against a real HTTP receiver on 127.0.0.1 that fails the first attempts:
signatures checked independently, exponential backoff, dead letters and replay, consent
asked again before each attempt, the REST API's roles and errors, and the CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import LiveServer
from tests.test_email import ADMIN, load_people
from touchpoints.activate import webhooks
from touchpoints.identity.lookup import find_customer
from touchpoints.privacy.consent_records import record, withdraw
from touchpoints.privacy.keys import add_key
from touchpoints.warehouse import Warehouse

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Receiver:
    """Answers 500 to the first `failures` requests (and closes the connection on one
    of them), then 200; keeps every request."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                if len(receiver.requests) == 2 and receiver.failures >= 2:
                    self.close_connection = True  # a dropped connection, no answer
                    return
                failing = len(receiver.requests) <= receiver.failures
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(failures=3)
    yield made
    made.stop()


def signed_correctly(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The signature scheme of docs/activation.md, computed here independently."""
    parts = dict(p.split("=", 1) for p in headers["Touchpoints-Signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts["v1"])


def delivery(warehouse: Warehouse, delivery_id: str) -> dict[str, Any]:
    rows = warehouse.table("webhook_deliveries")
    return rows.filter(rows.delivery_id == delivery_id).to_pyarrow().to_pylist()[0]


def test_retries_back_off_then_deliver_once_signed(duck: Warehouse, receiver: Receiver) -> None:
    made = webhooks.save_webhook(duck, "crm", {"url": receiver.url, "backoff_seconds": 30})
    secret = made["secret"]
    queued = webhooks.enqueue(duck, "crm", {"event": "Order Completed", "total": 12}, now=T0)
    now, gaps = T0, []
    for _ in range(3):
        assert webhooks.deliver_due(duck, now=now) == {
            "delivered": 0, "retrying": 1, "dead": 0, "denied": 0
        }  # fmt: skip
        due = delivery(duck, queued["delivery_id"])["next_attempt_at"]
        gaps.append((due - now).total_seconds())
        assert webhooks.deliver_due(duck, now=due - timedelta(seconds=1))["retrying"] == 0
        now = due
    assert gaps == [30, 60, 120]  # base × 2^(attempt − 1)
    assert webhooks.deliver_due(duck, now=now)["delivered"] == 1
    assert webhooks.deliver_due(duck, now=now + timedelta(days=1))["delivered"] == 0
    stored = delivery(duck, queued["delivery_id"])
    assert (stored["status"], stored["attempts"]) == ("delivered", 4)
    assert len(receiver.requests) == 4
    ids = {headers["Touchpoints-Delivery"] for headers, _ in receiver.requests}
    assert ids == {queued["delivery_id"]}  # the same id every attempt: repeats can be dropped
    for headers, body in receiver.requests:
        assert signed_correctly(secret, headers, body)
        assert not signed_correctly(secret + "x", headers, body)
        assert json.loads(body)["total"] == 12
        assert webhooks.verify_signature(secret, headers["Touchpoints-Signature"], body)
        assert not webhooks.verify_signature(secret, headers["Touchpoints-Signature"], body + b" ")


def test_dead_after_the_last_attempt_then_replayed(duck: Warehouse, receiver: Receiver) -> None:
    webhooks.save_webhook(duck, "crm", {"url": receiver.url, "max_attempts": 3})
    queued = webhooks.enqueue(duck, "crm", {"n": 1}, now=T0)
    now = T0
    outcomes = []
    for _ in range(3):
        outcomes.append(webhooks.deliver_due(duck, now=now))
        now += timedelta(hours=2)
    assert [o["dead"] for o in outcomes] == [0, 0, 1]
    dead = webhooks.dead_letters(duck)
    assert [d["delivery_id"] for d in dead] == [queued["delivery_id"]]
    assert dead[0]["attempts"] == 3 and dead[0]["last_error"] == "HTTP 500"
    assert webhooks.deliver_due(duck, now=now)["delivered"] == 0  # dead stays dead
    assert webhooks.replay(duck, now=now)["replayed"] == 1
    assert webhooks.deliver_due(duck, now=now)["delivered"] == 1  # the receiver is well now
    assert webhooks.replay(duck, now=now)["replayed"] == 0  # nothing left to replay
    assert delivery(duck, queued["delivery_id"])["status"] == "delivered"


def test_a_person_who_withdraws_before_the_attempt_is_not_sent(
    duck: Warehouse, receiver: Receiver
) -> None:
    receiver.failures = 0
    load_people(duck, 2)
    for i in (0, 1):
        record(duck, f"user_id:user-{i}", {"personalization": "granted"})
    mine = {i: find_customer(duck, f"user_id:user-{i}") for i in (0, 1)}
    webhooks.save_webhook(duck, "crm", {"url": receiver.url})
    now = datetime.now(UTC)  # consent is asked as of the attempt: the records are of now
    kept = webhooks.enqueue(duck, "crm", {"who": "zero"}, customer_id=mine[0], now=now)
    stopped = webhooks.enqueue(duck, "crm", {"who": "one"}, customer_id=mine[1], now=now)
    withdraw(duck, "user_id:user-1", "personalization")
    assert webhooks.deliver_due(duck, now=now + timedelta(seconds=1)) == {
        "delivered": 1, "retrying": 0, "dead": 0, "denied": 1
    }  # fmt: skip
    assert [json.loads(body)["who"] for _, body in receiver.requests] == ["zero"]
    assert delivery(duck, stopped["delivery_id"])["status"] == "denied"
    stored = delivery(duck, kept["delivery_id"])["payload"]
    assert "zero" not in stored and stored.startswith("tp1:")  # sealed at rest
    never = webhooks.enqueue(duck, "crm", {"who": "one"}, customer_id=mine[1], now=now)
    assert never["status"] == "denied" and never["last_error"] == "no personalization consent"


def test_rest_roles_and_errors(server: LiveServer, receiver: Receiver) -> None:
    receiver.failures = 0
    _, reader = add_key(server.warehouse, "analyst", "read")
    client = httpx.Client(base_url=server.url, timeout=30)
    read = {"Authorization": f"Bearer {reader}"}
    for body, field in [
        ({"url": "ftp://x"}, "url"),
        ({"url": receiver.url, "max_attempts": 0}, "max_attempts"),
        ({"url": receiver.url, "purpose": "mind_reading"}, "purpose"),
        ({"url": receiver.url, "colour": "red"}, "colour"),
    ]:
        answer = client.put("/v1/webhooks/crm", json=body, headers=ADMIN)
        assert answer.status_code == 400 and answer.json()["field"] == field, answer.text
    assert client.get("/v1/webhooks", headers=ADMIN).json() == []  # nothing half made
    assert (
        client.put("/v1/webhooks/crm", json={"url": receiver.url}, headers=read).status_code == 403
    )
    made = client.put("/v1/webhooks/crm", json={"url": receiver.url}, headers=ADMIN).json()
    assert made["secret"].startswith("whsec_")
    again = client.put("/v1/webhooks/crm", json={"url": receiver.url}, headers=ADMIN).json()
    assert "secret" not in again  # shown once
    assert client.post("/v1/webhooks/crm/test", headers=read).status_code == 403
    ping = client.post("/v1/webhooks/crm/test", headers=ADMIN).json()
    assert ping["status"] == "delivered"
    assert signed_correctly(made["secret"], *receiver.requests[-1])
    listed = client.get("/v1/webhooks/deliveries", headers=read).json()
    assert [d["status"] for d in listed] == ["delivered"] and "payload" not in listed[0]
    assert "secret" not in str(client.get("/v1/webhooks", headers=read).json())
    refused = client.post("/v1/webhooks/dead-letters/replay", json={"delivery_ids": ["dlv_x"]},
                          headers=ADMIN)  # fmt: skip
    assert refused.status_code == 404 and refused.json()["field"] == "delivery_ids"


def test_the_cli_adds_and_lists(tmp_path: Path) -> None:
    from tests.test_cli import cli

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    added = cli("webhooks", "add", "crm", "https://crm.example.com/hook", "--format", "json",
                warehouse=url)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["secret"].startswith("whsec_")
    listed = cli("webhooks", "list", "--format", "json", warehouse=url)
    assert json.loads(listed.stdout)[0]["url"] == "https://crm.example.com/hook"
    bad = cli("webhooks", "add", "crm", "not a url", warehouse=url)
    assert bad.returncode == 2 and "(url)" in bad.stderr
