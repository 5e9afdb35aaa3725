"""Email campaigns against a real SMTP server (aiosmtpd, STARTTLS and a login) and a real
API server: exactly the allowed people get exactly one message, the signed unsubscribe
link works over HTTP and stops the next send, opens and clicks come back as events, and
a sender killed mid-campaign resumes without sending anyone twice or skipping anyone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.live import LiveServer
from tests.smtp import SmtpServer
from touchpoints.activate.audiences import save_audience
from touchpoints.activate.campaigns import save_campaign
from touchpoints.activate.email_settings import save_email_settings
from touchpoints.activate.gate import may_contact
from touchpoints.activate.sending import queue
from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.identity.lookup import find_customer
from touchpoints.privacy.consent_read import allowed
from touchpoints.privacy.consent_records import record, withdraw
from touchpoints.privacy.erasure import erase
from touchpoints.privacy.rebuild import rebuild
from touchpoints.warehouse import Warehouse, connect
from touchpoints.warehouse.writer import open_writer

ADMIN = {"Authorization": "Bearer test-admin-token"}
EVERYONE = {"rule": {"trait": "email", "op": "exists"}}


def address(i: int) -> str:
    return f"person{i}@example.com"


def people(count: int) -> list[dict[str, Any]]:
    """Synthetic people: a user id, an email and a first name each."""
    return [
        {
            "type": "identify",
            "userId": f"user-{i}",
            "traits": {"email": address(i), "first_name": f"Name{i}"},
            "messageId": f"identify-{i}",
        }
        for i in range(count)
    ]


def load_people(warehouse: Warehouse, count: int, writer: Any = None) -> None:
    envelope = Envelope("src_test", "web", now_us())
    rows = [normalize(m, envelope) for m in people(count)]
    own = writer is None
    writer = writer or open_writer(warehouse)
    writer.write(rows)
    if own:
        writer.close()
    else:
        writer.flush()
    with warehouse.lock:
        rebuild(warehouse)


def grant(warehouse: Warehouse, *which: int) -> None:
    with warehouse.lock:
        for i in which:
            record(warehouse, f"user_id:user-{i}", {"email_marketing": "granted"})


def put(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.put(path, json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def campaign(campaign_id: str, audience: str = "everyone") -> dict[str, Any]:
    return {
        "audience": audience,
        "subject": "Hello {{ person.first_name }}",
        "text": "Spring is here, {{ person.first_name }}.\nStop: {{ unsubscribe_url }}\n",
        "html": (
            "<html><body><p>Hi {{ person.first_name }}</p>"
            '<a href="https://shop.example.com/spring?utm_source=email&amp;x=1">Shop</a>'
            '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>'
        ),
    }


def unsubscribe_link(message: Any) -> str:
    header = str(message["List-Unsubscribe"])
    found = re.fullmatch(r"<(http://[^>]+)>", header)
    assert found, header
    return found.group(1)


def test_campaign_reaches_exactly_the_allowed_once_and_unsubscribe_stops_the_next(
    server: LiveServer, smtp: SmtpServer
) -> None:
    warehouse = server.services.warehouse
    load_people(warehouse, 6, server.services.writer)
    grant(warehouse, 0, 1, 2, 3, 4)  # person 5 never agreed
    with warehouse.lock:
        withdraw(warehouse, "user_id:user-1", "email_marketing")
    erase(warehouse, "user_id:user-2", reason="asked by the person", compact=False)
    client = httpx.Client(base_url=server.url, timeout=30)
    put(client, "/v1/email/settings", smtp.settings(server.url))
    put(client, "/v1/audiences/everyone", EVERYONE)
    put(client, "/v1/campaigns/spring", campaign("spring"))

    sent = client.post("/v1/campaigns/spring/send", headers=ADMIN)
    assert sent.status_code == 200, sent.text
    body = sent.json()
    allowed_people = [address(0), address(3), address(4)]
    assert smtp.inbox.recipients() == allowed_people
    assert body["sent"] == 3 and body["skipped"] == {"no email_marketing consent": 2}
    again = client.post("/v1/campaigns/spring/send", headers=ADMIN).json()
    assert again["sent"] == 0 and smtp.inbox.recipients() == allowed_people  # nobody twice

    first = smtp.inbox.to(address(0))[0]
    assert first["Subject"] == "Hello Name0"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"<snd_[0-9a-f]{24}@example\.com>", str(first["Message-ID"]))
    link = unsubscribe_link(first)
    assert link in first.get_body(("plain",)).get_content()
    assert address(0) not in link  # the address never travels in the link
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    assert client.get(tampered).status_code == 400
    with warehouse.lock:
        assert allowed(warehouse, "user_id:user-0", "email_marketing")
    page = client.get(link)  # a real click on the link
    assert page.status_code == 200 and "unsubscribed" in page.text
    with warehouse.lock:
        assert not allowed(warehouse, "user_id:user-0", "email_marketing")

    put(client, "/v1/campaigns/summer", campaign("summer"))
    summer = client.post("/v1/campaigns/summer/send", headers=ADMIN).json()
    assert summer["sent"] == 2
    counts = Counter(smtp.inbox.recipients())
    assert counts == {address(0): 1, address(3): 2, address(4): 2}

    log = client.get("/v1/campaigns/spring/sends", headers=ADMIN).json()
    assert log["counts"] == {"sent": 3, "skipped": 2}
    assert not any(address(i) in str(log) for i in range(6))  # customer ids, no addresses


def test_opens_and_clicks_come_back_as_email_events(server: LiveServer, smtp: SmtpServer) -> None:
    warehouse = server.services.warehouse
    load_people(warehouse, 1, server.services.writer)
    grant(warehouse, 0)
    client = httpx.Client(base_url=server.url, timeout=30)
    put(client, "/v1/email/settings", smtp.settings(server.url))
    put(client, "/v1/audiences/everyone", EVERYONE)
    put(client, "/v1/campaigns/spring", campaign("spring"))
    assert client.post("/v1/campaigns/spring/send", headers=ADMIN).json()["sent"] == 1

    html = smtp.inbox.to(address(0))[0].get_body(("html",)).get_content()
    hrefs = [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', html)]
    click = next(h for h in hrefs if "/v1/email/click" in h)
    assert any("/v1/email/unsubscribe" in h for h in hrefs)  # left as it is
    pixel = re.search(r'<img src="([^"]+)"', html).group(1).replace("&amp;", "&")
    opened = client.get(pixel)
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    went = client.get(click, follow_redirects=False)
    assert went.status_code == 302
    assert went.headers["location"] == "https://shop.example.com/spring?utm_source=email&x=1"
    assert client.get(click.replace("click?t=", "click?t=x")).status_code == 400

    warehouse = server.warehouse  # flushed
    with warehouse.lock:
        events = warehouse.table("events")
        rows = (
            events.filter(events.channel == "email")
            .select("event", "user_id", "properties")
            .to_pyarrow()
            .to_pylist()
        )
    names = Counter(row["event"] for row in rows)
    assert names == {"Email Delivered": 1, "Email Opened": 1, "Email Link Clicked": 1}
    assert {row["user_id"] for row in rows} == {"user-0"}
    assert all('"campaign_id":"spring"' in row["properties"] for row in rows)
    assert client.get(pixel).status_code == 200  # a second open of the same message
    assert client.post(unsubscribe_link(smtp.inbox.messages[0])).json()["unsubscribed"]
    server.warehouse  # noqa: B018 (flushes the writer)
    overview = client.get("/v1/activation", headers=ADMIN).json()["campaigns"]
    assert overview == [
        {"campaign_id": "spring", "sent": 1, "skipped": 0, "uncertain": 0, "failed": 0,
         "queued": 0, "opened": 1, "clicked": 1, "unsubscribed": 1, "open_rate": 1.0}
    ]  # fmt: skip


def test_bad_campaigns_and_settings_name_the_field(server: LiveServer) -> None:
    client = httpx.Client(base_url=server.url, timeout=30)
    cases = [
        ("/v1/campaigns/x", {"subject": "Hi {{ oops", "text": "t"}, "subject"),
        ("/v1/campaigns/x", {"subject": "Hi", "text": "t", "purpose": "spying"}, "purpose"),
        ("/v1/campaigns/x", {"text": "t"}, "subject"),
        ("/v1/campaigns/Bad Id", {"subject": "s", "text": "t"}, "campaign_id"),
        ("/v1/email/settings", {"port": 70000}, "port"),
        ("/v1/email/settings", {"security": "maybe"}, "security"),
        ("/v1/email/settings", {"smtp": "x"}, "smtp"),
    ]
    for path, body, field in cases:
        answer = client.put(path, json=body, headers=ADMIN)
        assert answer.status_code == 400, (path, body, answer.text)
        assert answer.json()["field"] == field
    assert client.get("/v1/campaigns", headers=ADMIN).json() == []


def run_sender(url: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "touchpoints.cli.main", "--warehouse", url]
    return subprocess.Popen(
        [*command, "campaigns", "send", "spring"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


def test_a_sender_killed_mid_campaign_resumes_without_doubles_or_gaps(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    url = f"duckdb:///{tmp_path / 'crash.duckdb'}"
    warehouse = connect(url)
    load_people(warehouse, 12)
    grant(warehouse, *range(12))
    with warehouse.lock:
        withdraw(warehouse, "user_id:user-7", "email_marketing")
    save_email_settings(warehouse, {**smtp.settings("http://127.0.0.1:9"), "rate_per_second": 50})
    save_audience(warehouse, "everyone", EVERYONE)
    save_campaign(warehouse, {"campaign_id": "spring", **campaign("spring")})
    warehouse.close()

    sender: dict[str, subprocess.Popen[bytes]] = {}

    def kill_on_fifth(message: Any) -> None:
        # the worst moment: the server has the message, the sender has no answer yet
        if len(smtp.inbox.messages) == 5:
            sender["process"].send_signal(signal.SIGKILL)

    smtp.inbox.on_message = kill_on_fifth
    sender["process"] = run_sender(url)
    sender["process"].wait(timeout=120)
    assert sender["process"].returncode == -signal.SIGKILL
    assert len(smtp.inbox.messages) == 5

    smtp.inbox.on_message = None
    again = run_sender(url)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()
    expected = [address(i) for i in range(12) if i != 7]
    counts = Counter(smtp.inbox.recipients())
    assert sorted(counts) == sorted(expected)  # nobody allowed skipped
    assert set(counts.values()) == {1}  # nobody twice
    warehouse = connect(url)
    sends = warehouse.table("sends").to_pyarrow().to_pylist()
    by_status = Counter(row["status"] for row in sends)
    assert by_status == {"sent": 10, "uncertain": 1, "skipped": 1}
    warehouse.close()


def test_erasure_removes_the_send_log_and_the_door_refuses_the_erased(
    server: LiveServer, smtp: SmtpServer
) -> None:
    warehouse = server.services.warehouse
    load_people(warehouse, 2, server.services.writer)
    grant(warehouse, 0, 1)
    client = httpx.Client(base_url=server.url, timeout=30)
    put(client, "/v1/email/settings", smtp.settings(server.url))
    put(client, "/v1/audiences/everyone", EVERYONE)
    put(client, "/v1/campaigns/spring", campaign("spring"))
    assert client.post("/v1/campaigns/spring/send", headers=ADMIN).json()["sent"] == 2
    with warehouse.lock:
        profiles = warehouse.table("profiles").to_pyarrow().to_pylist()
    gone = next(p["customer_id"] for p in profiles if "user_id:user-1" in p["identifiers"])

    erase(warehouse, "user_id:user-1", reason="asked by the person", compact=False)
    with warehouse.lock:
        left = {row["customer_id"] for row in warehouse.table("sends").to_pyarrow().to_pylist()}
        assert gone not in left and len(left) == 1
        verdict = may_contact(warehouse, gone, "email_marketing")
        by_address = may_contact(
            warehouse, "cus_new", "email_marketing", identifiers=[f"email:{address(1)}"]
        )
    assert (verdict.allowed, verdict.reason) == (False, "erased")
    assert (by_address.allowed, by_address.reason) == (False, "erased")
    # a send queued for the old id (a list made before the erasure) is refused at the door
    queue(warehouse, "spring", [gone])
    again = client.post("/v1/campaigns/spring/send", headers=ADMIN).json()
    assert again["sent"] == 0 and again["skipped"] == {"erased": 1}
    assert Counter(smtp.inbox.recipients()) == {address(0): 1, address(1): 1}


def test_a_campaign_with_an_offer_gives_each_person_their_code_and_keeps_the_holdout(
    server: LiveServer, smtp: SmtpServer
) -> None:
    warehouse = server.services.warehouse
    load_people(warehouse, 8, server.services.writer)
    grant(warehouse, *range(8))
    client = httpx.Client(base_url=server.url, timeout=30)
    put(client, "/v1/email/settings", smtp.settings(server.url))
    put(client, "/v1/audiences/everyone", EVERYONE)
    put(
        client,
        "/v1/offers/spring10",
        {
            "name": "Spring 10%",
            "discount": {"percent": 10},
            "valid_days": 14,
            "holdout": 0.5,
            "codes": {"generate": {"prefix": "SPR", "length": 8}},
        },
    )
    put(client, "/v1/campaigns/spring", {**campaign("spring"), "offer_id": "spring10",
                                         "text": "Your code: {{ coupon.code }}\n"})  # fmt: skip
    result = client.post("/v1/campaigns/spring/send", headers=ADMIN).json()
    with warehouse.lock:
        given = {
            row["customer_id"]: row
            for row in warehouse.table("offer_assignments").to_pyarrow().to_pylist()
        }
        people = {find_customer(warehouse, f"user_id:user-{i}"): i for i in range(8)}
    offered = {people[c]: row["code"] for c, row in given.items() if row["arm"] == "offer"}
    assert len(given) == 8 and 0 < len(offered) < 8
    assert result["sent"] == len(offered) and result["skipped"] == {"holdout": 8 - len(offered)}
    assert smtp.inbox.recipients() == sorted(address(i) for i in offered)
    for i, code in offered.items():
        (message,) = smtp.inbox.to(address(i))
        assert f"Your code: {code}" in message.get_body(("plain",)).get_content()
