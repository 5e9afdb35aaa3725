"""Fuzzing the collector and API over real HTTP: no input may produce a 5xx.

Two sources of input: schemathesis, from the app's own OpenAPI schema, and hypothesis
strategies of arbitrary JSON, bytes, encodings and content types aimed at every
collector path.
"""

from __future__ import annotations

import base64
import gzip

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.live import LiveServer, start
from touchpoints.api.collect_asgi import PATHS
from touchpoints.warehouse import connect

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("fuzz") / "touchpoints.duckdb"
    warehouse = connect(f"duckdb:///{path}")
    server = start(warehouse)
    yield server
    server.stop()
    warehouse.close()


def test_schema_driven_requests_never_get_5xx(live: LiveServer) -> None:
    """Every operation of the OpenAPI schema, with cases schemathesis generates from it
    (the schemathesis pytest plugin itself does not load under pytest 9, so its case
    strategies are driven by hypothesis directly)."""
    api = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 10
    basic = base64.b64encode(f"{live.write_key}:".encode()).decode()
    collector = set(PATHS) | {"/v1/projects/{write_key}/settings"}
    for operation in operations:
        # Collector paths take the write key; everything else runs as admin (the control
        # token), so the handlers themselves meet the fuzzed parameters, not just auth.
        auth = f"Basic {basic}" if operation.path in collector else "Bearer test-admin-token"
        _checker(operation, auth, live.url)()


def _checker(operation, auth: str, base_url: str):  # type: ignore[no-untyped-def]
    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:  # type: ignore[no-untyped-def]
        case.headers = {**(case.headers or {}), "Authorization": auth}
        response = case.call(base_url=base_url)
        assert response.status_code < 500, (case.path, response.text)
        if response.status_code >= 400:
            body = response.json()
            assert body["code"] and body["message"], body

    return check


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
message_keys = st.sampled_from(
    [
        "type",
        "event",
        "userId",
        "anonymousId",
        "messageId",
        "timestamp",
        "sentAt",
        "properties",
        "context",
        "traits",
        "previousId",
        "groupId",
        "name",
        "integrations",
        "batch",
    ]
)
messages = st.dictionaries(message_keys, json_values, max_size=8)


@given(
    path=st.sampled_from(sorted(PATHS)),
    body=messages | json_values,
    batch=st.lists(messages, max_size=5),
    as_batch=st.booleans(),
    encoding=st.sampled_from([None, "gzip", "deflate", "br", "identity"]),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "text/html", "application/json; charset=utf-8"]
    ),
)
@FUZZ
def test_random_json_never_gets_5xx(
    live: LiveServer,
    path: str,
    body: object,
    batch: list,
    as_batch: bool,
    encoding: str | None,
    content_type: str,
) -> None:
    document = {"batch": batch, "writeKey": live.write_key} if as_batch else body
    if isinstance(document, dict) and not as_batch:
        document = {**document, "writeKey": live.write_key}
    raw = orjson.dumps(document)
    headers = {"Content-Type": content_type}
    if encoding == "gzip":
        raw = gzip.compress(raw)
    if encoding:
        headers["Content-Encoding"] = encoding
    response = httpx.post(live.url + path, content=raw, headers=headers, timeout=30)
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 400, 401, 413, 429), response.text
    if response.status_code != 200:
        assert response.json()["message"]


@given(
    path=st.sampled_from(sorted(PATHS)),
    raw=st.binary(max_size=300),
    encoding=st.sampled_from([None, "gzip"]),
)
@FUZZ
def test_random_bytes_never_get_5xx(
    live: LiveServer, path: str, raw: bytes, encoding: str | None
) -> None:
    headers = {"Content-Encoding": encoding} if encoding else {}
    user = base64.b64encode(f"{live.write_key}:".encode()).decode()
    headers["Authorization"] = f"Basic {user}"
    response = httpx.post(live.url + path, content=raw, headers=headers, timeout=30)
    assert response.status_code in (200, 400, 401, 413), response.text


def test_report_parameters_never_get_5xx(live: LiveServer) -> None:
    """Every report with parameters drawn from its own option names and from odd text:
    the parameter readers answer 4xx with a field, never 5xx (on a small real log)."""
    from tests.insights_data import event, write_events
    from touchpoints.models.reports import REPORTS

    write_events(live.warehouse, [
        event("u1", 0, path="/"), event("u1", 20, "Product Viewed",
                                        properties={"product_id": "P1"}),
        event("u1", 60, "Order Completed", revenue=10.0), event("u2", 90, path="/shoes"),
    ])  # fmt: skip
    odd = st.sampled_from(["", "0", "-1", "7d", "1h", "day", "week", "true", "2026-03-02",
                           "2026-02-30", "page:/", "Order Completed", "a=b", "x" * 300,
                           "{\"did\": \"x\"}", "%00", "é"])  # fmt: skip
    for name, report in REPORTS.items():
        keys = st.sampled_from([*report.options, "from", "to", "where", "bogus"])
        _report_checker(live.url, name, st.lists(st.tuples(keys, odd | st.text(max_size=12)),
                                                 max_size=4))()  # fmt: skip


def _report_checker(base_url: str, name: str, params: st.SearchStrategy):  # type: ignore[no-untyped-def]
    @given(params=params)
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    def check(params: list[tuple[str, str]]) -> None:
        response = httpx.get(
            f"{base_url}/v1/insights/{name}", params=params,
            headers={"Authorization": "Bearer test-admin-token"}, timeout=60,
        )  # fmt: skip
        assert response.status_code < 500, (name, params, response.text)
        if response.status_code >= 400:
            assert response.json()["message"], response.text

    return check
