"""Tombstones of erased people: keyed hashes, never the identifiers themselves.

An erasure records HMAC-SHA256 of each identifier (`kind:value`) and customer id the
person had, keyed by a random salt kept in `meta` (`erasure_salts`; a new salt can be
added later, old hashes keep naming theirs). Nothing in a tombstone can be read back or
recomputed without the salt, yet the same identifier arriving again is recognised.

Customer ids are `cus_` + MD5 of an identifier, so the same events arriving again
would get the erased person's old id back. `relabel_returning` (run after every build
by `touchpoints.privacy.rebuild`) gives such a customer a new random id instead, so
nothing that still holds the old id (a sent export, an email tool) links to them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime

import ibis
import orjson
import pyarrow as pa

from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import ERASURES

SALTS_KEY = "erasure_salts"
_ERASURES_ARROW = ERASURES.to_pyarrow()


def _salts(warehouse: Warehouse) -> dict[str, str]:
    stored = warehouse.get_meta(SALTS_KEY)
    return dict(orjson.loads(stored)["salts"]) if stored else {}


def current_salt(warehouse: Warehouse) -> tuple[str, bytes]:
    """The salt new tombstones use (made on first use): (salt id, key)."""
    stored = warehouse.get_meta(SALTS_KEY)
    if stored:
        data = orjson.loads(stored)
        return data["current"], bytes.fromhex(data["salts"][data["current"]])
    salt_id = "salt_" + secrets.token_hex(4)
    key = secrets.token_bytes(32)
    body = {"current": salt_id, "salts": {salt_id: key.hex()}}
    warehouse.set_meta(SALTS_KEY, orjson.dumps(body).decode())
    return salt_id, key


def salted_hash(key: bytes, text: str) -> str:
    """Hex HMAC-SHA256 of `text` under `key`."""
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def record(warehouse: Warehouse, erasure_id: str, texts: Iterable[str], at: datetime) -> int:
    """Store a tombstone hash of each text; returns how many."""
    salt_id, key = current_salt(warehouse)
    hashes = sorted({salted_hash(key, text) for text in texts})
    rows = [
        {"erasure_id": erasure_id, "hash": h, "salt_id": salt_id, "erased_at": at} for h in hashes
    ]
    warehouse.insert("erasures", pa.Table.from_pylist(rows, schema=_ERASURES_ARROW))
    return len(rows)


def erased(warehouse: Warehouse, texts: Iterable[str]) -> set[str]:
    """Which of `texts` (identifiers or customer ids) belonged to an erased person."""
    texts = set(texts)
    salts = _salts(warehouse)
    if not texts or not salts:
        return set()
    table = warehouse.table("erasures")
    stored = table.select("hash", "salt_id").distinct().to_pyarrow().to_pylist()
    known = {(row["salt_id"], row["hash"]) for row in stored}
    found = set()
    for salt_id, key in salts.items():
        raw = bytes.fromhex(key)
        found |= {t for t in texts if (salt_id, salted_hash(raw, t)) in known}
    return found


def relabel_returning(warehouse: Warehouse) -> dict[str, str]:
    """Give every customer whose id is an erased person's a new random id (identities,
    profiles, identity merges); returns {old: new} (no ids are logged)."""
    if warehouse.count("erasures") == 0:
        return {}
    with warehouse.lock:
        identities = warehouse.table("identities")
        ids = identities.select("customer_id").distinct().to_pyarrow().column(0).to_pylist()
        renamed = {old: "cus_" + secrets.token_hex(10) for old in sorted(erased(warehouse, ids))}
        for old, new in renamed.items():
            warehouse.update_rows("identities", "customer_id", old, {"customer_id": new})
            for table, column in (
                ("profiles", "customer_id"),
                ("identity_merges", "customer_id"),
                ("identity_merges", "merged_customer_id"),
            ):
                rows = warehouse.table(table)
                if int(rows.filter(rows[column] == ibis.literal(old)).count().execute()):
                    warehouse.update_rows(table, column, old, {column: new})
    return renamed
