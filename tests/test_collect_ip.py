"""Each source's ip_mode over real HTTP: what is kept of the client's address, and that
an address the mode does not keep is written nowhere (tables, spool, database file)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import duckdb_url
from tests.live import LiveServer, free_port, start
from touchpoints.collect.collector import CollectorSettings
from touchpoints.collect.consent import set_collection_mode
from touchpoints.collect.ip import SECRET_KEY, mask_ip
from touchpoints.collect.sources import add_source, find_source, list_sources, set_ip_mode
from touchpoints.errors import InvalidInput
from touchpoints.warehouse import Warehouse, connect
from touchpoints.warehouse.schema import TABLES
from touchpoints.warehouse.writer import spool_dir

ADMIN = {"Authorization": "Bearer test-admin-token"}
V4 = "203.0.113.77"
V6 = "2001:db8:85a3:8d3:1319:8a2e:370:7348"
OWN_V4 = "198.51.100.201"  # sent by a server-side library in context.ip
EVERY_ADDRESS = (V4, V6, OWN_V4, "2001:0db8:85a3:08d3:1319:8a2e:0370:7348")


@pytest.fixture
def proxied(duck: Warehouse) -> Iterator[LiveServer]:
    """A live server behind a trusted proxy: the client ip is X-Forwarded-For."""
    live = start(duck, settings=CollectorSettings(trust_forwarded_for=True))
    yield live
    live.stop()


def new_source(server: LiveServer, name: str, ip_mode: str | None) -> str:
    """A source made through the admin API (ip_mode None: the default); its write key."""
    body: dict = {"name": name, "channel": "web"}
    if ip_mode is not None:
        body["ip_mode"] = ip_mode
    response = httpx.post(server.url + "/v1/admin/sources", json=body, headers=ADMIN, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["ip_mode"] == (ip_mode or "truncate")
    return response.json()["write_key"]


def send(server: LiveServer, key: str, ip: str, batch: list[dict]) -> None:
    response = httpx.post(
        server.url + "/v1/batch",
        content=orjson.dumps({"writeKey": key, "batch": batch}),
        headers={"Content-Type": "application/json", "X-Forwarded-For": f"{ip}, 10.0.0.1"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def track(message_id: str, **extra: object) -> dict:
    return {"type": "track", "event": "Viewed", "anonymousId": "a-1", "messageId": message_id,
            **extra}  # fmt: skip


def post_every_kind(server: LiveServer, key: str) -> None:
    """From an IPv4 client and an IPv6 client; a message naming its own context.ip; an
    invalid message (kept in rejected_events) carrying an address too."""
    send(server, key, V4, [track("v4"), {"type": "track", "context": {"ip": V4}}])
    send(server, key, V6, [track("v6"), track("own", context={"ip": OWN_V4})])


def stored(server: LiveServer) -> dict[str, dict]:
    rows = server.warehouse.table("events").to_pyarrow().to_pylist()
    return {r["message_id"]: r for r in rows}


def spool_text(server: LiveServer) -> str:
    """Everything in the spool folder now (files stay there until they are loaded)."""
    folder = spool_dir(server.services.warehouse)
    files = [p for p in folder.rglob("*") if p.is_file()]
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in files)


def tables_text(warehouse: Warehouse) -> str:
    return "".join(
        json.dumps(warehouse.table(name).to_pyarrow().to_pylist(), default=str) for name in TABLES
    )


def file_bytes(warehouse: Warehouse) -> bytes:
    """The DuckDB file (and its WAL) once everything is checkpointed into it."""
    with warehouse.lock:
        warehouse.backend.raw_sql("CHECKPOINT")
    path = warehouse.path
    assert path is not None
    wal = path.with_name(path.name + ".wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def leaks(text: str) -> list[str]:
    return [address for address in EVERY_ADDRESS if address in text]


def secret_of(warehouse: Warehouse) -> bytes:
    meta = warehouse.table("meta")
    values = meta.filter(meta.key == SECRET_KEY).value.to_pyarrow().to_pylist()
    assert len(values) == 1
    return bytes.fromhex(values[0])


def hmac_hex(secret: bytes, ip: str) -> str:
    return "h:" + hmac.new(secret, ip.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("truncate", {"v4": "203.0.113.0", "v6": "2001:db8:85a3::", "own": "198.51.100.0"}),
        ("hash", None),  # checked against the secret below
        ("drop", {"v4": None, "v6": None, "own": None}),
    ],
)
def test_a_mode_that_does_not_keep_the_address_writes_it_nowhere(
    proxied: LiveServer, mode: str, expected: dict | None
) -> None:
    key = new_source(proxied, "shop", mode)
    post_every_kind(proxied, key)
    spooled = spool_text(proxied)  # read before the flush below loads and removes it
    assert '"v4"' in spooled and '"own"' in spooled, "the spool was loaded already"
    assert leaks(spooled) == []
    rows = stored(proxied)
    assert set(rows) == {"v4", "v6", "own"}
    if expected is None:
        secret = secret_of(proxied.warehouse)
        expected = {
            "v4": hmac_hex(secret, V4),
            "v6": hmac_hex(secret, V6),
            "own": hmac_hex(secret, OWN_V4),
        }
    for message_id, ip in expected.items():
        assert rows[message_id]["ip"] == ip, message_id
        assert json.loads(rows[message_id]["context"] or "{}").get("ip") == ip, message_id
    rejected = proxied.warehouse.table("rejected_events").to_pyarrow().to_pylist()
    assert len(rejected) == 1
    assert json.loads(rejected[0]["payload"])["context"]["ip"] == expected["v4"]
    assert leaks(tables_text(proxied.warehouse)) == []
    assert leaks(file_bytes(proxied.warehouse).decode("latin-1")) == []


def test_keep_stores_the_address_as_received(proxied: LiveServer) -> None:
    """Also the control of the scans above: a kept address is found by each of them."""
    key = new_source(proxied, "shop", "keep")
    post_every_kind(proxied, key)
    assert set(leaks(spool_text(proxied))) == {V4, V6, OWN_V4}
    rows = stored(proxied)
    assert [rows[m]["ip"] for m in ("v4", "v6", "own")] == [V4, V6, OWN_V4]
    assert set(leaks(tables_text(proxied.warehouse))) == {V4, V6, OWN_V4}
    assert set(leaks(file_bytes(proxied.warehouse).decode("latin-1"))) >= {V4, V6}


def test_new_sources_truncate_by_default(proxied: LiveServer) -> None:
    key = new_source(proxied, "shop", None)
    send(proxied, key, V4, [track("v4")])
    send(proxied, key, V6, [track("v6")])
    rows = stored(proxied)
    assert rows["v4"]["ip"] == "203.0.113.0" and rows["v6"]["ip"] == "2001:db8:85a3::"
    # the fixture's own source was made with add_source's default too
    assert find_source(proxied.warehouse, "website").ip_mode == "truncate"


def test_hash_is_stable_per_address_and_differs_between_addresses(proxied: LiveServer) -> None:
    key = new_source(proxied, "shop", "hash")
    other = new_source(proxied, "app", "hash")
    send(proxied, key, V4, [track("a")])
    send(proxied, key, V4, [track("b")])
    send(proxied, other, V4, [track("c")])  # another source of the same warehouse
    send(proxied, key, "203.0.113.78", [track("d")])
    send(proxied, key, "2001:DB8:85A3:08D3:1319:8A2E:0370:7348", [track("e")])  # V6, spelt
    send(proxied, key, V6, [track("f")])
    rows = stored(proxied)
    assert rows["a"]["ip"].startswith("h:") and len(rows["a"]["ip"]) == 2 + 64
    assert rows["a"]["ip"] == rows["b"]["ip"] == rows["c"]["ip"]
    assert rows["d"]["ip"] != rows["a"]["ip"]
    assert rows["e"]["ip"] == rows["f"]["ip"] != rows["a"]["ip"]
    counted = proxied.warehouse.query(
        "SELECT count(DISTINCT ip) AS visitors FROM events"
    ).to_pylist()
    assert counted == [{"visitors": 3}]


def test_the_peer_address_is_masked_without_a_proxy(server: LiveServer) -> None:
    response = httpx.post(
        server.url + "/v1/track",
        json={**track("m"), "writeKey": server.write_key},
        timeout=30,
    )
    assert response.status_code == 200
    assert stored(server)["m"]["ip"] == "127.0.0.0"


def test_set_ip_mode_applies_once_the_collector_forgets_the_source(proxied: LiveServer) -> None:
    warehouse = proxied.services.warehouse
    assert set_ip_mode(warehouse, proxied.source_id, "drop") == "truncate"
    proxied.services.collector.registry.forget(proxied.source_id)
    send(proxied, proxied.write_key, V4, [track("dropped")])
    assert stored(proxied)["dropped"]["ip"] is None
    assert find_source(proxied.warehouse, "website").ip_mode == "drop"
    with pytest.raises(InvalidInput) as bad:
        set_ip_mode(warehouse, proxied.source_id, "anonymise")
    assert bad.value.field == "ip_mode"


def test_sources_made_before_ip_mode_keep_addresses(duck: Warehouse) -> None:
    made = add_source(duck, "old")
    duck.update_rows("sources", "source_id", made.source.source_id, {"settings": None})
    assert find_source(duck, "old").ip_mode == "keep"
    assert set_ip_mode(duck, made.source.source_id, "hash") == "keep"
    assert secret_of(duck)  # made with the setting, not by the first request
    # the consent mode lives in the same JSON: setting one keeps the other
    set_collection_mode(duck, made.source.source_id, "pseudonymous")
    source = find_source(duck, "old")
    assert (source.ip_mode, source.consent_mode) == ("hash", "pseudonymous")


@pytest.mark.parametrize("mode", ["anonymise", "", "KEEP"])
def test_a_bad_mode_is_refused_by_the_api_with_its_field(server: LiveServer, mode: str) -> None:
    response = httpx.post(
        server.url + "/v1/admin/sources",
        json={"name": "shop", "ip_mode": mode},
        headers=ADMIN,
        timeout=30,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "ip_mode" and "ip_mode must be one of" in body["message"]
    assert [
        s["name"] for s in httpx.get(server.url + "/v1/admin/sources", headers=ADMIN).json()
    ] == ["website"]


def cli(*args: str, warehouse: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "touchpoints.cli.main", "--warehouse", warehouse, *args]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_the_cli_sets_the_mode_and_refuses_a_bad_one(tmp_path: Path) -> None:
    url = duckdb_url(tmp_path / "touchpoints.duckdb")
    made = cli("sources", "add", "shop", "--ip-mode", "hash", "-f", "json", warehouse=url)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["ip_mode"] == "hash"
    plain = json.loads(cli("sources", "add", "till", "-f", "json", warehouse=url).stdout)
    assert plain["ip_mode"] == "truncate"
    bad = cli("sources", "add", "app", "--ip-mode", "anonymise", warehouse=url)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "ip_mode must be one of" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout
    listed = cli("sources", "list", warehouse=url).stdout
    assert "hash" in listed and "truncate" in listed and "app" not in listed


def test_the_cli_through_a_running_server(tmp_path: Path) -> None:
    url = duckdb_url(tmp_path / "touchpoints.duckdb")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "touchpoints.cli.main", "-w", url, "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        made = cli("sources", "add", "app", "--ip-mode", "drop", "-f", "json", warehouse=url)
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["ip_mode"] == "drop"
        bad = cli("sources", "add", "web", "--ip-mode", "zero", warehouse=url)
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
        assert "ip_mode must be one of" in bad.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    warehouse = connect(url)
    try:
        assert [s.name for s in list_sources(warehouse)] == ["app"]
    finally:
        warehouse.close()


@pytest.mark.parametrize(
    ("value", "truncated"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("::ffff:203.0.113.77", "203.0.113.0"),  # IPv4-mapped: as IPv4
        ("[2001:db8::1]:443", "2001:db8::"),
        ("203.0.113.7:51234", "203.0.113.0"),
        ("fe80::1%eth0", "fe80::"),
        ("not an address", None),
    ],
)
def test_truncation_of_what_proxies_write(value: str, truncated: str | None) -> None:
    assert mask_ip(value, "truncate") == truncated


def test_changing_a_sources_modes_takes_effect_at_once(proxied: LiveServer) -> None:
    """`PUT …/ip-mode` (what `touchpoints sources set` sends through a running server)
    changes what the very next request keeps, and is audited."""
    key = new_source(proxied, "till", "keep")
    source_id = httpx.get(proxied.url + "/v1/admin/sources", headers=ADMIN).json()[-1]["source_id"]
    send(proxied, key, "198.51.100.23", [track("before")])
    url = f"{proxied.url}/v1/admin/sources/{source_id}/ip-mode"
    bad = httpx.put(url, json={"mode": "blur"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["field"] == "ip_mode"
    changed = httpx.put(url, json={"mode": "drop"}, headers=ADMIN).json()
    assert changed == {"source_id": source_id, "ip_mode": "drop", "previous": "keep"}
    send(proxied, key, "198.51.100.23", [track("after")])
    rows = proxied.warehouse.table("events").select("message_id", "ip").to_pyarrow().to_pylist()
    stored = {r["message_id"]: r["ip"] for r in rows}
    assert stored["before"] == "198.51.100.23" and stored["after"] is None
    log = proxied.warehouse.table("audit_log")
    assert log.filter(log.action == "source.ip_mode").count().to_pyarrow().as_py() == 1


def test_sources_set_from_the_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import subprocess
    import sys

    url = f"duckdb:///{tmp_path / 'touchpoints.duckdb'}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "touchpoints.cli.main", "-w", url, *args, "-f", "json"]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    made = json.loads(cli("sources", "add", "shop").stdout)
    done = cli("sources", "set", made["source_id"], "--ip-mode", "hash",
               "--consent-mode", "pseudonymous")  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = {s["source_id"]: s for s in json.loads(cli("sources", "list").stdout)}
    assert listed[made["source_id"]]["ip_mode"] == "hash"
    assert listed[made["source_id"]]["consent_mode"] == "pseudonymous"
    bad = cli("sources", "set", made["source_id"], "--ip-mode", "blur")
    assert bad.returncode == 2 and "ip_mode" in bad.stderr and "Traceback" not in bad.stderr
