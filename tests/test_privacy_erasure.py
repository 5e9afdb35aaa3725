"""Erasure and access export, tested as an auditor would: by looking for what should not
be there. One person (Ana) is built across web, app, store and email, with consents,
a rejected message, a merge and an access export; then erased; then every table (all
columns as text) and the DuckDB file's bytes are searched for each of her identifiers in
clear and hashed: nothing. Bob and Cara stay as they were."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.personal import stored
from touchpoints.collect.normalize import Envelope, normalize
from touchpoints.errors import InvalidInput, NotFound
from touchpoints.identity import find_customer
from touchpoints.privacy.access import export_person
from touchpoints.privacy.consent_records import record
from touchpoints.privacy.erasure import erase
from touchpoints.privacy.rebuild import rebuild
from touchpoints.warehouse import TABLES, Warehouse
from touchpoints.warehouse.writer import open_writer, spool_dir

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)

#: Ana's identifiers as she typed them, and as identity resolution stores them.
ANA_RAW = {
    "email": "Ana.Lopez@Example.com",
    "phone": "(415) 555-0142",
    "loyalty_id": "loy-778812",
    "user_id": "user-ana-5521",
    "web": "anon-web-9f3kq2",
    "app": "app-dev-71kz0m",
    "store": "pos-till-4410ana",
}
ANA_CLEAR = [
    "ana.lopez@example.com",
    "+14155550142",
    "LOY-778812",
    "user-ana-5521",
    "anon-web-9f3kq2",
    "app-dev-71kz0m",
    "pos-till-4410ana",
]


def _hashes(text: str) -> list[str]:
    forms = {text, text.lower(), text.upper()}
    return [hashlib.new(a, f.encode()).hexdigest() for f in forms for a in ("md5", "sha256")]


def _forms(clear: list[str], raw: dict[str, str]) -> list[str]:
    kinds = ["email", "phone", "loyalty_id", "user_id", "anonymous_id", "anonymous_id"]
    every = set(clear) | set(raw.values())
    every |= {f"{k}:{v}" for k, v in zip(kinds, clear, strict=False)}
    return sorted(every | {h for text in every for h in _hashes(text)})


def _message(kind: str, when: int, **fields: Any) -> dict[str, Any]:
    body = {
        "type": kind,
        "messageId": uuid.uuid4().hex,
        "timestamp": (T0 + timedelta(minutes=when)).isoformat(),
    }
    return {**body, **fields}


def person_messages(raw: dict[str, str], name: str) -> dict[str, list[dict[str, Any]]]:
    """One person's messages per channel: browsing, sign-up, app use, a store order with
    the loyalty card, newsletters opened."""
    traits = {"email": raw["email"], "phone": raw["phone"], "name": name}
    return {
        "web": [
            _message("page", 0, anonymousId=raw["web"], properties={"path": "/shoes"}),
            _message("identify", 1, anonymousId=raw["web"], userId=raw["user_id"], traits=traits),
            _message("track", 2, userId=raw["user_id"], event="Product Viewed",
                     properties={"sku": "SKU-1", "price": 49.0}),
        ],
        "app": [
            _message("screen", 10, anonymousId=raw["app"], name="Home"),
            _message("identify", 11, anonymousId=raw["app"], userId=raw["user_id"]),
            _message("track", 12, userId=raw["user_id"], event="Order Completed",
                     properties={"order_id": f"o-{name}-1", "revenue": 49.0}),
        ],
        "store": [
            _message("identify", 20, anonymousId=raw["store"],
                     traits={"loyalty_id": raw["loyalty_id"], "email": raw["email"]}),
            _message("track", 21, anonymousId=raw["store"], event="Order Completed",
                     properties={"order_id": f"s-{name}-2", "revenue": 80.0},
                     context={"traits": {"loyalty_id": raw["loyalty_id"]}}),
        ],
        "email": [
            _message("track", 30, anonymousId=f"esp-{raw['user_id']}", event="Email Opened",
                     properties={"email_id": "nl-7"}, context={"traits": {"email": raw["email"]}}),
        ],
    }  # fmt: skip


BOB = {
    "email": "bob.stone@example.org", "phone": "(212) 555-0199", "loyalty_id": "loy-100200",
    "user_id": "user-bob-7310", "web": "anon-web-bob11x", "app": "app-dev-bob22y",
    "store": "pos-till-bob33z",
}  # fmt: skip
CARA = {
    "email": "cara.vel@example.net", "phone": "(303) 555-0111", "loyalty_id": "loy-300400",
    "user_id": "user-cara-9921", "web": "anon-web-cara4q", "app": "app-dev-cara5r",
    "store": "pos-till-cara6s",
}  # fmt: skip


def write(
    warehouse: Warehouse, messages: dict[str, list[dict[str, Any]]], writer: Any = None
) -> None:
    own = writer is None
    writer = writer or open_writer(warehouse)
    now_us = int(datetime.now(UTC).timestamp() * 1e6)
    for channel, group in messages.items():
        envelope = Envelope(f"src_{channel}", channel, now_us, ip="203.0.113.9")
        writer.write([normalize(m, envelope) for m in group])
    if own:
        writer.close()


def reject(warehouse: Warehouse, payload: dict[str, Any], writer: Any = None) -> None:
    own = writer is None
    writer = writer or open_writer(warehouse)
    row = {
        "rejected_id": uuid.uuid4().hex, "source_id": "src_web", "message_id": None,
        "received_at": int(datetime.now(UTC).timestamp() * 1e6), "field": "timestamp",
        "reason": "timestamp is not a date-time", "payload": orjson.dumps(payload).decode(),
    }  # fmt: skip
    writer.write([], [row])
    if own:
        writer.close()


def build_world(warehouse: Warehouse, writer: Any = None) -> None:
    """Ana, Bob and Cara; consents; a rejected message of Ana's; a build."""
    for raw, name in ((ANA_RAW, "ana"), (BOB, "bob"), (CARA, "cara")):
        write(warehouse, person_messages(raw, name), writer)
    reject(warehouse, {"type": "track", "userId": ANA_RAW["user_id"], "timestamp": "soon"}, writer)
    reject(warehouse, {"type": "track", "userId": BOB["user_id"], "timestamp": "later"}, writer)
    if writer is not None:
        writer.flush()
    rebuild(warehouse)
    record(warehouse, "email:" + ANA_RAW["email"], {"email_marketing": "granted"}, actor="test")
    record(warehouse, "email:" + BOB["email"], {"email_marketing": "granted"}, actor="test")


ANA_FORMS = _forms(ANA_CLEAR, ANA_RAW)


def stored_forms(warehouse: Warehouse, raw: dict[str, str]) -> list[str]:
    """The blinds this warehouse's key gives a person's email and phone: the forms in
    which it stores them (the clear ones are sealed)."""
    return [stored(warehouse, f"{k}:{raw[k]}").partition(":")[2] for k in ("email", "phone")]


BOB_FORMS = _forms(
    ["bob.stone@example.org", "+12125550199", "LOY-100200", "user-bob-7310", "anon-web-bob11x"],
    BOB,
)


def every_cell(warehouse: Warehouse) -> dict[str, list[str]]:
    """Every table's cells as lower-case text (every column, hidden ones too)."""
    cells = {}
    for name in TABLES:
        rows = warehouse.backend.con.sql(f'SELECT * FROM "{name}"').fetchall()
        cells[name] = [str(value).lower() for row in rows for value in row if value is not None]
    return cells


def hits(texts: dict[str, list[str]], forms: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, cells in texts.items():
        wanted = [f for f in forms if any(f.lower() in cell for cell in cells)]
        if wanted:
            found[name] = wanted
    return found


def file_hits(path: Path, forms: list[str]) -> list[str]:
    data = path.read_bytes().lower() if path.is_file() else b""
    return [f for f in forms if f.lower().encode() in data]


def person_rows(warehouse: Warehouse, raw: dict[str, str]) -> dict[str, Any]:
    """What the warehouse holds of one person, to compare before and after."""
    customer = find_customer(warehouse, "user_id:" + raw["user_id"])
    con = warehouse.backend.con
    events = con.sql(
        "SELECT * EXCLUDE (_key) FROM events WHERE user_id = ? OR anonymous_id IN (?, ?, ?, ?) "
        "ORDER BY message_id",
        params=[raw["user_id"], raw["web"], raw["app"], raw["store"], f"esp-{raw['user_id']}"],
    ).fetchall()
    return {
        "customer": customer,
        "events": events,
        "identities": con.sql(
            "SELECT identifier, kind, customer_id FROM identities WHERE customer_id = ? "
            "ORDER BY identifier",
            params=[customer],
        ).fetchall(),
        "profile": con.sql(
            "SELECT * FROM profiles WHERE customer_id = ?", params=[customer]
        ).fetchall(),
        "consents": con.sql(
            "SELECT * FROM consents WHERE subject LIKE ? ORDER BY consent_id",
            params=[f"%{raw['email']}%"],
        ).fetchall(),
    }


def test_erasure_leaves_no_trace_and_a_return_is_a_stranger(
    duck: Warehouse, tmp_path: Path
) -> None:
    build_world(duck)
    old_customer = find_customer(duck, ANA_RAW["email"])
    archive = tmp_path / "ana-export.zip"
    export_person(duck, ANA_RAW["email"], out=archive)
    bob_before, cara_before = person_rows(duck, BOB), person_rows(duck, CARA)
    assert len(bob_before["events"]) == 9 and bob_before["profile"]

    # the scans find Ana before, in the forms she is stored in: they can see what they
    # look for; her email and phone themselves are sealed, in no cell and not in the file
    duck.backend.raw_sql("CHECKPOINT")
    blinds = stored_forms(duck, ANA_RAW)
    every_form = [*ANA_FORMS, *blinds]
    assert set(hits(every_cell(duck), every_form)) >= {"events", "identities", "audit_log"}
    assert set(file_hits(duck.path, every_form)) >= {*blinds, "user-ana-5521"}
    sealed = [ANA_RAW["email"], "ana.lopez@example.com", ANA_RAW["phone"], "+14155550142"]
    assert hits(every_cell(duck), sealed) == {}
    assert file_hits(duck.path, sealed) == []

    # one event of Ana's and one of Bob's acknowledged but not loaded, and a segment of
    # Ana's that failed to load
    writer = open_writer(duck, max_delay=3600)
    write(duck, {"web": [_message("page", 40, userId=ANA_RAW["user_id"])]}, writer)
    write(duck, {"web": [_message("page", 41, userId=BOB["user_id"])]}, writer)
    failed = spool_dir(duck) / "failed"
    failed.mkdir(parents=True, exist_ok=True)
    stuck = normalize(
        _message("identify", 42, userId="x-1", traits={"email": ANA_RAW["email"]}),
        Envelope("src_web", "web", int(T0.timestamp() * 1e6)),
    )
    [sealed_stuck], _ = duck.seal([stuck])  # as a writer spools it
    (failed / "0000000001.00000000.events.json").write_bytes(orjson.dumps([sealed_stuck]))

    result = erase(duck, ANA_RAW["email"], reason="Art. 17 request DSR-2026-014", writer=writer)
    writer.close()

    assert result["deleted"]["events"] == 10  # nine, and the one in the spool
    assert result["deleted"]["identities"] == 8 and result["deleted"]["profiles"] == 1
    assert result["spool_rows_removed"] == 1 and result["exports_removed"] == 1
    assert result["remaining_rows"] == 0 and result["remaining_in_file"] == 0
    assert not archive.exists()
    forms = [*every_form, old_customer]
    assert hits(every_cell(duck), forms) == {}
    for path in (duck.path, duck.path.with_name(duck.path.name + ".wal")):
        assert file_hits(path, forms) == []
    for path in spool_dir(duck).rglob("*"):
        if path.is_file():
            assert file_hits(path, forms) == [], path

    # Bob and Cara are as they were (Bob's spooled page view arrived too)
    bob_after, cara_after = person_rows(duck, BOB), person_rows(duck, CARA)
    assert cara_after == cara_before
    assert bob_after["identities"] == bob_before["identities"]
    assert bob_after["profile"] == bob_before["profile"]
    assert bob_after["consents"] == bob_before["consents"]
    assert set(bob_before["events"]) < set(bob_after["events"])
    assert len(bob_after["events"]) == 10

    # the tombstones and the audit entry: hashes, the reason, no identifier
    tombstones = duck.backend.con.sql("SELECT hash, salt_id FROM erasures").fetchall()
    assert len(tombstones) == 9  # eight identifiers and the customer id
    entry = duck.backend.con.sql(
        "SELECT subject, reason, details FROM audit_log WHERE action = 'privacy.erase'"
    ).fetchall()
    assert len(entry) == 1 and entry[0][0].startswith("erased:")
    assert entry[0][1] == "Art. 17 request DSR-2026-014"
    consent_audit = duck.backend.con.sql(
        "SELECT subject FROM audit_log WHERE action = 'consent.set'"
    ).fetchall()
    assert sum(s.startswith("erased:") for (s,) in consent_audit) == 1
    with pytest.raises(NotFound):
        find_customer(duck, ANA_RAW["email"])

    # Ana comes back: the same identifiers make a new customer, linked to nothing old
    write(duck, person_messages(ANA_RAW, "ana"))
    rebuild(duck)
    new_customer = find_customer(duck, ANA_RAW["email"])
    assert new_customer != old_customer
    assert find_customer(duck, ANA_RAW["loyalty_id"]) == new_customer
    assert hits(every_cell(duck), [old_customer]) == {}
    merges = duck.backend.con.sql("SELECT * FROM identity_merges").fetchall()
    assert merges == []
    assert person_rows(duck, BOB)["customer"] == bob_before["customer"]


def test_export_holds_the_person_and_nobody_else(duck: Warehouse, tmp_path: Path) -> None:
    from touchpoints.api.privacy_routes import EXTRAS
    from touchpoints.insights.segments import save_segment

    build_world(duck)
    save_segment(duck, "store buyers", {"did": "Order Completed", "where": {"channel": "store"}})
    save_segment(duck, "emailed", {"did": "Email Sent"})
    data, manifest = export_person(
        duck, ANA_RAW["phone"], out=tmp_path / "a.zip", reason="DSR-7", extras=EXTRAS
    )
    assert (tmp_path / "a.zip").read_bytes() == data
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = set(archive.namelist())
    tables = json.loads(archive.read("data.json"))
    assert {"manifest.json", "data.json"} <= names
    assert {f"{name}.csv" for name in tables} <= names
    expected = {
        "events": 9, "rejected_events": 1, "identities": 8, "identity_links": 7,
        "profiles": 1, "consents": 1, "audit_log": 1, "segments": 2,
    }  # fmt: skip
    for name, count in expected.items():
        assert len(tables[name]) == count, name
        assert manifest["tables"][name]["rows"] == count and manifest["tables"][name]["purpose"]
    assert {e["channel"] for e in tables["events"]} == {"web", "app", "store", "email"}
    members = {row["segment"]: row["member"] for row in tables["segments"]}
    assert members == {"store buyers": True, "emailed": False}
    assert manifest["consent"]["email_marketing"]["allowed"] is True
    assert manifest["customer_id"] == find_customer(duck, ANA_RAW["email"])
    text = "\n".join(archive.read(n).decode() for n in names).lower()
    for form in ("ana.lopez@example.com", "+14155550142", "loy-778812", "anon-web-9f3kq2"):
        assert form in text
    other = [*BOB_FORMS, *CARA.values(), "cara.vel@example.net"]
    assert [f for f in other if f.lower() in text] == []
    csv_rows = archive.read("events.csv").decode().strip().splitlines()
    assert len(csv_rows) == 1 + 9
    audit = duck.backend.con.sql(
        "SELECT subject, reason FROM audit_log WHERE action = 'privacy.export'"
    ).fetchall()
    assert audit == [(manifest["customer_id"], "DSR-7")]


def test_bad_requests_change_nothing(duck: Warehouse) -> None:
    build_world(duck)
    before = duck.count("events")
    with pytest.raises(InvalidInput) as error:
        erase(duck, ANA_RAW["email"], reason="  ")
    assert error.value.field == "reason"
    with pytest.raises(NotFound) as missing:
        erase(duck, "nobody@example.com", reason="DSR-1")
    assert missing.value.field == "identifier"
    with pytest.raises(NotFound):
        export_person(duck, "email:nobody@example.com")
    assert duck.count("events") == before and duck.count("erasures") == 0


def test_delete_where_keeps_keys(warehouse: Warehouse) -> None:
    """The deletion primitive on both engines; on DuckDB the events key still holds."""
    from tests.insights_data import event, write_events

    rows = [event(f"u{i}", i, "Signed Up") for i in range(6)]
    write_events(warehouse, rows)
    gone = warehouse.delete_where("events", lambda t: t.user_id.isin(["u1", "u3"]))
    assert gone == 2
    left = warehouse.table("events").user_id.to_pyarrow().to_pylist()
    assert sorted(left) == ["u0", "u2", "u4", "u5"]
    assert warehouse.delete_where("events", lambda t: t.user_id == "nobody") == 0
    if warehouse.engine == "duckdb":
        again = warehouse.table("events").limit(1).to_pyarrow()
        warehouse.insert("events", again)  # the same key: skipped
        assert warehouse.count("events") == 4
        sql = "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'events'"
        assert warehouse.backend.con.sql(sql + " AND constraint_type = 'PRIMARY KEY'").fetchone()[0]


def test_erase_over_http_needs_an_admin_key(server: Any) -> None:
    from touchpoints.privacy.keys import add_key

    services = server.services
    warehouse = services.warehouse
    with warehouse.lock:
        build_world(warehouse, services.writer)
        _, read_key = add_key(warehouse, "analyst", "read")
        _, admin_key = add_key(warehouse, "dpo", "admin")
    body = {"identifier": ANA_RAW["email"], "reason": "DSR-2026-015"}
    with httpx.Client(base_url=server.url, timeout=120) as client:
        refused = client.post(
            "/v1/privacy/erase", json=body, headers={"Authorization": f"Bearer {read_key}"}
        )
        assert refused.status_code == 403
        path = f"/v1/privacy/export/email:{ANA_RAW['email']}"
        assert client.get(path, headers={"Authorization": f"Bearer {read_key}"}).status_code == 403
        admin = {"Authorization": f"Bearer {admin_key}"}
        no_reason = client.post("/v1/privacy/erase", json={"identifier": "x"}, headers=admin)
        assert no_reason.status_code == 400 and no_reason.json()["field"] == "reason"
        exported = client.get(path, headers=admin)
        assert exported.status_code == 200
        assert exported.headers["content-type"] == "application/zip"
        assert "data.json" in zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
        done = client.post("/v1/privacy/erase", json=body, headers=admin)
        assert done.status_code == 200, done.text
        assert done.json()["deleted"]["events"] == 9 and done.json()["remaining_in_file"] == 0
        assert client.get(path, headers=admin).status_code == 404
        bob = client.get(f"/v1/privacy/export/{BOB['user_id']}", headers=admin)
        assert bob.status_code == 200
    forms = [*ANA_FORMS, *stored_forms(server.warehouse, ANA_RAW)]
    assert hits(every_cell(server.warehouse), forms) == {}
    assert file_hits(warehouse.path, forms) == []


def test_cli_export_and_erase(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from touchpoints.cli.main import app
    from touchpoints.warehouse import connect

    url = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    warehouse = connect(url)
    build_world(warehouse)
    forms = [*ANA_FORMS, *stored_forms(warehouse, ANA_RAW)]
    warehouse.close()
    runner = CliRunner()
    out = tmp_path / "ana.zip"
    exported = runner.invoke(
        app, ["-w", url, "privacy", "export", ANA_RAW["email"], "--out", str(out), "-f", "json"]
    )
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["events"] == 9 and out.is_file()
    erased = runner.invoke(
        app, ["-w", url, "privacy", "erase", ANA_RAW["email"], "--reason", "DSR-9", "-f", "json"]
    )
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.stdout)["exports_removed"] == 1 and not out.exists()
    assert file_hits(tmp_path / "cli.duckdb", forms) == []
