"""Encryption at rest: personal values sealed with AES-256-GCM, blinded with HMAC-SHA256,
the key from the environment, a key file, or a file beside the warehouse. The checks
open the DuckDB file directly, as someone holding a copy of it without the key would,
and recompute the cipher and the blinds from the documented construction."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from pathlib import Path

import duckdb
import httpx
import ibis
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import duckdb_url
from tests.live import start
from touchpoints.errors import WarehouseError
from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.identifiers import normalise
from touchpoints.privacy.rebuild import rebuild
from touchpoints.warehouse import TABLES, Warehouse, connect
from touchpoints.warehouse.personal import IdentifierRules, canonical
from touchpoints.warehouse.vault import KEY_ENV, KEY_FILE_ENV, TOKEN, Vault, new_key

#: A synthetic person: every personal trait the product seals.
ZOE = {
    "email": "Zoe.Quill@Example.net",
    "phone": "+44 20 7946 0321",
    "name": "Zoe Quill",
    "firstName": "Zoe",
    "lastName": "Quill",
    "address": {"street": "12 Synthetic Row", "city": "Testville"},
}
CLEAR = [
    "zoe.quill@example.net",
    "+442079460321",
    "7946 0321",
    "zoe quill",
    "quill",
    "synthetic row",
    "testville",
]


def _subkey(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _collect(tmp_path: Path) -> tuple[Path, list[str]]:
    """Zoe through the real collector (traits, context.traits, a rejected message, an
    email as user id), a build; the file closed. Returns its path and her profile's
    identifiers as the API shows them to an admin."""
    path = tmp_path / "sealed.duckdb"
    warehouse = connect(duckdb_url(path))
    live = start(warehouse)
    auth = (live.write_key, "")
    batch = [
        {"type": "identify", "userId": "zq-1", "anonymousId": "anon-zq", "traits": ZOE},
        {
            "type": "track",
            "event": "Order Completed",
            "anonymousId": "anon-zq",
            "properties": {"revenue": 12.5, "email": ZOE["email"]},
            "context": {"traits": {"phone": ZOE["phone"], "name": ZOE["name"]}},
        },
        {"type": "identify", "userId": "zoe.quill@example.net", "anonymousId": "anon-zq-2"},
        {"type": "track", "userId": "zq-1", "traits": ZOE, "timestamp": "not a time"},
    ]
    answer = httpx.post(f"{live.url}/v1/batch", json={"batch": batch}, auth=auth)
    assert answer.status_code in (200, 400), answer.text
    rebuild(live.warehouse)
    shown = httpx.get(
        f"{live.url}/v1/profiles/email:{ZOE['email']}",
        headers={"Authorization": "Bearer test-admin-token"},
    )
    assert shown.status_code == 200, shown.text
    profile = shown.json()
    assert '"Zoe Quill"' in profile["traits"]  # an authorised read sees her in clear
    live.warehouse.backend.raw_sql("CHECKPOINT")
    live.stop()
    warehouse.close()
    return path, profile["identifiers"]


def test_personal_values_are_unreadable_in_the_file_without_the_key(tmp_path: Path) -> None:
    path, identifiers = _collect(tmp_path)
    assert "email:zoe.quill@example.net" in identifiers
    assert "phone:+442079460321" in identifiers

    con = duckdb.connect(str(path), read_only=True)
    cells = {
        name: [str(v).lower() for row in con.sql(f'SELECT * FROM "{name}"').fetchall() for v in row]
        for name in TABLES
    }
    found = {
        name: [c for c in CLEAR if any(c in cell for cell in text)] for name, text in cells.items()
    }
    assert {name: hit for name, hit in found.items() if hit} == {}
    raw = path.read_bytes().lower()
    assert [c for c in CLEAR if c.encode() in raw] == []
    assert con.sql("SELECT count(*) FROM rejected_events").fetchone()[0] == 1

    # what is there instead: tokens, whose cipher and blind are as documented
    traits = con.sql(
        "SELECT traits FROM events WHERE type = 'identify' AND user_id = 'zq-1'"
    ).fetchone()[0]
    email_token = traits.split('"email":"')[1].split('"')[0]
    match = TOKEN.match(email_token)
    assert match is not None and match.group(1) == "i"
    master = _unb64(os.environ[KEY_ENV])
    sealed = _unb64(match.group(3))
    plain = AESGCM(_subkey(master, b"touchpoints seal v1")).decrypt(
        sealed[:12], sealed[12:], b"email"
    )
    assert plain.decode() == ZOE["email"]
    blind_key = _subkey(master, b"touchpoints blind v1")
    expected = hmac.new(blind_key, b"email\x1fzoe.quill@example.net", hashlib.sha256).digest()
    assert _unb64(match.group(2)) == expected
    identities = {r[0] for r in con.sql("SELECT identifier FROM identities").fetchall()}
    assert f"email:{match.group(2)}" in identities
    con.close()

    # another key opens nothing, and the warehouse refuses to run with it
    stranger = Vault(_unb64(new_key()))
    with pytest.raises(WarehouseError, match="wrong key"):
        stranger.open("email", email_token)
    os.environ[KEY_ENV], right = new_key(), os.environ[KEY_ENV]
    try:
        with pytest.raises(WarehouseError, match=KEY_ENV):
            connect(duckdb_url(path))
    finally:
        os.environ[KEY_ENV] = right


def test_a_sealed_value_cannot_be_altered_or_moved() -> None:
    vault = Vault(_unb64(new_key()))
    token = vault.seal("email", "a@example.com", vault.blind("email", "a@example.com"), True)
    assert vault.open("email", token) == "a@example.com"
    head, sealed = token.rsplit(":", 1)
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(WarehouseError):
        vault.open("email", f"{head}:{flipped}")
    with pytest.raises(WarehouseError):  # sealed for `email`, presented as a name
        vault.open("name", token)
    address = vault.seal("address", {"city": "Testville"}, vault.blind("address", "x"))
    assert vault.open("address", address) == {"city": "Testville"}
    # two seals of one value differ (fresh nonces); their blinds do not
    again = vault.seal("email", "a@example.com", vault.blind("email", "a@example.com"), True)
    assert again != token and again.split(":")[1] == token.split(":")[1]


def test_the_key_file_beside_the_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    path = tmp_path / "w.duckdb"
    first = connect(duckdb_url(path))
    check = first.vault.check_value
    first.close()
    key_file = tmp_path / "w.duckdb.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = connect(duckdb_url(path))
    assert again.vault.check_value == check and again.vault.origin == str(key_file)
    again.close()

    # the same key named by TOUCHPOINTS_KEY_FILE opens it; a missing or bad file does not
    moved = tmp_path / "elsewhere.key"
    moved.write_text(key_file.read_text())
    key_file.unlink()
    monkeypatch.setenv(KEY_FILE_ENV, str(moved))
    connect(duckdb_url(path)).close()
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "missing.key"))
    with pytest.raises(WarehouseError, match="does not exist"):
        connect(duckdb_url(path))
    monkeypatch.delenv(KEY_FILE_ENV)
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    with pytest.raises(WarehouseError, match="32 bytes"):
        connect(duckdb_url(path))


TRICKY = [
    " Ana.Lima@Example.COM ",
    "\tbo+news@example.org\n",
    "frank@example.com",
    "vf@example.com\x0b",
    "no-at-sign.example.com",
    "two@@example.com",
    "a b@example.com",
    "(415) 555-0142",
    "+44 (0)20 7946 0321",
    "0044 20 7946 0321",
    "020 7946 0321",
    "123",
    "+0123456789",
    "",
]


def _sql_forms(warehouse: Warehouse, values: list[str], config: IdentityConfig) -> list[tuple]:
    given_values = ibis.memtable(
        {"i": list(range(len(values))), "raw": values}, schema={"i": "int64", "raw": "string"}
    )
    forms = given_values.select(
        "i",
        email=normalise("email", given_values.raw, config),
        phone=normalise("phone", given_values.raw, config),
    ).order_by("i")
    rows = warehouse.backend.to_pyarrow(forms).to_pylist()
    return [(r["email"], r["phone"]) for r in rows]


@pytest.mark.parametrize("config", [IdentityConfig(), IdentityConfig("44", True)])
def test_python_and_sql_canonical_forms_agree(warehouse: Warehouse, config: IdentityConfig) -> None:
    """The write path blinds the Python form; lookups of rows stored before sealing use
    the SQL one: on both engines they must be the same text."""
    rules = IdentifierRules(config.country_code, config.strip_plus_addressing)
    expected = [(canonical("email", v, rules), canonical("phone", v, rules)) for v in TRICKY]
    assert _sql_forms(warehouse, TRICKY, config) == expected
    assert expected[2] == ("frank@example.com", None) and expected[3][0] == "vf@example.com"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(alphabet=st.characters(codec="ascii"), max_size=24), min_size=1, max_size=12)
)
def test_python_and_sql_canonical_forms_agree_on_any_text(values: list[str]) -> None:
    con = connect("duckdb://:memory:")
    config = IdentityConfig("33")
    rules = IdentifierRules("33")
    expected = [(canonical("email", v, rules), canonical("phone", v, rules)) for v in values]
    assert _sql_forms(con, values, config) == expected
    con.close()
