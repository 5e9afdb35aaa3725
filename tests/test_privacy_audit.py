"""The audit log: profile reads (API and CLI), consent and key changes, who/when/why,
append-only, and its export as a function and over HTTP (JSON and CSV)."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import duckdb_url
from tests.live import LiveServer
from tests.personal import stored
from tests.test_cli import cli
from tests.test_profiles import _story
from touchpoints.collect.sources import add_source
from touchpoints.errors import InvalidInput, NotFound
from touchpoints.identity import build
from touchpoints.privacy import audit
from touchpoints.privacy.audit import audited_profile, export_audit, record
from touchpoints.privacy.consent_config import set_source_mode
from touchpoints.privacy.consent_records import record as record_consent
from touchpoints.privacy.keys import add_key, key_id_of, revoke_key
from touchpoints.warehouse import Warehouse, connect

ADMIN_TOKEN = "test-admin-token"  # the live server's control token (tests/live.py)


def _bearer(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def _customer(warehouse: Warehouse, identifier: str) -> str:
    table = warehouse.table("identities")
    rows = table.filter(table.identifier == stored(warehouse, identifier)).to_pyarrow().to_pylist()
    return rows[0]["customer_id"]


# -- the functions, on both engines --------------------------------------------------------


def test_record_and_export_with_every_filter(warehouse: Warehouse) -> None:
    _story(warehouse)
    build(warehouse)
    ana = _customer(warehouse, "user_id:u-1")
    before = datetime.now(UTC)
    time.sleep(0.01)
    first = record(warehouse, "key_a", "profile.read", ana, "support ticket 42", {"limit": 5})
    time.sleep(0.01)
    middle = datetime.now(UTC)
    time.sleep(0.01)
    record(warehouse, "cli", "consent.set", "email:ana@example.com", None, {"purpose": "x"})
    record(warehouse, "key_b", "profile.read", "email:bob@example.com")
    record(warehouse, "key_a", "key.add", details={"key_id": "key_1"})

    everything = export_audit(warehouse)
    assert [e["action"] for e in everything] == [
        "profile.read",
        "consent.set",
        "profile.read",
        "key.add",
    ]
    assert everything[0] == first
    assert first["actor"] == "key_a" and first["subject"] == ana
    assert first["reason"] == "support ticket 42" and first["details"] == {"limit": 5}
    assert before <= datetime.fromisoformat(first["at"]) <= middle
    assert all(e["audit_id"].startswith("aud_") for e in everything)
    assert len({e["audit_id"] for e in everything}) == 4

    # time: from inclusive, to exclusive; a date alone as `to` includes its whole day
    assert export_audit(warehouse, end=middle) == [first]
    later = [e["action"] for e in export_audit(warehouse, start=middle)]
    assert later == ["consent.set", "profile.read", "key.add"]
    assert len(export_audit(warehouse, start=middle.isoformat())) == 3
    today = datetime.now(UTC).date()
    assert len(export_audit(warehouse, start=today.isoformat(), end=today.isoformat())) == 4
    assert export_audit(warehouse, start=today + timedelta(days=1)) == []
    assert export_audit(warehouse, end=today - timedelta(days=1)) == []
    # action: exact, or a prefix ending in a dot
    assert len(export_audit(warehouse, action="profile.read")) == 2
    assert len(export_audit(warehouse, action="profile.")) == 2
    assert export_audit(warehouse, action="profile") == []
    # subject: any identifier of the person, or their customer id, finds all about them
    for who in ("user_id:u-1", "email:ana@example.com", ana):
        found = export_audit(warehouse, subject=who)
        assert [e["action"] for e in found] == ["profile.read", "consent.set"], who
    assert [e["actor"] for e in export_audit(warehouse, subject="email:bob@example.com")] == [
        "key_b"
    ]
    assert export_audit(warehouse, subject="email:nobody@example.com") == []


def test_bad_arguments_are_refused_and_write_nothing(duck: Warehouse) -> None:
    bad = [
        lambda: record(duck, "", "profile.read"),
        lambda: record(duck, "cli", "Profile Read"),
        lambda: record(duck, "cli", "profile"),
        lambda: record(duck, "cli", "profile.read", reason="line\nbreak"),
        lambda: record(duck, "cli", "profile.read", reason="x" * 501),
    ]
    for call in bad:
        with pytest.raises(InvalidInput):
            call()
    assert duck.count("audit_log") == 0
    with pytest.raises(InvalidInput) as naive:
        export_audit(duck, start="2026-01-01T00:00:00")
    assert naive.value.field == "from"
    with pytest.raises(InvalidInput) as garbled:
        export_audit(duck, end="yesterday")
    assert garbled.value.field == "to"
    with pytest.raises(InvalidInput):
        export_audit(duck, start="2026-02-01", end="2026-01-01")


def test_the_module_has_no_way_to_change_or_remove_entries() -> None:
    public = [name for name in dir(audit) if not name.startswith("_")]
    verbs = ("update", "delete", "remove", "drop", "truncate", "replace", "edit", "purge")
    assert not [name for name in public if name.startswith(verbs)]


def test_key_changes_are_audited_without_the_secret(duck: Warehouse) -> None:
    key, secret = add_key(duck, "analyst", "read", actor="key_boss", reason="new analyst")
    assert key.key_id == key_id_of(secret)
    revoke_key(duck, key.key_id, reason="left the team")
    revoke_key(duck, key.key_id)  # already revoked: nothing changes, nothing recorded
    entries = export_audit(duck, action="key.")
    assert [(e["action"], e["actor"], e["reason"]) for e in entries] == [
        ("key.add", "key_boss", "new analyst"),
        ("key.revoke", "cli", "left the team"),
    ]
    assert all(e["details"]["key_id"] == key.key_id for e in entries)
    assert entries[0]["details"]["role"] == "read"
    text = str(duck.query("SELECT * FROM audit_log").to_pylist())
    assert secret not in text and secret[8:] not in text


def test_consent_changes_write_through_the_one_function(duck: Warehouse) -> None:
    record_consent(
        duck, "email:Ana@Example.com", {"email_marketing": "granted"}, actor="key_x", reason="form"
    )
    source = add_source(duck, "website", "web").source.source_id
    set_source_mode(duck, source, "pseudonymous", actor="key_y")
    consent = export_audit(duck, action="consent.set")
    assert len(consent) == 1
    # normalised and blinded, as stored: the log names no one in clear
    assert consent[0]["subject"] == stored(duck, "email:ana@example.com")
    assert (consent[0]["actor"], consent[0]["reason"]) == ("key_x", "form")
    assert consent[0]["details"]["status"] == "granted"
    mode = export_audit(duck, action="source.consent_mode")
    assert [(e["actor"], e["subject"], e["details"]["mode"]) for e in mode] == [
        ("key_y", source, "pseudonymous")
    ]


def test_a_profile_read_is_audited_only_when_it_returns_data(duck: Warehouse) -> None:
    _story(duck)
    build(duck)
    found = audited_profile(duck, "email:ana@example.com", 3, actor="key_r", reason="refund")
    assert found["orders"] == 2 and len(found["timeline"]) == 3
    with pytest.raises(NotFound):
        audited_profile(duck, "email:nobody@example.com", actor="key_r")
    with pytest.raises(InvalidInput):
        audited_profile(duck, "email:ana@example.com", actor="key_r", reason="a\x00b")
    [entry] = export_audit(duck)
    assert entry["action"] == "profile.read" and entry["actor"] == "key_r"
    assert entry["subject"] == found["customer_id"] and entry["reason"] == "refund"
    assert entry["details"] == {"identifier": stored(duck, "email:ana@example.com"), "limit": 3}


def test_the_cli_profile_command_is_audited_as_cli(tmp_path: Path) -> None:
    url = duckdb_url(tmp_path / "touchpoints.duckdb")
    warehouse = connect(url)
    _story(warehouse)
    build(warehouse)
    warehouse.close()
    shown = cli("profile", "email:ana@example.com", "--format", "json", warehouse=url)
    assert shown.returncode == 0, shown.stderr
    warehouse = connect(url)
    try:
        [entry] = export_audit(warehouse)
        assert (entry["action"], entry["actor"]) == ("profile.read", "cli")
        assert entry["subject"] == _customer(warehouse, "email:ana@example.com")
    finally:
        warehouse.close()


# -- over HTTP --------------------------------------------------------------------------


def test_profile_reads_over_http_name_the_key_and_the_reason(server: LiveServer) -> None:
    _story(server.warehouse)
    build(server.warehouse)
    reader_key, reader = add_key(server.warehouse, "analyst", "read")
    base = server.url + "/v1/profiles/"

    def get(path: str, key: str, **kwargs: object) -> httpx.Response:
        return httpx.get(base + path, headers=_bearer(key), timeout=30, **kwargs)  # type: ignore[arg-type]

    assert get("email:ana@example.com", reader, params={"reason": "ticket 7"}).status_code == 200
    by_header = httpx.get(
        base + "user_id:u-1",
        headers=_bearer(reader, **{"X-Touchpoints-Reason": "chargeback"}),
        timeout=30,
    )
    assert by_header.status_code == 200
    assert get("email:ana@example.com", ADMIN_TOKEN).status_code == 200
    # refused or failed reads return no data and leave no read entry
    assert get("email:nobody@example.com", reader).status_code == 404
    assert get("email:ana@example.com", server.write_key).status_code == 403
    too_long = get("email:ana@example.com", reader, params={"reason": "x" * 600})
    assert too_long.status_code == 400 and too_long.json()["field"] == "reason"
    assert "orders" not in too_long.text

    entries = export_audit(server.warehouse, action="profile.read")
    customer = _customer(server.warehouse, "email:ana@example.com")
    assert [(e["actor"], e["reason"], e["subject"]) for e in entries] == [
        (reader_key.key_id, "ticket 7", customer),
        (reader_key.key_id, "chargeback", customer),
        ("cli", None, customer),
    ]
    assert entries[1]["details"]["identifier"] == "user_id:u-1"


def test_audit_export_over_http_json_and_csv(server: LiveServer) -> None:
    warehouse = server.warehouse
    _, admin = add_key(warehouse, "dpo", "admin", reason="audit")
    _, reader = add_key(warehouse, "analyst", "read")
    made = httpx.post(
        server.url + "/v1/admin/keys",
        json={"name": "bi", "role": "read"},
        headers=_bearer(admin, **{"X-Touchpoints-Reason": "dashboard"}),
        timeout=30,
    ).json()
    httpx.post(
        f"{server.url}/v1/admin/keys/{made['key_id']}/revoke",
        params={"reason": "rotated"},
        headers=_bearer(ADMIN_TOKEN),
        timeout=30,
    ).raise_for_status()
    url = server.url + "/v1/admin/audit"

    body = httpx.get(url, params={"action": "key."}, headers=_bearer(admin), timeout=30).json()
    assert body["count"] == len(body["entries"]) == 4
    actions = [(e["action"], e["actor"], e["reason"]) for e in body["entries"]]
    assert actions == [
        ("key.add", "cli", "audit"),
        ("key.add", "cli", None),
        ("key.add", key_id_of(admin), "dashboard"),
        ("key.revoke", "cli", "rotated"),
    ]
    assert body["entries"][2]["details"] == {"key_id": made["key_id"], "name": "bi", "role": "read"}

    today = datetime.now(UTC).date().isoformat()
    as_csv = httpx.get(
        url,
        params={"format": "csv", "from": today, "to": today, "action": "key.revoke"},
        headers=_bearer(admin),
        timeout=30,
    )
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert list(rows[0]) == list(audit.COLUMNS)
    assert [(r["action"], r["actor"], r["reason"]) for r in rows] == [
        ("key.revoke", "cli", "rotated")
    ]
    assert '"key_id": "' in rows[0]["details"] or '"key_id":"' in rows[0]["details"]
    offset = httpx.get(
        url, params={"from": "2999-01-01T00:00:00+01:00"}, headers=_bearer(admin), timeout=30
    ).json()
    assert offset["count"] == 0

    # reading the log is itself recorded, with its filters
    reads = export_audit(warehouse, action="audit.export")
    assert [e["actor"] for e in reads] == [key_id_of(admin)] * 3
    assert reads[0]["details"] == {"action": "key.", "entries": 4}

    # admin keys only, read only, and bad filters say which
    assert httpx.get(url, headers=_bearer(reader), timeout=30).status_code == 403
    assert httpx.get(url, timeout=30).status_code == 401
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        refused = httpx.request(method, url, headers=_bearer(admin), timeout=30)
        assert refused.status_code == 405, method
    for params, field in (
        ({"format": "xml"}, "format"),
        ({"from": "last week"}, "from"),
        ({"to": "2026-01-01T10:00:00"}, "to"),
    ):
        bad = httpx.get(url, params=params, headers=_bearer(admin), timeout=30)
        assert bad.status_code == 400 and bad.json()["field"] == field, params
    assert len(export_audit(warehouse, action="audit.export")) == 3  # refused: not recorded
