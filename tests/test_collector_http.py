"""The collector over real HTTP on 127.0.0.1: auth, formats, limits, errors."""

from __future__ import annotations

import base64
import gzip

import httpx
import orjson
import pytest

from tests.live import LiveServer, start
from touchpoints.collect.collector import CollectorSettings
from touchpoints.collect.spec import Limits


def post(
    server: LiveServer,
    path: str,
    body: object,
    *,
    auth: str | None = "body",
    headers: dict | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    headers = dict(headers or {})
    if auth == "body" and isinstance(body, dict):
        body = {**body, "writeKey": server.write_key}
    elif auth == "basic":
        token = base64.b64encode(f"{server.write_key}:".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif auth == "bearer":
        headers["Authorization"] = f"Bearer {server.write_key}"
    content = raw if raw is not None else orjson.dumps(body)
    headers.setdefault("Content-Type", "application/json")
    return httpx.post(server.url + path, content=content, headers=headers, timeout=30)


def count(server: LiveServer, table: str = "events") -> int:
    return server.warehouse.count(table)


def track(i: int = 0, **extra: object) -> dict:
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"u{i}",
        "messageId": f"m-{i}",
        **extra,
    }


@pytest.mark.parametrize("auth", ["body", "basic", "bearer"])
def test_every_way_of_sending_the_write_key_works(server: LiveServer, auth: str) -> None:
    response = post(server, "/v1/track", track(), auth=auth)
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert count(server) == 1


@pytest.mark.parametrize(
    ("auth", "headers"),
    [
        (None, {}),
        (None, {"Authorization": "Basic " + base64.b64encode(b"tpw_nope:").decode()}),
        (None, {"Authorization": "Basic !!!"}),
    ],
)
def test_missing_or_unknown_keys_get_401(
    server: LiveServer, auth: str | None, headers: dict
) -> None:
    response = post(server, "/v1/track", track(), auth=auth, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "unauthorized" and body["message"]
    assert count(server) == 0


def test_all_kinds_and_short_paths_land(server: LiveServer) -> None:
    calls = {
        "/v1/track": {"event": "E", "userId": "u"},
        "/v1/page": {"name": "Home", "anonymousId": "a"},
        "/v1/screen": {"name": "Home", "anonymousId": "a"},
        "/v1/identify": {"userId": "u", "traits": {"email": "a@example.com"}},
        "/v1/group": {"userId": "u", "groupId": "g"},
        "/v1/alias": {"userId": "u", "previousId": "a"},
        "/v1/t": {"type": "track", "event": "E", "anonymousId": "a"},
        "/v1/p": {"type": "page", "anonymousId": "a"},
        "/v1/s": {"type": "screen", "anonymousId": "a"},
        "/v1/i": {"type": "identify", "anonymousId": "a"},
        "/v1/g": {"type": "group", "anonymousId": "a", "groupId": "g"},
        "/v1/a": {"type": "alias", "userId": "u", "previousId": "a"},
    }
    for path, body in calls.items():
        response = post(server, path, body, headers={"Content-Type": "text/plain"})
        assert response.status_code == 200, (path, response.text)
    batch = post(server, "/v1/b", {"batch": [track(1), track(2)]})
    imported = post(server, "/v1/import", {"batch": [track(3)]})
    assert batch.status_code == imported.status_code == 200
    types = server.warehouse.query("SELECT type, count(*) AS n FROM events GROUP BY type")
    assert dict(zip(*types.to_pydict().values(), strict=True)) == {
        "track": 5,
        "page": 2,
        "screen": 2,
        "identify": 2,
        "group": 2,
        "alias": 2,
    }


def test_a_retried_message_id_is_stored_once(server: LiveServer) -> None:
    for _ in range(3):
        assert (
            post(server, "/v1/batch", {"batch": [track(1), track(2), track(1)]}).status_code == 200
        )
    assert post(server, "/v1/track", track(2)).status_code == 200
    assert count(server) == 2


def test_gzip_bodies_are_read(server: LiveServer) -> None:
    body = gzip.compress(
        orjson.dumps({"batch": [track(i) for i in range(50)], "writeKey": server.write_key})
    )
    response = post(server, "/v1/batch", None, raw=body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert count(server) == 50


def test_a_gzip_bomb_is_refused_without_inflating_it(server: LiveServer) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (200 * 1024 * 1024) + b"]}", 9)
    assert len(bomb) < 300_000
    response = post(
        server, "/v1/batch", None, raw=bomb, auth="basic", headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_malformed_bodies_get_400_with_the_reason(server: LiveServer) -> None:
    cases = [
        (b"{not json", "application/json", "not valid JSON"),
        (b"", "application/json", "empty"),
        (b"[1, 2]", "application/json", "JSON object"),
        (b'{"batch": 5}', "application/json", "batch must be a list"),
        (b'{"a": 1}', "application/xml", "Content-Type"),
    ]
    for raw, content_type, words in cases:
        response = post(
            server, "/v1/batch", None, raw=raw, auth="basic", headers={"Content-Type": content_type}
        )
        assert response.status_code == 400, raw
        assert words in response.json()["message"], (raw, response.json())
    bad_gzip = post(
        server,
        "/v1/track",
        None,
        raw=b"not gzip",
        auth="basic",
        headers={"Content-Encoding": "gzip"},
    )
    assert bad_gzip.status_code == 400
    assert count(server) == 0


def test_a_single_invalid_message_gets_400_with_the_field(server: LiveServer) -> None:
    response = post(server, "/v1/track", {"event": "E"})
    assert response.status_code == 400
    assert response.json()["field"] == "userId"
    response = post(server, "/v1/alias", {"userId": "u"})
    assert response.json()["field"] == "previousId"
    assert count(server) == 0 and count(server, "rejected_events") == 0


def test_a_partly_invalid_batch_keeps_the_good_and_records_the_bad(server: LiveServer) -> None:
    batch = [track(0), {"type": "track", "userId": "u"}, track(2), {"type": "alias", "userId": "u"}]
    response = post(server, "/v1/batch", {"batch": batch})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [e["field"] for e in body["errors"]] == ["batch[1].event", "batch[3].previousId"]
    rejected = server.warehouse.query(
        "SELECT field, reason, payload FROM rejected_events ORDER BY field"
    ).to_pylist()
    assert [r["field"] for r in rejected] == ["batch[1].event", "batch[3].previousId"]
    assert orjson.loads(rejected[0]["payload"]) == batch[1]
    assert count(server) == 2


def test_a_wholly_invalid_batch_gets_400_and_changes_nothing(server: LiveServer) -> None:
    response = post(server, "/v1/batch", {"batch": [{"type": "track"}, {"type": "x"}]})
    assert response.status_code == 400
    assert len(response.json()["errors"]) == 2
    assert count(server) == 0 and count(server, "rejected_events") == 0


def test_size_limits_give_413(server: LiveServer) -> None:
    too_many = post(server, "/v1/batch", {"batch": [track(i) for i in range(2501)]})
    assert too_many.status_code == 413
    big_batch = post(
        server,
        "/v1/batch",
        {"batch": [track(i, properties={"pad": "x" * 20_000}) for i in range(30)]},
    )
    assert big_batch.status_code == 413
    big_event = post(server, "/v1/track", track(1, properties={"pad": "x" * 33_000}))
    assert big_event.status_code == 413
    assert count(server) == 0
    within = post(
        server, "/v1/batch", {"batch": [track(1, properties={"pad": "x" * 33_000}), track(2)]}
    )
    assert within.status_code == 200 and within.json()["rejected"] == 1
    assert Limits.BATCH_EVENTS == 2500


def test_too_fast_gets_429_with_retry_after(duck) -> None:  # type: ignore[no-untyped-def]
    # the bucket holds at least one full batch (2,500 events), refilled at 10 a second
    live = start(duck, CollectorSettings(rate_limit=10, burst=20))
    try:
        first = post(live, "/v1/batch", {"batch": [track(i) for i in range(2500)]})
        second = post(live, "/v1/batch", {"batch": [track(i) for i in range(2500, 2600)]})
        live.services.writer.flush()
    finally:
        live.stop()
    assert first.status_code == 200
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 9  # 100 events at 10 a second
    assert second.json()["code"] == "rate_limited"
    assert duck.count("events") == 2500


def test_cors_preflight_allows_browsers(server: LiveServer) -> None:
    response = httpx.options(
        server.url + "/v1/t",
        headers={
            "Origin": "https://shop.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://shop.example.com"
    simple = post(
        server,
        "/v1/t",
        {"type": "track", "event": "E", "anonymousId": "a"},
        headers={"Origin": "https://shop.example.com", "Content-Type": "text/plain"},
    )
    assert simple.headers["access-control-allow-origin"] == "https://shop.example.com"


def test_settings_for_analytics_js(server: LiveServer) -> None:
    response = httpx.get(f"{server.url}/v1/projects/{server.write_key}/settings")
    assert response.status_code == 200
    segment = response.json()["integrations"]["Segment.io"]
    assert segment["apiKey"] == server.write_key
    assert segment["apiHost"] == server.url.removeprefix("http://") + "/v1"
    assert httpx.get(f"{server.url}/v1/projects/tpw_unknown/settings").status_code == 404


def test_health_docs_and_unknown_paths(server: LiveServer) -> None:
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    assert httpx.get(server.url + "/docs").status_code == 200
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/track", "/v1/batch", "/v1/identify", "/v1/alias"} <= set(spec["paths"])
    missing = httpx.post(server.url + "/v1/nothing", content=b"{}")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong_method = httpx.get(server.url + "/v1/track")
    assert wrong_method.status_code == 405 and wrong_method.json()["message"]


def test_admin_needs_the_control_token(server: LiveServer) -> None:
    sql = {"sql": "SELECT count(*) AS n FROM events"}
    assert httpx.post(server.url + "/v1/admin/sql", json=sql).status_code == 401
    as_write_key = httpx.post(
        server.url + "/v1/admin/sql",
        json=sql,
        headers={"Authorization": f"Bearer {server.write_key}"},
    )
    assert as_write_key.status_code == 403
    ok = httpx.post(
        server.url + "/v1/admin/sql", json=sql, headers={"Authorization": "Bearer test-admin-token"}
    )
    assert ok.json()["rows"] == [{"n": 0}]
