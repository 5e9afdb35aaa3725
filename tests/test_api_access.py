"""Keys and roles on every endpoint of the API, found from the app's routes (so a new
endpoint is covered without touching this file), and rate limits per key, over real
HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.live import LiveServer, start
from touchpoints.api.app import create_app
from touchpoints.api.ratelimit import ApiSettings
from touchpoints.privacy.audit import export_audit
from touchpoints.privacy.keys import add_key, revoke_key
from touchpoints.warehouse import Warehouse

#: Endpoints anyone may call: health, the tracker script, the analytics.js settings (by
#: write key in the path), the API description, the links inside emails. Every other
#: endpoint needs a read or an admin key.
PUBLIC = {
    "/health",
    "/tp.js",
    "/v1/projects/{write_key}/settings",
    # a survey's page, form and answers: by survey id, like a web form
    "/v1/surveys/{survey_id}/page",
    "/v1/surveys/{survey_id}/form",
    "/v1/surveys/{survey_id}/responses",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    # the links inside emails: the signed token in the link is their credential
    "/v1/email/unsubscribe",
    "/v1/email/open",
    "/v1/email/click",
}
#: The dashboard signs in with a cookie holding a key (tests/test_dashboard.py), and `/`
#: sends a browser there.
DASHBOARD = "/dashboard"
#: Sample values for path parameters, by name; other names get "x".
SAMPLES = {
    "identifier": "email:nobody@example.com",
    "key_id": "key_000000000000",
    "source_id": "src_nothing",
    "name": "no-such-thing",
    "report": "traffic",
}


def needs_admin(method: str, path: str) -> bool:
    """Admin keys: operations (/v1/admin), privacy requests (/v1/privacy), exports of
    personal data (an audience's hashed identifiers) and every write; read keys:
    everything else that is not public."""
    return (
        path.startswith(("/v1/admin", "/v1/privacy"))
        or path.endswith("/export")
        or method not in ("GET", "HEAD")
    )


def routes(server: LiveServer) -> Iterator[tuple[str, str]]:
    """(method, path) of every HTTP route of the FastAPI app, included routers too."""
    app = create_app(server.services).app
    try:  # FastAPI >= 0.160 keeps included routers as one route each
        from fastapi.routing import iter_route_contexts

        found: Any = list(iter_route_contexts(app.routes))
    except ImportError:
        found = app.routes
    for route in found:
        if route.path == "/" or route.path.startswith(DASHBOARD):
            continue
        for method in sorted(set(route.methods or ()) - {"HEAD"}):
            yield method, route.path


def example(schema: dict[str, Any], spec: dict[str, Any]) -> Any:
    """A small value that fits a JSON schema (for request bodies)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return example(spec["components"]["schemas"][name], spec)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return example(options[0], spec) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example(props[k], spec) for k in schema.get("required", []) if k in props}
    return {"integer": 1, "number": 1, "boolean": False, "array": []}.get(kind, "x")


_SPECS: dict[str, dict[str, Any]] = {}


def request(server: LiveServer, method: str, path: str, key: str | None) -> httpx.Response:
    """Call `method path` with valid path parameters and body, so that only the key
    decides the answer."""
    url = re.sub(r"{(\w+)(?::\w+)?}", lambda m: SAMPLES.get(m.group(1), "x"), path)
    if server.url not in _SPECS:
        _SPECS[server.url] = httpx.get(server.url + "/openapi.json", timeout=30).json()
    spec = _SPECS[server.url]
    operation = spec["paths"].get(re.sub(r":\w+}", "}", path), {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    body = example(content["application/json"]["schema"], spec) if content else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, server.url + url, json=body, headers=headers, timeout=60)


@pytest.fixture
def keys(server: LiveServer) -> dict[str, str]:
    warehouse = server.warehouse
    _, reader = add_key(warehouse, "analyst", "read")
    _, admin = add_key(warehouse, "ops", "admin")
    old_reader_key, old_reader = add_key(warehouse, "old analyst", "read")
    old_admin_key, old_admin = add_key(warehouse, "old ops", "admin")
    revoke_key(warehouse, old_reader_key.key_id)
    revoke_key(warehouse, old_admin_key.key_id)
    return {
        "read": reader,
        "admin": admin,
        "revoked read": old_reader,
        "revoked admin": old_admin,
        "write": server.write_key,
    }


def test_every_endpoint_answers_each_kind_of_key_by_its_role(
    server: LiveServer, keys: dict[str, str]
) -> None:
    found = [(m, p) for m, p in routes(server) if p not in PUBLIC]
    # the enumeration sees routes of every router, including ones added later
    for known in (
        ("GET", "/v1/profiles/{identifier:path}"),
        ("GET", "/v1/admin/audit"),
        ("POST", "/v1/admin/keys/{key_id}/revoke"),
        ("GET", "/v1/insights/{report}"),
        ("POST", "/v1/consents"),
    ):
        assert known in found
    assert len(found) >= 15
    wrong: list[str] = []

    def expect(method: str, path: str, who: str, allowed: set[int] | None, denied: bool) -> None:
        status = request(server, method, path, keys.get(who)).status_code
        ok = status in allowed if allowed is not None else status not in (401, 403, 429)
        if not ok or (denied and status < 400):
            wrong.append(f"{method} {path} with {who} key: {status}")

    for method, path in found:
        admin_only = needs_admin(method, path)
        expect(method, path, "none", {401}, True)
        expect(method, path, "write", {401, 403}, True)  # a write key can never read
        expect(method, path, "revoked read", {401}, True)
        expect(method, path, "revoked admin", {401}, True)
        expect(method, path, "read", {403} if admin_only else None, admin_only)
    # the refusals above come from the keys, not from malformed requests: admin passes
    for method, path in found:
        expect(method, path, "admin", None, False)
    assert not wrong, "\n".join(wrong)


def test_a_write_key_cannot_read_in_any_form(server: LiveServer) -> None:
    path = server.url + "/v1/insights"
    for auth in (httpx.BasicAuth(server.write_key, ""), httpx.BasicAuth(server.write_key, "x")):
        assert httpx.get(path, auth=auth, timeout=30).status_code == 403
    bearer = {"Authorization": f"Bearer {server.write_key}"}
    assert httpx.get(path, headers=bearer, timeout=30).status_code == 403
    assert httpx.get(path, params={"writeKey": server.write_key}, timeout=30).status_code == 401


@pytest.fixture
def limited(duck: Warehouse) -> Iterator[LiveServer]:
    """A live server allowing each key one request every two seconds, bursts of two."""
    live = start(duck, api_settings=ApiSettings(rate_limit=0.5, burst=2))
    yield live
    live.stop()


def test_read_and_admin_requests_are_limited_per_key(limited: LiveServer) -> None:
    warehouse = limited.warehouse
    _, reader = add_key(warehouse, "analyst", "read")
    _, other = add_key(warehouse, "other analyst", "read")
    _, admin = add_key(warehouse, "ops", "admin")

    def get(path: str, key: str) -> httpx.Response:
        return httpx.get(limited.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    assert [get("/v1/insights", reader).status_code for _ in range(2)] == [200, 200]
    refused = get("/v1/insights", reader)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "2"  # one token at 0.5 a second, whole seconds
    body = refused.json()
    assert body["code"] == "rate_limited" and "requests a second" in body["message"]
    assert body["retry_after"] == 2
    # the bucket is the key's, whatever the endpoint; a refused profile read is not audited
    assert get("/v1/profiles/email:ana@example.com", reader).status_code == 429
    assert export_audit(warehouse, action="profile.read") == []
    # other keys have their own buckets; the control token (the CLI) is not limited
    assert get("/v1/insights", other).status_code == 200
    assert [get("/v1/admin/keys", admin).status_code for _ in range(3)] == [200, 200, 429]
    assert all(get("/v1/admin/keys", "test-admin-token").status_code == 200 for _ in range(5))
    # the collector keeps its own limit per write key
    sent = httpx.post(
        limited.url + "/v1/track",
        json={"writeKey": limited.write_key, "userId": "u-1", "event": "Signed Up"},
        timeout=30,
    )
    assert sent.status_code == 200
    # after Retry-After the key may read again
    time.sleep(2.05)
    assert get("/v1/insights", reader).status_code == 200
    assert get("/v1/insights", reader).status_code == 429


def test_default_limits_are_generous_but_finite(server: LiveServer) -> None:
    settings = server.services.limiter.settings
    # the test server runs no activation loop (tests/live.py); the limits are the defaults
    assert settings == ApiSettings(activation_every_s=None)
    assert settings.rate_limit == 50 and settings.burst == 100
    _, reader = add_key(server.warehouse, "analyst", "read")
    headers = {"Authorization": f"Bearer {reader}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        began = time.monotonic()
        statuses = [client.get("/v1/insights").status_code for _ in range(250)]
        elapsed = time.monotonic() - began
    assert set(statuses) <= {200, 429}
    assert statuses[:100] == [200] * 100  # a burst of 100 passes
    # then no more than 50 a second
    assert statuses.count(200) <= 100 + 50 * elapsed + 1
