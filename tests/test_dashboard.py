"""The dashboard in Debian's Chromium (Playwright): sign-in, every page without console
errors, the numbers equal to the insights functions for the same filters, the filters
kept in the URL, the drop-off download, the live stream, and a screenshot of each page
(docs/screenshots/, shown in the README)."""

from __future__ import annotations

import csv
import io
import random
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import Tab
from tests.conftest import duckdb_url
from tests.live import start
from touchpoints.collect.demo import DemoParameters, load_demo
from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.dashboard.routes import NAV
from touchpoints.insights import heatmaps
from touchpoints.insights.frame import user_events
from touchpoints.insights.reports import read_scope
from touchpoints.models.reports import run_report
from touchpoints.privacy.audit import export_audit
from touchpoints.privacy.keys import add_key
from touchpoints.privacy.rebuild import rebuild
from touchpoints.warehouse import Warehouse, connect
from touchpoints.warehouse.writer import open_writer

pytestmark = pytest.mark.slow
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
HEAT_PATH = "/landing"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A small demo shop with clicks and scrolls on one landing page, built, served."""
    path = tmp_path_factory.mktemp("dashboard") / "touchpoints.duckdb"
    warehouse = connect(duckdb_url(path))
    load_demo(warehouse, DemoParameters(customers=150, months=3, seed=11))
    _clicks(warehouse)
    _surveys(warehouse)
    rebuild(warehouse)
    live = start(warehouse)
    _, reader = add_key(warehouse, "analyst", "read")
    last = warehouse.table("events").timestamp.max().to_pyarrow().as_py().date()
    query = f"from={last - timedelta(days=59)}&to={last}"
    yield {"live": live, "key": reader, "query": query, "warehouse": warehouse}
    live.stop()
    warehouse.close()


def _clicks(warehouse: Warehouse) -> None:
    rng = random.Random(3)
    envelope = Envelope("src_tracker", "web", now_us())
    stamp = "2026-10-30T10:{:02d}:{:02d}Z"
    rows = []
    for i in range(40):
        x, y = rng.gauss(640, 120), rng.gauss(500, 150)  # around a call to action
        properties = {"x": max(x, 0), "y": max(y, 0), "page_width": 1280, "page_height": 2400,
                      "selector": "a.cta" if i % 4 else "nav a", "text": "Start"}  # fmt: skip
        rows.append({"type": "track", "event": "Element Clicked", "properties": properties})
    for i, depth in enumerate([25, 50, 25, 50, 75, 100]):
        rows.append({"type": "page", "properties": {"path": HEAT_PATH}, "i": i})
        rows.append({"type": "track", "event": "Scroll Depth Reached",
                     "properties": {"depth": depth, "page_height": 2400}})  # fmt: skip
    messages = []
    for i, row in enumerate(rows):
        row.pop("i", None)
        message = {**row, "anonymousId": f"visitor-{i % 9}", "messageId": f"heat-{i}",
                   "timestamp": stamp.format(i // 60, i % 60),
                   "context": {"page": {"path": HEAT_PATH}}}  # fmt: skip
        messages.append(normalize(message, envelope))
    writer = open_writer(warehouse)
    writer.write(messages)
    writer.close()


def _surveys(warehouse: Warehouse) -> None:
    """NPS answers and mentions in the demo's last weeks (the demo writes none)."""
    last = warehouse.table("events").timestamp.max().to_pyarrow().as_py()
    envelope = Envelope("src_tracker", "web", now_us())
    comments = ["Late delivery again", "Love it, great quality", "ok", "Terrible late delivery"]
    messages = []
    for i, score in enumerate([10, 9, 9, 8, 3, 6, 10, 0, 9, 7]):
        moment = (last - timedelta(days=i * 3)).isoformat()
        messages.append(
            normalize(
                {
                    "type": "track",
                    "event": "Survey Responded",
                    "userId": f"nps-{i}",
                    "messageId": f"nps-{i}",
                    "timestamp": moment,
                    "properties": {"score": score, "survey": "NPS", "comment": comments[i % 4]},
                },
                envelope,
            )
        )
        messages.append(
            normalize(
                {
                    "type": "track",
                    "event": "Brand Mentioned",
                    "anonymousId": f"social:x:h{i}",
                    "messageId": f"men-{i}",
                    "timestamp": moment,
                    "properties": {
                        "platform": "x",
                        "author_handle": f"h{i}",
                        "text": comments[i % 4],
                    },
                },
                envelope,
            )
        )
    writer = open_writer(warehouse)
    writer.write(messages)
    writer.close()


def _sign_in(tab: Tab, shop: dict[str, Any], target: str = "/dashboard") -> None:
    base = shop["live"].url
    tab.page.goto(f"{base}{target}")
    assert "/dashboard/signin" in tab.page.url
    tab.page.fill("input[name=key]", shop["key"])
    tab.page.click("button[type=submit]")
    tab.page.wait_for_url(f"{base}{target}*")


def _open(tab: Tab, shop: dict[str, Any], path: str, extra: str = "") -> None:
    tab.page.goto(f"{shop['live'].url}/dashboard{path}?{shop['query']}{extra}")
    tab.page.wait_for_selector("body[data-ready=yes]", timeout=30_000)


def _tile(tab: Tab, key: str) -> float:
    return float(tab.page.get_attribute(f"[data-tile={key}]", "data-value"))


def _column(tab: Tab, table: str, column: str) -> list[str]:
    cells = tab.page.query_selector_all(f"table[data-table={table}] td[data-column={column}]")
    return [cell.get_attribute("data-value") for cell in cells]


def _report(shop: dict[str, Any], name: str, params: dict[str, Any]) -> Any:
    """A report on the server's own connection, holding its lock as the server does."""
    warehouse = shop["live"].warehouse
    with warehouse.lock:
        return run_report(warehouse, name, params)


def _params(shop: dict[str, Any], **extra: Any) -> dict[str, Any]:
    start, end = (part.split("=")[1] for part in shop["query"].split("&"))
    return {"from": start, "to": end, **extra}


def test_signing_in_takes_a_read_key_and_refuses_others(tab: Tab, shop: dict[str, Any]) -> None:
    base = shop["live"].url
    unsigned = httpx.get(f"{base}/dashboard/traffic", follow_redirects=False)
    assert unsigned.status_code == 303
    assert unsigned.headers["location"].startswith("/dashboard/signin?next=")
    policy = httpx.get(f"{base}/dashboard/signin").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    tab.page.goto(f"{base}/dashboard/signin")
    for wrong in ("not-a-key", shop["live"].write_key):
        tab.page.fill("input[name=key]", wrong)
        tab.page.click("button[type=submit]")
        assert tab.page.inner_text("[role=alert]")
        assert "/dashboard/signin" in tab.page.url
    _sign_in(tab, shop, "/dashboard/retention")
    cookie = next(c for c in tab.page.context.cookies() if c["name"] == "tp_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # the refused keys were answered 401, which the browser notes; nothing else went wrong
    tab.errors[:] = [e for e in tab.errors if "status of 401" not in e]
    evil = httpx.post(f"{base}/dashboard/signin", data={"key": shop["key"],
                      "next": "https://elsewhere.example"}, follow_redirects=False)  # fmt: skip
    assert evil.headers["location"] == "/dashboard"  # never a redirect off the site
    assert tab.errors == [], tab.errors


@pytest.mark.parametrize(("path", "title"), NAV)
def test_each_page_loads_without_errors(
    tab: Tab, shop: dict[str, Any], path: str, title: str
) -> None:
    _sign_in(tab, shop)
    page = f"/{path}" if path else ""
    _open(tab, shop, page)
    assert tab.errors == [], tab.errors
    figures = tab.page.query_selector_all("script[data-figure]")
    drawn = tab.page.query_selector_all(".plot .main-svg")
    assert len(drawn) >= len(figures)
    assert not [url for url in tab.requests if not url.startswith(shop["live"].url)]
    SHOTS.mkdir(parents=True, exist_ok=True)
    name = path or "overview"
    tab.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
    if not path:  # the overview at phone width, too
        tab.page.set_viewport_size({"width": 390, "height": 844})
        tab.page.wait_for_timeout(300)
        tab.page.screenshot(path=str(SHOTS / "overview-phone.png"), full_page=False)
        width = tab.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390 + 1  # nothing runs off a phone's screen


def test_numbers_equal_the_insights_functions(tab: Tab, shop: dict[str, Any]) -> None:
    warehouse = shop["live"].warehouse
    _sign_in(tab, shop)
    _open(tab, shop, "")
    web = _report(shop, "web", _params(shop, period="all")).rows[0]
    assert _tile(tab, "users") == web["users"] and _tile(tab, "sessions") == web["sessions"]
    assert _tile(tab, "conversion_rate") == pytest.approx(web["conversions"] / web["sessions"])
    kpis = _report(shop, "kpis", _params(shop, by="channel")).rows
    assert _tile(tab, "revenue") == pytest.approx(sum(r["revenue"] or 0 for r in kpis))

    _open(tab, shop, "/traffic")
    groups = _report(shop, "web", _params(shop, period="all", by="channel_group"))
    assert _column(tab, "channel_groups", "channel_group") == [
        r["channel_group"] for r in groups.rows
    ]
    assert [int(v) for v in _column(tab, "channel_groups", "sessions")] == [
        r["sessions"] for r in groups.rows
    ]

    _open(tab, shop, "/funnel")
    steps = ["Product Viewed", "Product Added", "Order Completed"]
    funnel = _report(shop, "funnel", _params(shop, step=steps, window="7d"))
    assert [int(v) for v in _column(tab, "funnel", "users")] == [r["users"] for r in funnel.rows]

    _open(tab, shop, "/retention", "&period=month")
    cohorts = _report(shop, "retention", _params(shop, period="month", periods="8"))
    shown = [float(v) for v in _column(tab, "retention", "rate_classic") if v]
    assert shown == pytest.approx([r["rate_classic"] for r in cohorts.rows if r["rate_classic"]])

    _open(tab, shop, "/heatmaps", f"&path={HEAT_PATH}")
    with warehouse.lock:
        events = user_events(warehouse, read_scope(_params(shop)))
        cells = heatmaps.click_grid(events, HEAT_PATH, 24, 48).to_pyarrow().to_pylist()
        depth = heatmaps.scroll_depth(events, HEAT_PATH).to_pyarrow().to_pylist()
    assert _tile(tab, "clicks") == sum(cell["clicks"] for cell in cells) == 40
    assert [int(v) for v in _column(tab, "scroll_depth", "views_reaching")] == [
        r["views_reaching"] for r in depth
    ]
    assert _column(tab, "targets", "selector")[0] == "a.cta"
    assert tab.errors == [], tab.errors


def test_filters_stay_in_the_url_and_the_links(tab: Tab, shop: dict[str, Any]) -> None:
    _sign_in(tab, shop)
    _open(tab, shop, "/traffic")
    tab.page.fill("form.filters input[name=device]", "mobile")
    tab.page.click("form.filters button[type=submit]")
    tab.page.wait_for_selector("body[data-ready=yes]")
    assert "device=mobile" in tab.page.url
    link = tab.page.get_attribute("nav a[href^='/dashboard/campaigns']", "href")
    assert "device=mobile" in link and "from=" in link
    mobile = _report(shop, "web", {**_params(shop, period="all"), "where": ["device=mobile"]})
    assert _tile(tab, "sessions") == mobile.rows[0]["sessions"]
    everyone = _report(shop, "web", _params(shop, period="all")).rows[0]["sessions"]
    assert mobile.rows[0]["sessions"] < everyone
    tab.page.goto(f"{shop['live'].url}/dashboard/traffic?from=yesterday")
    assert "from is a date" in tab.page.inner_text("[role=alert]")


def test_the_drop_off_list_downloads(tab: Tab, shop: dict[str, Any]) -> None:
    _sign_in(tab, shop)
    _open(tab, shop, "/funnel")
    href = tab.page.get_attribute("td[data-column=dropped_off] a", "href")
    cookie = next(c for c in tab.page.context.cookies() if c["name"] == "tp_dashboard")
    answer = httpx.get(shop["live"].url + href, cookies={"tp_dashboard": cookie["value"]})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    steps = ["Product Viewed", "Product Added", "Order Completed"]
    params = _params(shop, step=steps, window="7d", dropped_after="1")
    expected = _report(shop, "funnel", params)
    assert len(rows) == len(expected.rows) > 0
    assert httpx.get(shop["live"].url + href).status_code == 303  # not signed in: no list


def test_a_customer_profile_is_found_by_email_and_the_read_audited(
    tab: Tab, shop: dict[str, Any]
) -> None:
    _sign_in(tab, shop)
    _open(tab, shop, "/customers", "&q=customer00003@example.com")
    text = tab.page.inner_text("table[data-table=profile]")
    assert "customer00003@example.com" in text  # sealed at rest, in clear for a reader
    with shop["live"].warehouse.lock:
        reads = export_audit(shop["live"].warehouse, action="profile.read")
    assert reads[-1]["actor"].startswith("key_") and reads[-1]["reason"] == "dashboard"
    assert tab.errors == [], tab.errors


def test_live_shows_an_event_as_it_arrives(tab: Tab, shop: dict[str, Any]) -> None:
    _sign_in(tab, shop)
    tab.page.goto(f"{shop['live'].url}/dashboard/live")
    tab.page.wait_for_selector("#live-status:has-text('connected')", timeout=15_000)
    message_id = f"live-{time.time_ns()}"
    sent = httpx.post(
        f"{shop['live'].url}/v1/track",
        json={"event": "Live Check", "anonymousId": "visitor-live", "messageId": message_id},
        auth=(shop["live"].write_key, ""),
    )
    assert sent.status_code == 200
    tab.page.wait_for_selector(f"tr[data-message-id='{message_id}']", timeout=15_000)
    assert "Live Check" in tab.page.inner_text(f"tr[data-message-id='{message_id}']")
    assert tab.errors == [], tab.errors


def test_voice_of_the_customer_numbers_equal_the_reports(tab: Tab, shop: dict[str, Any]) -> None:
    _sign_in(tab, shop)
    _open(tab, shop, "/feedback")
    nps = _report(shop, "nps", _params(shop)).rows[0]
    assert nps["responses"] == 10
    assert _tile(tab, "nps") == pytest.approx(nps["nps"]) == pytest.approx(20.0)
    assert _tile(tab, "nps_responses") == nps["responses"]
    themes = _report(shop, "themes", _params(shop, top="10")).rows
    assert _column(tab, "themes", "term") == [row["term"] for row in themes]
    assert tab.page.query_selector("#chart-nps_trend .main-svg") is not None
    assert tab.errors == [], tab.errors
