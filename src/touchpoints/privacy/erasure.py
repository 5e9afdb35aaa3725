"""Erasure (GDPR Art. 17): the person leaves every table, file and derived store.

`erase` runs, with the event writer's loads paused and the warehouse locked:

1. flush the writer, so everything acknowledged is in the warehouse;
2. find the person (`person.find_person`): identifiers, raw values, customer ids, and
   the digests of each;
3. delete the files of access exports the product made for them (their audit entries
   name the files);
4. delete their own rows (`person.owned`): events, rejected events naming them,
   identities, identity links, merges, quarantine rows, profiles, consents;
5. rewrite the audit entries about them: the subject becomes a salted hash
   (`erased:…`), and their identifiers in the details become `[erased]`;
6. scrub any other row of any table that still mentions them (an event of someone else
   whose properties hold their email, a segment rule naming them);
7. record tombstones (`tombstones.record`) and the `privacy.erase` audit entry;
8. remove them from spool files not yet loaded (`failed/` segments too);
9. rewrite the DuckDB file (`Warehouse.compact`): deleted rows stay in freed blocks of
   the file otherwise; then scan the tables and the file's bytes to prove it.

`segment_sizes` and `audience_sizes` hold counts only and stay. Activation rows naming
the person (audience stays, coupons, sends, trigger state, webhook deliveries) go with
the rest, so that nothing left can contact them; the tombstones keep an uploaded list
from bringing them back.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from touchpoints.errors import InvalidInput
from touchpoints.privacy import tombstones
from touchpoints.privacy.person import (
    CUSTOMER_TABLES,
    MIN_MENTION,
    Person,
    find_person,
    identity_config,
    mentions,
    owned,
    scrub_text,
    write_audit,
)
from touchpoints.warehouse import TABLES, Warehouse

ACTION = "privacy.erase"
EXPORT_ACTION = "privacy.export"
ERASED = "[erased]"
#: Deleted outright, in this order (the audit log is rewritten, not deleted).
OWN_TABLES = (
    "events",
    "rejected_events",
    "identities",
    "identity_links",
    "identity_merges",
    "identity_quarantine",
    "profiles",
    "consents",
    *CUSTOMER_TABLES,
    "trigger_pending",
)
#: Never scrubbed: tombstones are hashes; sizes are counts.
SKIPPED = frozenset({"erasures", "segment_sizes", "audience_sizes"})


def erase(
    warehouse: Warehouse,
    identifier: str,
    *,
    reason: str,
    actor: str = "cli",
    writer: Any = None,
    compact: bool = True,
) -> dict[str, Any]:
    """Erase the person with `identifier` (see the module docstring); returns what was
    removed per table and the result of the final scan. `writer` is the running
    server's event writer, if any."""
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise InvalidInput("give the reason for the erasure (1 to 500 characters)", field="reason")
    if writer is not None:
        writer.flush()
    with _paused(writer), warehouse.lock:
        person = find_person(warehouse, identifier)
        result = _erase(warehouse, person, reason.strip(), actor)
        if compact:
            result["compacted"] = warehouse.compact()
        result["remaining_rows"] = sum(traces(warehouse, person.forms).values())
        if warehouse.path is not None:
            result["remaining_in_file"] = len(scan_file(warehouse.path, person.forms))
    return result


@contextlib.contextmanager
def _paused(writer: Any) -> Iterator[None]:
    """Hold the spool loader still (it writes through its own cursor) while erasing."""
    lock = getattr(writer, "_load_lock", None)
    if lock is None:
        yield
        return
    with lock:
        yield


def _erase(warehouse: Warehouse, person: Person, reason: str, actor: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    erasure_id = "era_" + uuid.uuid4().hex[:16]
    _, key = tombstones.current_salt(warehouse)

    def hashed(text: str) -> str:
        return "erased:" + tombstones.salted_hash(key, text)[:32]

    predicates = owned(person, identity_config(warehouse))
    files = _remove_exports(warehouse, person, predicates["audit_log"])
    deleted = {name: warehouse.delete_where(name, predicates[name]) for name in OWN_TABLES}
    rewritten = _rewrite_audit(warehouse, person, predicates["audit_log"], hashed)
    scrubbed = {}
    for name in TABLES:
        if name not in SKIPPED:
            scrubbed[name] = scrub_table(warehouse, name, person.forms)
    stones = tombstones.record(warehouse, erasure_id, person.subjects, now)
    spool = scrub_spool(warehouse, person.forms)
    summary = {
        "erasure_id": erasure_id,
        "erased_at": now.isoformat(),
        "deleted": deleted,
        "audit_rewritten": rewritten,
        "scrubbed": {k: v for k, v in scrubbed.items() if v},
        "tombstones": stones,
        "exports_removed": files,
        "spool_rows_removed": spool,
    }
    write_audit(
        warehouse,
        ACTION,
        actor=actor,
        subject=hashed(person.customer_id),
        reason=reason,
        details=summary,
    )
    return summary


def _remove_exports(warehouse: Warehouse, person: Person, about: Any) -> int:
    """Delete the archive files earlier access exports of the person wrote."""
    log = warehouse.table("audit_log")
    rows = log.filter(about(log) & (log.action == EXPORT_ACTION)).details.to_pyarrow()
    removed = 0
    for details in rows.to_pylist():
        path = orjson.loads(details or "{}").get("path")
        if isinstance(path, str) and Path(path).is_file():
            Path(path).unlink()
            removed += 1
    return removed


def _rewrite_audit(warehouse: Warehouse, person: Person, about: Any, hashed: Any) -> int:
    """Audit entries about the person keep what happened, not who it happened to."""
    log = warehouse.table("audit_log")
    rows = log.filter(about(log)).to_pyarrow()
    if rows.num_rows == 0:
        return 0
    changed = []
    for row in rows.to_pylist():
        subject = row["subject"]
        if subject in person.subjects:
            row["subject"] = hashed(subject)
        else:
            row["subject"] = scrub_text(subject, person.forms, ERASED)
        row["details"] = scrub_text(row["details"], person.forms, ERASED)
        row["reason"] = scrub_text(row["reason"], person.forms, ERASED)
        changed.append(row)
    warehouse.delete_where("audit_log", about)
    warehouse.insert("audit_log", pa.Table.from_pylist(changed, schema=rows.schema))
    return len(changed)


def scrub_table(warehouse: Warehouse, name: str, forms: Iterable[str]) -> int:
    """Replace the forms in every row of `name` that still mentions them; returns how
    many rows changed."""
    forms = tuple(forms)
    table = warehouse.table(name)
    found = table.filter(mentions(table, forms)).to_pyarrow()
    if found.num_rows == 0:
        return 0
    rows = [{k: scrub_text(v, forms, ERASED) for k, v in row.items()} for row in found.to_pylist()]
    warehouse.delete_where(name, lambda t: mentions(t, forms))
    warehouse.insert(name, pa.Table.from_pylist(rows, schema=found.schema))
    return len(rows)


def traces(warehouse: Warehouse, forms: Iterable[str]) -> dict[str, int]:
    """Rows per table that still mention any of the forms (tombstones excepted)."""
    forms = tuple(forms)
    counts = {}
    for name in TABLES:
        if name == "erasures":
            continue
        table = warehouse.table(name)
        counts[name] = int(table.filter(mentions(table, forms)).count().execute())
    return counts


def scan_file(path: Path, forms: Iterable[str]) -> list[str]:
    """The forms (of at least MIN_MENTION characters) found in the bytes of the file
    and its write-ahead log, case-insensitively."""
    found = []
    for candidate in (path, path.with_name(path.name + ".wal")):
        if not candidate.is_file():
            continue
        data = candidate.read_bytes().lower()
        found += [f for f in forms if len(f) >= MIN_MENTION and f.lower().encode() in data]
    return sorted(set(found))


def scrub_spool(warehouse: Warehouse, forms: Iterable[str]) -> int:
    """Drop the person's rows from spool files not yet loaded; returns how many."""
    if warehouse.engine != "duckdb" or warehouse.path is None:
        return 0
    from touchpoints.warehouse.writer import spool_dir

    folder = spool_dir(warehouse)
    long = [f.lower().encode() for f in forms if len(f) >= MIN_MENTION]
    short = {f for f in forms if len(f) < MIN_MENTION}
    removed = 0
    for path in sorted([*folder.glob("*.json"), *folder.glob("failed/*.json")]):
        data = path.read_bytes()
        lowered = data.lower()
        if not any(form in lowered for form in long) and not short:
            continue
        rows = orjson.loads(data)
        kept = [row for row in rows if not _row_mentions(row, long, short)]
        if len(kept) == len(rows):
            continue
        removed += len(rows) - len(kept)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(orjson.dumps(kept))
        os.replace(temporary, path)
    return removed


def _row_mentions(row: dict[str, Any], long: list[bytes], short: set[str]) -> bool:
    text = orjson.dumps(row).lower()
    return any(form in text for form in long) or any(v in short for v in row.values())
