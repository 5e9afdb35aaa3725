"""Access and portability (GDPR Art. 15 and 20): one archive of everything held about a
person, across all their identifiers.

The archive is a zip of `manifest.json` (who, when, the purposes each kind of data
serves and the person's consent per purpose), `data.json` (every table's rows) and one
CSV per table. The rows are those `person.owned` says are theirs, the same rows an
erasure removes. Layers above add what they derive (segment memberships, model scores)
through `extras`: a name and a function from the warehouse and the person to rows.
Each export writes a `privacy.export` audit entry naming the file it wrote, so an
erasure can delete it later.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from touchpoints.identity.reveal import Revealer
from touchpoints.privacy.consent_read import consent_status
from touchpoints.privacy.person import Person, find_person, identity_config, owned, write_audit
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import JSON_COLUMNS

ACTION = "privacy.export"
#: Columns holding JSON text, read as JSON in the archive.
PARSED = {**JSON_COLUMNS, "rejected_events": ("payload",), "profiles": ("traits",)}
Extra = Callable[[Warehouse, Person], list[dict[str, Any]]]

#: Why each kind of data is held (Art. 15(1)(a)).
PURPOSES: dict[str, str] = {
    "events": "what you did on the website, app, in store and with our emails: analytics; "
    "personalization, email marketing and advertising only with your consent",
    "rejected_events": "messages about you that failed validation, kept to fix data quality",
    "identities": "your identifiers, joined into one customer (identity resolution)",
    "identity_links": "which of your identifiers were seen together (identity resolution)",
    "identity_merges": "earlier customer records joined into yours (identity resolution)",
    "identity_quarantine": "identifiers of yours shared by too many people to join anyone",
    "profiles": "your customer profile: analytics; personalization and marketing with consent",
    "consents": "your consent decisions per purpose (proof of consent, GDPR Art. 7(1))",
    "audit_log": "who read, exported or changed your data, when and why (accountability)",
    "segments": "marketing segments you belong to, as of now",
    "audience_members": "the marketing audiences you were in, and when (email marketing, "
    "advertising: with your consent)",
    "offer_assignments": "offers decided for you, or that you were kept out of to measure them",
    "coupons": "coupon codes given to you",
    "sends": "the marketing emails we sent you, or did not send and why (proof of consent)",
    "trigger_pending": "a message waiting on what you do next (an abandoned cart)",
    "trigger_fires": "automatic messages your actions set off, and what came of them",
    "webhook_deliveries": "data about you sent to another system you were told of",
    "webhook_dead_letters": "data about you that failed to reach another system",
    "scores": "model scores about you (churn risk, lifetime value)",
}


def export_person(
    warehouse: Warehouse,
    identifier: str,
    *,
    actor: str = "cli",
    reason: str | None = None,
    out: str | Path | None = None,
    extras: Mapping[str, Extra] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """The archive (zip bytes) and its manifest; also written to `out` when given."""
    with warehouse.lock:
        person = find_person(warehouse, identifier)
        revealer = Revealer(warehouse.vault, warehouse.identifier_rules)
        tables = person_tables(warehouse, person, revealer)
        for name, extra in (extras or {}).items():
            tables[name] = [revealer.value(row) for row in extra(warehouse, person)]
        status = consent_status(warehouse, person.customer_id)
        manifest = {
            "generated_at": datetime.now(UTC).isoformat(),
            "customer_id": person.customer_id,
            "customer_ids": list(person.customer_ids),
            "identifiers": [revealer.value(i) for i in person.identifiers],
            "consent": status["purposes"],
            "tables": {
                name: {"rows": len(rows), "purpose": PURPOSES.get(name, "")}
                for name, rows in tables.items()
            },
        }
        archive = _zip(manifest, tables)
        path = Path(out).expanduser().resolve() if out is not None else None
        if path is not None:
            temporary = path.with_name(path.name + ".part")
            temporary.write_bytes(archive)
            os.replace(temporary, path)
        write_audit(
            warehouse,
            ACTION,
            actor=actor,
            subject=person.customer_id,
            reason=reason,
            details={
                "tables": {k: v["rows"] for k, v in manifest["tables"].items()},
                "path": str(path) if path else None,
                "bytes": len(archive),
            },
        )
    return archive, manifest


def person_tables(
    warehouse: Warehouse, person: Person, revealer: Revealer | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The person's rows of every table that holds any, as plain rows, their personal
    values opened (and their identifiers in clear) by `revealer` when given."""
    found = {}
    for name, predicate in owned(person, identity_config(warehouse)).items():
        table = warehouse.table(name)
        rows = table.filter(predicate(table)).to_pyarrow().to_pylist()
        parsed = PARSED.get(name, ())
        found[name] = [{k: _parsed(v) if k in parsed else v for k, v in r.items()} for r in rows]
    if revealer is not None:
        revealer.learn(row for rows in found.values() for row in rows)
        found = {name: [revealer.value(row) for row in rows] for name, rows in found.items()}
    return {
        name: sorted(rows, key=lambda r: orjson.dumps(r, default=str))
        for name, rows in found.items()
    }


def _parsed(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _zip(manifest: dict[str, Any], tables: dict[str, list[dict[str, Any]]]) -> bytes:
    buffer = io.BytesIO()
    options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", orjson.dumps(manifest, option=options))
        archive.writestr("data.json", orjson.dumps(tables, default=_plain, option=options))
        for name, rows in tables.items():
            archive.writestr(f"{name}.csv", _csv(rows))
    return buffer.getvalue()


def _csv(rows: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    columns = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.writer(text)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return text.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=_plain).decode()
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
