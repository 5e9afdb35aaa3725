"""touchpoints.js end to end: a customer's page with the snippet, in headless Chromium,
sending to a live collector on another origin; what lands in `events` is checked."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import Site, Tab
from tests.live import LiveServer
from touchpoints.collect.consent import message_choices
from touchpoints.collect.tracker import script, snippet
from touchpoints.errors import InvalidInput
from touchpoints.privacy.keys import add_key

COLUMNS = (
    "message_id, type, event, name, anonymous_id, user_id, page_path, page_url, page_title, "
    "page_referrer, utm_source, utm_medium, utm_campaign, utm_term, utm_content, user_agent, "
    "locale, properties, traits, context"
)
UTM = (
    "utm_source=newsletter&utm_medium=email&utm_campaign=spring-sale"
    "&utm_term=shoes&utm_content=hero"
)
LOADED = "window.tp && window.tp.loaded === true"
FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def shop(server: LiveServer, require_consent: bool = False, **options: Any) -> str:
    """A synthetic shop page, taller than the window, with the snippet in its head."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Synthetic Shop</title>
<link rel="icon" href="data:,">
<style>
  body {{ margin: 0; font: 16px/1.4 sans-serif; }}
  .hero {{ padding: 40px; height: 3000px; }}
  #buy {{ position: absolute; left: 300px; top: 900px; width: 220px; height: 60px; }}
</style>
{snippet(server.url, server.write_key, require_consent, options=options)}
</head><body>
<main class="shop wide"><section class="hero intro big">
  <h1>Synthetic Shop</h1>
  <div class="card"><a class="more link extra" href="#more"><span>See   more</span></a></div>
  <input id="email" name="email" value="typed-by-the-visitor">
  <button id="buy" class="cta primary">  Buy
     now </button>
</section></main>
</body></html>"""


def events(server: LiveServer) -> list[dict[str, Any]]:
    """Every stored event, oldest first, with its JSON columns parsed."""
    table = server.warehouse.query(f"SELECT {COLUMNS} FROM events ORDER BY timestamp")
    rows = table.to_pylist()
    for row in rows:
        for column in ("properties", "traits", "context"):
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
    return rows


def wait_for(
    server: LiveServer,
    tab: Tab,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 15,
) -> list[dict[str, Any]]:
    """The events once `done(events)` holds; fails after `timeout` seconds. Waits in
    the browser, for Playwright's sync API handles the page's events (routes, console)
    only while it is called."""
    deadline = time.monotonic() + timeout
    while True:
        rows = events(server)
        if done(rows):
            return rows
        if time.monotonic() > deadline:
            summary = [(r["type"], r["event"]) for r in rows]
            raise AssertionError(f"timed out waiting for events; have {summary}")
        tab.page.wait_for_timeout(50)


def named(rows: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["event"] == event]


def has(event: str, n: int = 1) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda rows: len(named(rows, event)) >= n


def pages(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row["type"] == "page"]


def open_shop(tab: Tab, url: str) -> None:
    tab.page.goto(url)
    tab.page.wait_for_function(LOADED)


def sent(tab: Tab, server: LiveServer) -> list[str]:
    """The page's requests to the collector's API (not the script itself)."""
    return [url for url in tab.requests if url.startswith(server.url + "/v1/")]


def stored_ids(tab: Tab) -> dict[str, Any]:
    """What the page holds of the tracker: its cookie and its localStorage keys."""
    cookies = {c["name"]: c["value"] for c in tab.page.context.cookies()}
    local = tab.page.evaluate("() => Object.assign({}, window.localStorage)")
    return {"cookie": cookies.get("tp_aid"), "local": local}


# -- the script and the snippet ---------------------------------------------------------


def test_the_script_is_served_with_caching_headers(server: LiveServer) -> None:
    response = httpx.get(server.url + "/tp.js", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.content == script().body
    etag = response.headers["etag"]
    again = httpx.get(server.url + "/tp.js", headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    for stale in ('"0123"', "W/" + etag + "x"):
        other = httpx.get(server.url + "/tp.js", headers={"If-None-Match": stale}, timeout=30)
        assert other.status_code == 200


def test_the_script_is_es2017(node_modules: Path) -> None:
    """No build step: the shipped file itself must parse as ES2017 (acorn)."""
    check = (
        "require('acorn').parse(require('fs').readFileSync(process.argv[1], 'utf8'),"
        " {ecmaVersion: 2017, sourceType: 'script'})"
    )
    path = Path(__file__).resolve().parents[1] / "src/touchpoints/collect/tracker.js"
    done = subprocess.run(
        ["node", "-e", check, str(path)],
        cwd=node_modules.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_snippet_is_safe_html_and_checks_its_arguments() -> None:
    html = snippet("https://cdp.example.com/", "tpw_</script><b>", require_consent=True)
    assert html.count("</script>") == 1 and "<b>" not in html
    assert '"requireConsent": true' in html and '"https://cdp.example.com/tp.js"' in html
    with pytest.raises(InvalidInput, match="host"):
        snippet("cdp.example.com", "tpw_x")
    with pytest.raises(InvalidInput, match="flush"):
        snippet("https://cdp.example.com", "tpw_x", options={"flush": 5})


def test_the_readme_shows_the_snippet_as_written() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert snippet("https://cdp.example.com", "tpw_YOUR_WRITE_KEY", True) in readme


# -- in the browser ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_page_view_lands_with_utm_and_referrer(server: LiveServer, site: Site, tab: Tab) -> None:
    site.add("/shop.html", shop(server))
    start = site.add(
        "/start.html",
        '<!doctype html><title>Start</title><link rel="icon" href="data:,">'
        f'<a id="go" href="/shop.html?{UTM}">to the shop</a>',
    )
    tab.page.goto(start)
    tab.page.click("#go")
    tab.page.wait_for_function(LOADED)
    [view] = pages(wait_for(server, tab, lambda rows: bool(pages(rows))))
    assert view["page_path"] == "/shop.html" and view["page_title"] == "Synthetic Shop"
    assert view["page_url"] == f"{site.url}/shop.html?{UTM}"
    assert view["page_referrer"] == start
    assert (view["utm_source"], view["utm_medium"], view["utm_campaign"]) == (
        "newsletter",
        "email",
        "spring-sale",
    )
    assert (view["utm_term"], view["utm_content"]) == ("shoes", "hero")
    assert "Chrome" in view["user_agent"] and view["locale"]
    context = view["context"]
    assert context["library"]["name"] == "touchpoints.js"
    assert context["page"]["search"] == "?" + UTM
    assert view["properties"]["path"] == "/shop.html"
    # the anonymous id is the first-party cookie's, mirrored in localStorage
    held = stored_ids(tab)
    assert held["cookie"] == held["local"]["tp_aid"] == view["anonymous_id"]
    cookie = next(c for c in tab.page.context.cookies() if c["name"] == "tp_aid")
    assert cookie["sameSite"] == "Lax" and cookie["expires"] > time.time() + 360 * 86400
    assert tab.errors == []


@pytest.mark.slow
def test_clicks_land_with_selector_text_and_page_coordinates(
    server: LiveServer, site: Site, tab: Tab
) -> None:
    open_shop(tab, site.add("/shop.html", shop(server)))
    page = tab.page
    page.evaluate("window.scrollTo(0, 400)")
    box = page.evaluate(
        """() => {
        const r = document.querySelector('#buy').getBoundingClientRect();
        const root = document.documentElement;
        return {left: r.left + scrollX, right: r.right + scrollX, top: r.top + scrollY,
                bottom: r.bottom + scrollY, width: root.scrollWidth, height: root.scrollHeight};
        }"""
    )
    page.click("#buy")
    page.click("a.more span")
    page.click("#email")
    rows = wait_for(server, tab, has("Element Clicked", 3))
    buy, more, field = (row["properties"] for row in named(rows, "Element Clicked"))
    assert buy["selector"] == "button#buy" and buy["text"] == "Buy now"
    assert box["left"] <= buy["x"] <= box["right"] and box["top"] <= buy["y"] <= box["bottom"]
    assert isinstance(buy["x"], int) and isinstance(buy["y"], int)
    assert (buy["viewport_width"], buy["viewport_height"]) == (1280, 800)
    assert (buy["page_width"], buy["page_height"]) == (box["width"], box["height"])
    # the link, not the span inside it; up to four ancestors with their first classes
    assert more["selector"] == "main.shop.wide > section.hero.intro > div.card > a.more.link"
    assert more["text"] == "See more"
    # a form field: never what was typed in it
    assert field["selector"] == "input#email" and field["text"] == ""
    assert not any("typed-by-the-visitor" in json.dumps(row) for row in rows)
    assert {row["page_path"] for row in named(rows, "Element Clicked")} == {"/shop.html"}
    assert tab.errors == []


@pytest.mark.slow
def test_scrolling_to_the_bottom_reaches_each_depth_once(
    server: LiveServer, site: Site, tab: Tab
) -> None:
    open_shop(tab, site.add("/shop.html", shop(server)))
    page = tab.page
    height = page.evaluate("document.documentElement.scrollHeight")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    wait_for(server, tab, has("Scroll Depth Reached", 4))
    for y in (0, height, height // 2, height):  # back up and down again: nothing new
        page.evaluate(f"window.scrollTo(0, {y})")
        page.evaluate(FRAMES)
    page.evaluate("tp.track('Sentinel')")
    rows = wait_for(server, tab, has("Sentinel"))
    depths = [row["properties"] for row in named(rows, "Scroll Depth Reached")]
    assert sorted(d["depth"] for d in depths) == [25, 50, 75, 100]
    assert {d["page_height"] for d in depths} == {height}
    assert tab.errors == []


@pytest.mark.slow
def test_identify_sets_the_user_id_and_traits(server: LiveServer, site: Site, tab: Tab) -> None:
    url = site.add("/shop.html", shop(server))
    open_shop(tab, url)
    tab.page.evaluate("tp.identify('user-42', {plan: 'pro', logins: 3}); tp.track('Plan Viewed')")
    rows = wait_for(server, tab, has("Plan Viewed"))
    [who] = [row for row in rows if row["type"] == "identify"]
    assert who["user_id"] == "user-42" and who["traits"] == {"plan": "pro", "logins": 3}
    [seen] = named(rows, "Plan Viewed")
    assert seen["user_id"] == "user-42" and seen["anonymous_id"] == who["anonymous_id"]
    # the next page view knows the visitor too
    open_shop(tab, url)
    later = pages(wait_for(server, tab, lambda rows: len(pages(rows)) == 2))[1]
    assert later["user_id"] == "user-42" and later["anonymous_id"] == who["anonymous_id"]
    assert tab.errors == []


@pytest.mark.slow
def test_with_consent_required_nothing_is_sent_or_stored_before_consent(
    server: LiveServer, site: Site, tab: Tab
) -> None:
    url = site.add("/shop.html", shop(server, require_consent=True))
    open_shop(tab, url)
    page = tab.page
    page.click("#buy")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.evaluate(FRAMES)
    page.evaluate("() => tp.flush()")  # would send now whatever it were allowed to
    assert sent(tab, server) == []
    assert stored_ids(tab) == {"cookie": None, "local": {}}
    assert server.warehouse.count("events") == 0

    page.evaluate("tp.consent({analytics: true, advertising: false}, {policyVersion: '2026-01'})")
    rows = wait_for(
        server,
        tab,
        lambda rows: has("Consent Updated")(rows) and has("Scroll Depth Reached", 4)(rows),
    )
    [choice] = named(rows, "Consent Updated")
    assert message_choices(choice) == {"analytics": "granted", "advertising": "denied"}
    assert choice["properties"]["policy_version"] == "2026-01"
    assert len(pages(rows)) == 1 and len(named(rows, "Element Clicked")) == 1
    # every event held back is sent under the id stored now, with the choice attached
    held = stored_ids(tab)
    assert held["cookie"] and held["local"]["tp_aid"] == held["cookie"]
    assert {row["anonymous_id"] for row in rows} == {held["cookie"]}
    assert all(row["context"]["consent"]["purposes"]["analytics"] is True for row in rows)
    # the choice is remembered: the next page view is sent without asking again
    open_shop(tab, url)
    rows = wait_for(server, tab, lambda rows: len(pages(rows)) == 2)
    assert len(named(rows, "Consent Updated")) == 1
    assert tab.errors == []


@pytest.mark.slow
def test_a_refusal_is_recorded_and_nothing_else_is_sent(
    server: LiveServer, site: Site, tab: Tab
) -> None:
    open_shop(tab, site.add("/shop.html", shop(server, require_consent=True)))
    page = tab.page
    page.click("#buy")
    page.evaluate("tp.consent({analytics: false, advertising: false})")
    [refusal] = wait_for(server, tab, has("Consent Updated"))
    assert message_choices(refusal) == {"analytics": "denied", "advertising": "denied"}
    page.evaluate("tp.track('After Refusal'); tp.identify('user-9')")
    page.click("#buy")
    page.evaluate("() => tp.flush()")
    assert len(sent(tab, server)) == 1
    assert [row["event"] for row in events(server)] == ["Consent Updated"]
    held = stored_ids(tab)
    assert held["cookie"] is None and set(held["local"]) == {"tp_consent"}
    assert tab.errors == []


@pytest.mark.slow
def test_withdrawing_consent_is_recorded_and_forgets_the_visitor(
    server: LiveServer, site: Site, tab: Tab
) -> None:
    open_shop(tab, site.add("/shop.html", shop(server, require_consent=True)))
    page = tab.page
    page.evaluate("tp.identify('user-5'); tp.consent({analytics: true})")
    rows = wait_for(server, tab, lambda rows: len(rows) == 3)  # page, identify, consent
    visitor = stored_ids(tab)["cookie"]
    assert visitor and {row["anonymous_id"] for row in rows} == {visitor}
    page.evaluate("tp.consent({analytics: 'withdrawn'})")
    rows = wait_for(server, tab, has("Consent Updated", 2))
    withdrawal = named(rows, "Consent Updated")[1]
    assert message_choices(withdrawal) == {"analytics": "withdrawn"}
    assert (withdrawal["anonymous_id"], withdrawal["user_id"]) == (visitor, "user-5")
    held = stored_ids(tab)
    assert held["cookie"] is None and set(held["local"]) == {"tp_consent"}
    page.evaluate("tp.track('After Withdrawal')")
    page.evaluate("() => tp.flush()")
    assert len(events(server)) == 4 and len(sent(tab, server)) == 2
    assert tab.errors == []


@pytest.mark.slow
def test_a_pending_batch_leaves_by_beacon_when_the_page_is_hidden(
    server: LiveServer, site: Site, tab: Tab
) -> None:
    """A long flush interval keeps the batch pending; leaving the page sends it."""
    open_shop(tab, site.add("/shop.html", shop(server, flushInterval=60000)))
    page = tab.page
    # note each beacon where the next page of the site can read it (Playwright does not
    # report requests a page makes as it unloads)
    page.evaluate(
        """() => {
        const send = navigator.sendBeacon.bind(navigator);
        navigator.sendBeacon = (url, body) => {
            const ok = send(url, body);
            const seen = JSON.parse(sessionStorage.getItem('beacons') || '[]');
            sessionStorage.setItem('beacons', JSON.stringify(seen.concat([{url, ok, body}])));
            return ok;
        };
        }"""
    )
    page.evaluate("tp.track('Cart Viewed', {cart_id: 'c-1'})")
    assert sent(tab, server) == []
    page.goto(site.add("/elsewhere.html", "<!doctype html><title>Elsewhere</title>"))
    rows = wait_for(server, tab, has("Cart Viewed"))
    assert len(pages(rows)) == 1
    [beacon] = json.loads(page.evaluate("sessionStorage.getItem('beacons')"))
    assert beacon["url"] == server.url + "/v1/batch" and beacon["ok"] is True
    assert [m["type"] for m in json.loads(beacon["body"])["batch"]] == ["page", "track"]
    assert tab.errors == []


@pytest.mark.slow
def test_a_failed_batch_is_retried_and_stored_once(
    server: LiveServer, site: Site, tab: Tab
) -> None:
    """The first batch reaches the collector but its answer is lost, as when a connection
    drops: the tracker sends it again, and the collector keeps one copy."""
    bodies: list[dict[str, Any]] = []

    def flaky(route: Any) -> None:
        bodies.append(json.loads(route.request.post_data))
        if len(bodies) == 1:
            route.fetch()  # the collector stores the batch...
            route.abort()  # ...but the page hears nothing back
        else:
            route.continue_()

    tab.page.route(server.url + "/v1/batch", flaky)
    open_shop(tab, site.add("/shop.html", shop(server)))
    tab.page.evaluate("tp.track('Order Completed', {order_id: 'o-1', revenue: 25.5})")
    wait_for(server, tab, has("Order Completed"))

    def ids(body: dict[str, Any]) -> list[str]:
        return [message["messageId"] for message in body["batch"]]

    deadline = time.monotonic() + 15
    while ids(bodies[0]) not in [ids(body) for body in bodies[1:]]:
        assert time.monotonic() < deadline, "the failed batch was not sent again"
        tab.page.wait_for_timeout(50)
    tab.page.evaluate("tp.track('Sentinel')")  # sent after the retry was answered
    rows = wait_for(server, tab, has("Sentinel"))
    assert len(pages(rows)) == 1 and len(named(rows, "Order Completed")) == 1
    assert [e for e in tab.errors if "net::ERR_FAILED" not in e] == []


@pytest.mark.slow
def test_clicks_and_scrolls_on_a_site_appear_on_the_heat_map_page(
    server: LiveServer, site: Site, tab: Tab
) -> None:
    """From the tracker on a site to the dashboard: the heat map page counts the clicks
    and page views that reached each depth, as the events table holds them."""
    open_shop(tab, site.add("/shop.html", shop(server)))
    page = tab.page
    for _ in range(3):
        page.click("#buy")
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    wait_for(server, tab, lambda rows: len(named(rows, "Element Clicked")) == 3
                    and len(named(rows, "Scroll Depth Reached")) == 4)  # fmt: skip
    today = datetime.now(UTC).date()
    days = f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"
    _, reader = add_key(server.warehouse, "analyst", "read")
    page.goto(f"{server.url}/dashboard/signin")
    page.fill("input[name=key]", reader)
    page.click("button[type=submit]")
    page.goto(f"{server.url}/dashboard/heatmaps?{days}&path=/shop.html")
    page.wait_for_selector("body[data-ready=yes]")
    assert page.get_attribute("[data-tile=clicks]", "data-value") == "3"
    reached = page.query_selector_all(
        "table[data-table=scroll_depth] td[data-column=views_reaching]"
    )
    assert [cell.get_attribute("data-value") for cell in reached] == ["1", "1", "1", "1"]
    assert page.query_selector_all(".plot .main-svg")
    assert tab.errors == []
