"""Recompute the blinds of sealed emails and phones when identity's rules change.

A blind is the keyed hash of an identifier's canonical form, and the form depends on
identity's settings (calling code, plus-addressing). The sealed original is kept, so new
rules need no one's data again: each token is opened, made canonical under the new
rules and given its new blind; the ciphertext itself is not touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pyarrow as pa

from touchpoints.warehouse.connection import Warehouse
from touchpoints.warehouse.personal import BLINDED_KINDS, IdentifierRules, blind_value
from touchpoints.warehouse.vault import TOKEN, Vault

KEY = ("source_id", "message_id")
MARK = '"tp1'  # how a token starts inside JSON text
JSON_PARTS = ("traits", "context", "properties")


def reblind(warehouse: Warehouse, rules: IdentifierRules) -> int:
    """Give every sealed email and phone in `events` its blind under `rules`, use those
    rules for what is written from now on, and return how many events changed."""
    warehouse.use_identifier_rules(rules)
    events = warehouse.table("events")
    sealed = events.traits.contains(MARK) | events.context.contains(MARK)
    sealed |= events.properties.contains(MARK)
    rows = events.filter(sealed).select(*KEY, *JSON_PARTS).to_pyarrow().to_pylist()
    vault = warehouse.vault
    changed = []
    for row in rows:
        fresh = {c: _reblinded(vault, row[c], rules, c == "context") for c in JSON_PARTS}
        if fresh != {c: row[c] for c in JSON_PARTS}:
            changed.append({**{k: row[k] for k in KEY}, **fresh})
    if changed:
        schema = pa.schema([(name, pa.string()) for name in (*KEY, *JSON_PARTS)])
        warehouse.update_many("events", KEY, pa.Table.from_pylist(changed, schema=schema))
    return len(changed)


def _reblinded(vault: Vault, text: str | None, rules: IdentifierRules, nested: bool) -> Any:
    if text is None or MARK not in text:
        return text
    value = orjson.loads(text)
    if not isinstance(value, Mapping):
        return text
    out = dict(value)
    if nested and isinstance(out.get("traits"), Mapping):
        out["traits"] = _fields(vault, out["traits"], rules)
    else:
        out = _fields(vault, out, rules)
    return orjson.dumps(out).decode() if out != value else text


def _fields(vault: Vault, values: Mapping[str, Any], rules: IdentifierRules) -> dict[str, Any]:
    out = dict(values)
    for kind in BLINDED_KINDS:
        token = out.get(kind)
        match = TOKEN.match(token) if isinstance(token, str) else None
        if match is None:
            continue
        blind, identifier = blind_value(vault, kind, vault.open(kind, token), rules)
        flag = match.group(1) if match.group(1) == "o" else "i" if identifier else ""
        out[kind] = f"tp1{flag}:{blind}:{match.group(3)}"
    return out
