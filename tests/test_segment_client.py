"""The official segment-analytics-python client, with only its host changed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from segment.analytics import Client

from tests.live import LiveServer


@pytest.mark.parametrize("gzip", [False, True])
def test_official_python_client_lands_each_call_once(server: LiveServer, gzip: bool) -> None:
    errors: list[Exception] = []
    client = Client(
        write_key=server.write_key,
        host=server.url,
        gzip=gzip,
        on_error=lambda error, _batch: errors.append(error),
        max_retries=2,
    )
    client.track(
        user_id="user-1",
        event="Order Completed",
        properties={"order_id": "o-1", "revenue": 25.5, "currency": "USD"},
        context={"campaign": {"source": "newsletter", "medium": "email"}},
        message_id="py-track-1",
    )
    client.identify(
        user_id="user-1", traits={"email": "user1@example.com"}, message_id="py-identify-1"
    )
    client.page(
        user_id="user-1",
        name="Home",
        properties={"url": "https://example.com/"},
        message_id="py-page-1",
        timestamp=datetime(2026, 5, 1, 9, tzinfo=UTC),
    )
    client.alias(previous_id="anon-1", user_id="user-1", message_id="py-alias-1")
    # a retry of the same call (same messageId) must not be stored again
    client.track(user_id="user-1", event="Order Completed", message_id="py-track-1")
    client.flush()
    client.shutdown()
    assert errors == []
    rows = server.warehouse.query(
        "SELECT message_id, type, event, user_id, previous_id, revenue, utm_source, "
        "page_url, timestamp FROM events ORDER BY message_id"
    ).to_pylist()
    assert [r["message_id"] for r in rows] == [
        "py-alias-1",
        "py-identify-1",
        "py-page-1",
        "py-track-1",
    ]
    by_id = {r["message_id"]: r for r in rows}
    assert by_id["py-track-1"]["revenue"] == 25.5
    assert by_id["py-track-1"]["utm_source"] == "newsletter"
    assert by_id["py-alias-1"]["previous_id"] == "anon-1"
    assert by_id["py-page-1"]["page_url"] == "https://example.com/"
    # the page's timestamp was corrected by (sentAt - now), which is well under a minute
    skew = abs(
        (by_id["py-page-1"]["timestamp"] - datetime(2026, 5, 1, 9, tzinfo=UTC)).total_seconds()
    )
    assert skew < 60


def test_client_errors_are_readable_by_the_client(server: LiveServer) -> None:
    errors: list[Exception] = []
    client = Client(
        write_key="tpw_wrong",
        host=server.url,
        max_retries=0,
        on_error=lambda error, _batch: errors.append(error),
    )
    client.track(user_id="u", event="E")
    client.shutdown()
    assert errors, "the client should report the 401"
    assert getattr(errors[0], "status", None) == 401
    assert "write key" in str(errors[0])
