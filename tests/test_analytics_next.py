"""analytics.js itself (the npm package @segment/analytics-next, bundled by esbuild) in
headless Chromium, pointed at a live collector by its settings alone: its page, track
and identify calls each land in `events` exactly once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser import JS_DIR, Site, Tab
from tests.live import LiveServer
from tests.test_tracker_browser import named, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def analytics_js(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """tests/js/analytics_entry.js bundled into one IIFE that sets window.AnalyticsBrowser
    (dynamic imports inlined, so nothing is fetched from Segment's CDN)."""
    out = tmp_path_factory.mktemp("analytics-next") / "analytics.js"
    done = subprocess.run(
        [
            str(node_modules / ".bin" / "esbuild"),
            str(JS_DIR / "analytics_entry.js"),
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--target=es2017",
            "--define:process.env.NODE_ENV='production'",
            f"--outfile={out}",
            "--log-level=warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def settings(server: LiveServer, how: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two arguments of AnalyticsBrowser.load for each way of pointing it at us."""
    api = {"Segment.io": {"apiHost": server.url.removeprefix("http://") + "/v1",
                          "protocol": "http"}}  # fmt: skip
    if how == "apiHost only":  # settings given inline: Segment's CDN is never asked
        inline = {"integrations": {"Segment.io": {"apiKey": server.write_key}},
                  "metrics": {"sampleRate": 0}}  # fmt: skip
        return {"writeKey": server.write_key, "cdnSettings": inline}, {"integrations": api}
    # as the README shows it: the settings from our GET /v1/projects/{writeKey}/settings
    return {"writeKey": server.write_key, "cdnURL": server.url}, {"integrations": api}


@pytest.mark.parametrize("how", ["apiHost only", "settings from the collector"])
def test_analytics_next_page_track_identify_land_once_each(
    server: LiveServer, site: Site, tab: Tab, analytics_js: bytes, how: str
) -> None:
    site.add("/analytics.js", analytics_js, "application/javascript; charset=utf-8")
    load, options = settings(server, how)
    url = site.add(
        "/post.html",
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Synthetic Blog Post</title>
<script src="/analytics.js"></script>
<script>
  window.analytics = AnalyticsBrowser.load({json.dumps(load)}, {json.dumps(options)});
  analytics.page();
  analytics.track("Article Read", {{article_id: "a-1", words: 800}});
  analytics.identify("reader-1", {{plan: "free"}});
</script>
</head><body><h1>Synthetic blog post</h1></body></html>""",
    )
    tab.page.goto(url)
    wait_for(server, tab, lambda rows: len(rows) >= 3)
    tab.page.evaluate("analytics.track('Sentinel')")  # sent after the three calls
    rows = wait_for(server, tab, lambda rows: bool(named(rows, "Sentinel")))
    kinds = sorted((row["type"], row["event"]) for row in rows if row["event"] != "Sentinel")
    assert kinds == [("identify", None), ("page", None), ("track", "Article Read")]
    by_type = {row["type"]: row for row in rows if row["event"] != "Sentinel"}
    assert by_type["page"]["page_path"] == "/post.html"
    assert by_type["page"]["page_title"] == "Synthetic Blog Post"
    assert by_type["track"]["properties"] == {"article_id": "a-1", "words": 800}
    assert by_type["identify"]["user_id"] == "reader-1"
    assert by_type["identify"]["traits"] == {"plan": "free"}
    assert len({row["anonymous_id"] for row in rows}) == 1
    assert by_type["track"]["context"]["library"]["name"] == "analytics.js"
    # nothing went anywhere but the site and the collector; settings only when asked for
    assert any("/settings" in u for u in tab.requests) == (how != "apiHost only")
    assert all(u.startswith((site.url, server.url)) for u in tab.requests), tab.requests
    assert tab.errors == []
