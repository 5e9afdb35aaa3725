"""Real-time triggers: a cart-abandonment rule driven by events sent to the real
collector, its wait surviving a server restart, the delay passing on an injected clock,
consent asked at the moment of firing, the frequency cap, and the rule language."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import LiveServer, start
from tests.smtp import SmtpServer
from tests.test_collector_http import post
from tests.test_email import ADMIN, address, grant, load_people, put
from touchpoints.activate.triggers import matches, parse_trigger
from touchpoints.api.ratelimit import ApiSettings
from touchpoints.errors import InvalidInput
from touchpoints.identity.lookup import find_customer
from touchpoints.warehouse import Warehouse

CART = {
    "when": {"event": "Product Added", "properties": {"price": {"gte": 10}}},
    "unless": {"event": "Order Completed", "within_minutes": 60},
    "action": {"email": "cart-reminder"},
    "cap_hours": 24,
}
REMINDER = {
    "subject": "You left something behind, {{ person.first_name }}",
    "text": "Your cart is waiting.\n{{ unsubscribe_url }}\n",
}


class Clock:
    """The server's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def serve(warehouse: Warehouse, clock: Clock, source: str) -> LiveServer:
    live = start(warehouse, api_settings=ApiSettings(activation_every_s=0.1), source=source)
    live.services.clock = clock
    live.services.activation_lag_s = 3.0  # the writer loads within 2 s of acknowledging
    return live


def wait_for(check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {check()!r}")


def rows(warehouse: Warehouse, table: str) -> list[dict[str, Any]]:
    with warehouse.lock:
        return warehouse.table(table).to_pyarrow().to_pylist()


def settled(warehouse: Warehouse, count: int) -> list[dict[str, Any]] | None:
    """The trigger's firings once there are `count` and each has finished its action."""
    fires = rows(warehouse, "trigger_fires")
    done = len(fires) == count and all(row["status"] != "firing" for row in fires)
    return fires if done else None


def cursor(warehouse: Warehouse) -> str | None:
    with warehouse.lock:
        return warehouse.get_meta("trigger_cursor")


def track(live: LiveServer, user: int, event: str, **properties: Any) -> None:
    body = {"userId": f"user-{user}", "event": event, "properties": properties}
    assert post(live, "/v1/track", body).status_code == 200


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def first(duck: Warehouse, clock: Clock) -> Iterator[LiveServer]:
    live = serve(duck, clock, "website")
    yield live
    live.stop()


def test_cart_abandonment_waits_through_a_restart_and_fires_once_for_the_allowed(
    duck: Warehouse, first: LiveServer, clock: Clock, smtp: SmtpServer
) -> None:
    load_people(duck, 3, first.services.writer)
    grant(duck, 0, 1)  # person 2 never agreed to marketing email
    client = httpx.Client(base_url=first.url, timeout=30)
    put(client, "/v1/email/settings", smtp.settings(first.url))
    put(client, "/v1/campaigns/cart-reminder", REMINDER)
    put(client, "/v1/triggers/cart", CART)
    wait_for(lambda: cursor(duck), "the first tick")

    for user in (0, 1, 2):
        track(first, user, "Product Added", product_id=f"sku-{user}", price=25)
    track(first, 3, "Product Added", product_id="cheap", price=5)  # under the price rule
    track(first, 1, "Order Completed", order_id="o-1", revenue=25)  # person 1 bought
    # the events may reach the triggers over several rounds: wait for the final state
    waiting = wait_for(
        lambda: (
            sorted(r["user_id"] for r in rows(duck, "trigger_pending")) == ["user-0", "user-2"]
            and rows(duck, "trigger_pending")
        ),
        "the carts of persons 0 and 2 waiting (person 1 bought)",
    )
    assert smtp.inbox.messages == []  # an hour has not passed
    customers = {row["customer_id"]: row["user_id"] for row in waiting}
    assert sorted(customers.values()) == ["user-0", "user-2"]
    first.stop()

    clock.now += timedelta(minutes=61)  # the hour passes while the server is down
    second = serve(duck, clock, "website-2")
    try:
        fired = wait_for(lambda: settled(duck, 2), "the carts to fire")
        outcome = {customers[row["customer_id"]]: row["status"] for row in fired}
        assert outcome == {"user-0": "done", "user-2": "denied"}
        wait_for(lambda: smtp.inbox.messages, "the reminder")
        time.sleep(0.5)  # more ticks: nothing fires twice
        assert smtp.inbox.recipients() == [address(0)]
        assert smtp.inbox.messages[0]["Subject"] == "You left something behind, Name0"
        assert rows(duck, "trigger_pending") == []

        # again the same day: the clock is an hour ahead already, so it is due at once
        track(second, 0, "Product Added", product_id="sku-9", price=30)
        capped = wait_for(
            lambda: [r for r in rows(duck, "trigger_fires") if r["status"] == "capped"],
            "the cap",
        )
        assert len(capped) == 1 and smtp.inbox.recipients() == [address(0)]
        listed = httpx.get(f"{second.url}/v1/triggers/cart/fires", headers=ADMIN).json()
        assert sorted(r["status"] for r in listed) == ["capped", "denied", "done"]
    finally:
        second.stop()


def test_an_event_trigger_without_unless_fires_at_once(
    duck: Warehouse, first: LiveServer, smtp: SmtpServer
) -> None:
    load_people(duck, 1, first.services.writer)
    grant(duck, 0)
    client = httpx.Client(base_url=first.url, timeout=30)
    put(client, "/v1/email/settings", smtp.settings(first.url))
    put(client, "/v1/campaigns/welcome", {"subject": "Welcome", "text": "Hello\n"})
    put(client, "/v1/triggers/signup", {"when": {"event": "Signed Up"},
                                        "action": {"email": "welcome"}})  # fmt: skip
    wait_for(lambda: cursor(duck), "the first tick")
    track(first, 0, "Signed Up")
    wait_for(lambda: smtp.inbox.messages, "the welcome")
    assert smtp.inbox.recipients() == [address(0)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"when": {"event": ""}, "action": {"email": "x"}}, "when.event"),
        ({"when": {"event": "A"}, "action": {"sms": "x"}}, "action"),
        ({"when": {"event": "A", "properties": {"p": {"like": 1}}}, "action": {"email": "x"}},
         "when.properties.p"),
        ({"when": {"event": "A"}, "unless": {"event": "B"}, "action": {"email": "x"}},
         "unless.within_minutes"),
        ({"when": {"entered_audience": "vip"}, "unless": {"event": "B", "within_minutes": 5},
          "action": {"email": "x"}}, "unless"),
        ({"when": {"churn_risk_above": 1.5}, "action": {"email": "x"}}, "when.churn_risk_above"),
        ({"when": {"event": "A"}, "action": {"email": "x"}, "cap_hours": -1}, "cap_hours"),
        ({"when": {"event": "A"}, "action": {"email": "x"}, "colour": 1}, "colour"),
    ],
)  # fmt: skip
def test_bad_triggers_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_trigger({"name": "t", **body})
    assert caught.value.field == field


def test_property_conditions() -> None:
    rule = parse_trigger(
        {
            "name": "t",
            "when": {
                "event": "Order Completed",
                "properties": {
                    "revenue": {"gt": 100, "lte": 500},
                    "product.category": {"in": ["shoes", "bags"]},
                    "coupon": {"ne": "STAFF"},
                    "currency": "EUR",
                },
            },
            "action": {"webhook": "crm"},
        }
    )["when"]
    good = {"revenue": 120, "product": {"category": "shoes"}, "currency": "EUR"}
    assert matches(rule, "Order Completed", good)
    assert not matches(rule, "Order Refunded", good)
    assert not matches(rule, "Order Completed", {**good, "revenue": 100})
    assert not matches(rule, "Order Completed", {**good, "revenue": "lots"})
    assert not matches(rule, "Order Completed", {**good, "product": {"category": "hats"}})
    assert not matches(rule, "Order Completed", {**good, "coupon": "STAFF"})
    assert not matches(rule, "Order Completed", {k: v for k, v in good.items() if k != "currency"})


def test_the_cli_saves_and_lists_triggers(tmp_path: Path) -> None:
    from tests.test_cli import cli

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    definition = tmp_path / "cart.yaml"
    definition.write_text(
        "name: cart\nwhen: {event: Product Added}\n"
        "unless: {event: Order Completed, within_minutes: 60}\naction: {email: reminder}\n"
    )
    saved = cli("triggers", "save", str(definition), "--format", "json", warehouse=url)
    assert saved.returncode == 0, saved.stderr
    listed = cli("triggers", "list", "--format", "json", warehouse=url)
    assert '"name": "cart"' in listed.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "when": {"event": "A"}, "action": {"fax": "y"}}')
    refused = cli("triggers", "save", str(bad), warehouse=url)
    assert refused.returncode == 2 and "(action)" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_entering_an_audience_calls_a_webhook_for_the_newcomers_only(duck: Warehouse) -> None:
    from tests.test_email import EVERYONE
    from tests.test_webhooks import Receiver
    from touchpoints.activate.audiences import refresh, save_audience
    from touchpoints.activate.trigger_engine import tick
    from touchpoints.activate.triggers import save_trigger
    from touchpoints.activate.webhooks import deliver_due, save_webhook
    from touchpoints.privacy.consent_records import record
    from touchpoints.warehouse.writer import open_writer

    receiver = Receiver()
    writer = open_writer(duck)
    try:
        load_people(duck, 2)
        record(duck, "user_id:user-0", {"personalization": "granted"})  # not person 1
        save_webhook(duck, "crm", {"url": receiver.url})
        save_audience(duck, "everyone", EVERYONE)
        save_trigger(duck, {"name": "hello", "when": {"entered_audience": "everyone"},
                            "action": {"webhook": "crm"}})  # fmt: skip
        first = refresh(duck, "everyone")
        outcome = tick(duck, writer=writer, entered={"everyone": first["entered_ids"]})
        assert (outcome.get("done"), outcome.get("denied")) == (1, 1)
        assert deliver_due(duck)["delivered"] == 1
        (body,) = [seen["body"] for seen in receiver.seen]
        assert body["trigger"] == "hello"
        assert body["customer_id"] == find_customer(duck, "user_id:user-0")
        again = refresh(duck, "everyone")
        assert again["entered"] == 0
        quiet = tick(duck, writer=writer, entered={"everyone": again["entered_ids"]})
        assert not {"done", "denied", "capped"} & set(quiet)
    finally:
        writer.close()
        receiver.stop()


def test_the_server_loop_counts_newcomers_after_the_first_scheduled_refresh_only(
    duck: Warehouse,
) -> None:
    from types import SimpleNamespace

    from tests.test_email import EVERYONE
    from tests.test_webhooks import Receiver
    from touchpoints.activate.audiences import save_audience
    from touchpoints.activate.triggers import save_trigger
    from touchpoints.activate.webhooks import deliver_due, save_webhook
    from touchpoints.api.activation_loop import triggers_once
    from touchpoints.privacy.consent_records import record
    from touchpoints.warehouse.writer import open_writer

    receiver = Receiver()
    clock = Clock()
    services = SimpleNamespace(warehouse=duck, writer=open_writer(duck), clock=clock,
                               activation_lag_s=0.0)  # fmt: skip
    try:
        load_people(duck, 2)
        for i in range(3):
            record(duck, f"user_id:user-{i}", {"personalization": "granted"})
        save_webhook(duck, "crm", {"url": receiver.url})
        save_audience(duck, "everyone", {**EVERYONE, "refresh_every_minutes": 5})
        save_trigger(duck, {"name": "hello", "when": {"entered_audience": "everyone"},
                            "action": {"webhook": "crm"}})  # fmt: skip
        triggers_once(services)  # the first refresh: two members, nobody "entered"
        load_people(duck, 3)  # person 2 arrives
        triggers_once(services)  # not due yet: nothing happens
        assert rows(duck, "trigger_fires") == []
        clock.now += timedelta(minutes=6)
        triggers_once(services)
        deliver_due(duck, now=clock.now)  # queued on the server's clock
        assert [seen["body"]["customer_id"] for seen in receiver.seen] == [
            find_customer(duck, "user_id:user-2")
        ]
    finally:
        services.writer.close()
        receiver.stop()
