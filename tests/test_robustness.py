"""Failures that must not take the collector or its write path down."""

from __future__ import annotations

import json
import os
from concurrent.futures import Future
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import duckdb_url
from tests.live import LiveServer
from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.errors import InvalidInput, WarehouseError
from touchpoints.warehouse import Warehouse, connect
from touchpoints.warehouse.ownership import running_server, server_file
from touchpoints.warehouse.spool import SpoolEventWriter, _settle
from touchpoints.warehouse.writer import spool_dir


def _rows(n: int, start: int = 0) -> list[dict]:
    envelope = Envelope("src_r", "web", now_us())
    return [
        normalize({"type": "track", "event": "E", "userId": "u", "messageId": f"r{i}"}, envelope)
        for i in range(start, start + n)
    ]


def test_a_cancelled_request_does_not_stop_the_writer(duck: Warehouse) -> None:
    cancelled: Future = Future()
    assert cancelled.cancel()
    _settle(cancelled, result=None)  # must not raise
    writer = SpoolEventWriter(duck, spool_dir(duck))
    futures = [writer.submit(_rows(1, i)) for i in range(50)]
    for future in futures[::2]:
        future.cancel()
    assert writer.write(_rows(1, 100)).accepted == 1  # the writer is still alive
    writer.close()
    # cancelled or not, what reached the spool was stored: never an event half-written
    assert 26 <= duck.count("events") <= 51


def test_a_segment_that_cannot_load_is_set_aside(tmp_path: Path) -> None:
    url = duckdb_url(tmp_path / "touchpoints.duckdb")
    connect(url).close()
    spool = tmp_path / "touchpoints.duckdb.spool"
    spool.mkdir(exist_ok=True)
    (spool / "0000000001.00000000.events.json").write_text('[{"message_id": ')
    warehouse = connect(url)  # recovery fails, logs, and the warehouse still opens
    writer = SpoolEventWriter(warehouse, spool)  # attempt 1, at start: logged
    for _ in range(2):  # attempts 2 and 3; after the third the files are moved aside
        with pytest.raises(WarehouseError, match="could not load"):
            writer.flush()
    assert (spool / "failed" / "0000000001.00000000.events.json").exists()
    writer.write(_rows(3))
    writer.flush()
    writer.close()
    assert warehouse.count("events") == 3


def test_values_json_cannot_hold_are_refused(duck: Warehouse) -> None:
    writer = SpoolEventWriter(duck, spool_dir(duck))
    deep: object = []
    for _ in range(300):
        deep = [deep]
    row = {**_rows(1)[0], "properties": {"deep": deep}}
    with pytest.raises(InvalidInput):
        writer.submit([row])
    writer.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"batch": [{"type": [], "userId": "u"}]}, 400),
        ({"batch": [{"type": {}, "userId": "u"}]}, 400),
        ({"batch": [{"type": "page", "userId": "u", "properties": {"url": "http://[x"}}]}, 200),
        (
            {
                "batch": [{"type": "track", "event": "E", "userId": "u"}],
                "context": {"pad": "x" * 40_000},
            },
            400,
        ),
    ],
)
def test_odd_messages_get_an_answer_not_a_crash(
    server: LiveServer, body: dict, status: int
) -> None:
    raw = orjson.dumps({**body, "writeKey": server.write_key})
    response = httpx.post(
        server.url + "/v1/batch", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (status, 413), response.text
    assert response.status_code == 200 or response.json()["message"]


def test_json_nested_deeper_than_it_can_be_stored_gets_400(server: LiveServer) -> None:
    deep = "[" * 300 + "]" * 300  # parses (orjson reads 1024 levels) but cannot be stored
    raw = (
        f'{{"writeKey": "{server.write_key}", "batch": [{{"type": "track", "event": "E", '
        f'"userId": "u", "properties": {{"deep": {deep}}}}}]}}'
    ).encode()
    response = httpx.post(
        server.url + "/v1/batch", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "nested" in response.json()["message"] or "JSON" in response.json()["message"]


def test_nonsense_client_clocks_fall_back_to_receipt() -> None:
    received = now_us()
    row = normalize(
        {
            "type": "track",
            "event": "E",
            "userId": "u",
            "timestamp": "1970-01-01T00:00:00Z",
            "sentAt": "8999-01-01T00:00:00Z",
        },
        Envelope("s", "web", received),
    )
    assert row["timestamp"] == received


def test_explain_analyze_cannot_write(duck: Warehouse) -> None:
    with pytest.raises(InvalidInput):
        duck.query("EXPLAIN ANALYZE DELETE FROM meta")
    assert duck.count("meta") >= 1


def test_a_stale_server_file_is_ignored(tmp_path: Path) -> None:
    database = tmp_path / "touchpoints.duckdb"
    server_file(database).write_text(
        json.dumps({"url": "http://127.0.0.1:9", "pid": os.getpid(), "token": "t"})
    )
    assert running_server(database) is None
    server_file(database).write_text(
        json.dumps({"url": "http://127.0.0.1:9", "pid": 1, "token": "t"})
    )  # alive, but not ours
    assert running_server(database) is None


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/v1/admin/audit?action=%00", None, "action"),
        ("GET", "/v1/insights/web?where=channel%3D%00x", None, "where"),
        ("GET", "/v1/profiles/email:a%00b@example.com", None, "identifier"),
        ("POST", "/v1/consents", {"subject": "user:u1", "purpose": "ana\u0000lytics"}, "purpose"),
        ("POST", "/v1/admin/sources", {"name": "s", "meta": [{"k\u0000": 1}]}, "meta[0].k"),
    ],
)
def test_a_nul_character_anywhere_gets_400_naming_where(
    server: LiveServer, method: str, path: str, body: dict | None, field: str
) -> None:
    """The SQL engines cannot read a NUL inside a literal; the API refuses it first."""
    before = server.warehouse.count("audit_log")
    response = httpx.request(
        method,
        server.url + path,
        json=body,
        headers={"Authorization": "Bearer test-admin-token"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert "NUL" in response.json()["message"]
    assert server.warehouse.count("audit_log") == before
