"""Reading consent: the one question every layer asks, and what a DPO shows.

Reading resolves the identifier to its customer (`identities`), and the latest record
per purpose across all of that customer's identifiers wins (ties: the later received,
then the larger consent id). Before any build, or for an identifier no event carried,
an identifier stands for itself. With no record, the purpose's default applies
(`consent_config`). Each answer syncs decisions from new events first (`consent_sync`)
unless the caller says it just did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir

from touchpoints.errors import InvalidInput
from touchpoints.privacy.consent_config import load_config
from touchpoints.privacy.consent_records import aware, public_row, utc
from touchpoints.privacy.consent_subjects import FALLBACK, person_subjects
from touchpoints.privacy.consent_sync import sync_consents
from touchpoints.warehouse import Warehouse

__all__ = ["allowed", "allowed_many", "consent_status"]


def allowed(
    warehouse: Warehouse,
    identifier_or_customer_id: str,
    purpose: str,
    at: datetime | None = None,
    *,
    sync: bool = True,
) -> bool:
    """May this person's data be used for `purpose` now (or at `at`)? The latest record
    across all their identifiers decides; without one, the purpose's default does.
    `sync=False` skips reading new consent events (when the caller just synced)."""
    config = load_config(warehouse)
    config.check_purpose(purpose)
    when = aware(at, "at") if at is not None else None
    with warehouse.lock:
        if sync:
            sync_consents(warehouse)
        _, subjects = person_subjects(warehouse, identifier_or_customer_id)
        latest = _latest(warehouse, subjects, purpose, when)
    if latest is None:
        return config.default(purpose)
    return latest["status"] == "granted"


def allowed_many(
    warehouse: Warehouse,
    customer_ids: ir.Table | Sequence[str],
    purpose: str,
    at: datetime | None = None,
    *,
    sync: bool = True,
) -> ir.Table:
    """Table (customer_id, allowed): the answer of `allowed` for many customers at once,
    as one Ibis expression (any engine). `customer_ids` is a table with a `customer_id`
    column or a list; each id appears once in the answer. Customer ids of identifiers no
    build has seen (`user:…`, `anon:…`, see `with_customer`) are understood too."""
    config = load_config(warehouse)
    config.check_purpose(purpose)
    when = aware(at, "at") if at is not None else None
    if isinstance(customer_ids, ir.Table):
        if "customer_id" not in customer_ids.columns:
            raise InvalidInput("the table needs a customer_id column", field="customer_ids")
        wanted = customer_ids.select(customer_id=customer_ids.customer_id.cast("string"))
    else:
        ids = [customer_ids] if isinstance(customer_ids, str) else list(customer_ids)
        if not all(isinstance(i, str) for i in ids):
            raise InvalidInput("customer ids are strings", field="customer_ids")
        wanted = ibis.memtable({"customer_id": ids}, schema={"customer_id": "string"})
    if sync:
        with warehouse.lock:
            sync_consents(warehouse)
    wanted = wanted.distinct()
    consents = warehouse.table("consents")
    mine = consents.filter(consents.purpose == purpose)
    if when is not None:
        mine = mine.filter(mine.recorded_at <= ibis.literal(when, type="timestamp('UTC')"))
    identities = warehouse.table("identities").select(
        _identifier="identifier", _customer="customer_id"
    )
    joined = mine.left_join(identities, mine.subject == identities["_identifier"])
    fallback = ibis.cases(
        *[
            (joined.subject.startswith(kind), prefix + joined.subject.substr(len(kind)))
            for prefix, kind in FALLBACK
        ],
        else_=joined.subject,
    )
    decided = joined.select(
        customer_id=ibis.coalesce(joined["_customer"], fallback),
        status=joined.status,
        recorded_at=joined.recorded_at,
        received_at=joined.received_at,
        consent_id=joined.consent_id,
    )
    ranked = decided.mutate(
        _rank=ibis.row_number().over(
            group_by=decided.customer_id,
            order_by=[
                ibis.desc(decided.recorded_at),
                ibis.desc(decided.received_at),
                ibis.desc(decided.consent_id),
            ],
        )
    )
    latest = ranked.filter(ranked["_rank"] == 0).select(
        _who=ranked.customer_id, _status=ranked.status
    )
    answer = wanted.left_join(latest, wanted.customer_id == latest["_who"])
    return answer.select(
        customer_id=answer.customer_id,
        allowed=ibis.coalesce(
            answer["_status"] == "granted", ibis.literal(config.default(purpose))
        ),
    )


def consent_status(
    warehouse: Warehouse,
    identifier_or_customer_id: str,
    at: datetime | str | None = None,
    *,
    sync: bool = True,
) -> dict[str, Any]:
    """A person's current standing per purpose and their whole consent history (what a
    data-protection officer shows): customer id, identifiers, purposes, history."""
    config = load_config(warehouse)
    when = aware(at, "at") if at is not None else None
    with warehouse.lock:
        if sync:
            sync_consents(warehouse)
        customer, subjects = person_subjects(warehouse, identifier_or_customer_id)
        table = warehouse.table("consents")
        history = (
            table.filter(table.subject.isin(subjects or [""]))
            .order_by("recorded_at", "received_at", "consent_id")
            .to_pyarrow()
            .to_pylist()
        )
    if when is not None:
        history = [row for row in history if utc(row["recorded_at"]) <= when]
    purposes: dict[str, dict[str, Any]] = {}
    for purpose in config.purposes:
        latest = _pick_latest([row for row in history if row["purpose"] == purpose])
        purposes[purpose] = {
            "allowed": latest["status"] == "granted" if latest else config.default(purpose),
            "status": latest["status"] if latest else None,
            "default": config.default(purpose),
            "recorded_at": latest["recorded_at"].isoformat() if latest else None,
            "source": latest["source"] if latest else None,
            "policy_version": latest["policy_version"] if latest else None,
            "subject": latest["subject"] if latest else None,
        }
    return {
        "identifier": identifier_or_customer_id,
        "customer_id": customer,
        "identifiers": subjects,
        "purposes": purposes,
        "history": [public_row(row) for row in history],
    }


def _latest(
    warehouse: Warehouse, subjects: list[str], purpose: str, when: datetime | None
) -> dict[str, Any] | None:
    if not subjects:
        return None
    table = warehouse.table("consents")
    mine = table.filter(table.subject.isin(subjects) & (table.purpose == purpose))
    if when is not None:
        mine = mine.filter(mine.recorded_at <= ibis.literal(when, type="timestamp('UTC')"))
    rows = (
        mine.order_by(ibis.desc("recorded_at"), ibis.desc("received_at"), ibis.desc("consent_id"))
        .limit(1)
        .to_pyarrow()
        .to_pylist()
    )
    return rows[0] if rows else None


def _pick_latest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not rows:
        return None
    return max(rows, key=lambda r: (utc(r["recorded_at"]), utc(r["received_at"]), r["consent_id"]))
