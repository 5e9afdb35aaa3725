"""Consent per purpose: an append-only history, and the one question every layer asks.

The history (`consents`) holds one row per decision of a person for a purpose: the
identifier it came with (`kind:value`, normalised as identity resolution does), the
purpose, `granted` / `denied` / `withdrawn`, where it came from, the policy version and
when the person decided (`recorded_at`). Rows are only ever appended; every appended row
also writes an `audit_log` row (action `consent.set`).

Reading resolves the identifier to its customer (`identities`), and the latest record
per purpose across all of that customer's identifiers wins (ties: the later received,
then the larger consent id). Before any build, or for an identifier no event carried,
an identifier stands for itself.

With no record, a purpose's default applies (`ConsentConfig.defaults`): `analytics` is
allowed (first-party measurement under legitimate interest), every other purpose —
personalization, email marketing, advertising, and any purpose configured later — is
denied until the person opts in, as GDPR expects of marketing.

Ways in:
- the collector: `sync_consents` reads `Consent Updated` events and `context.consent`
  (shape: `touchpoints.collect.consent`) received since its last run (a watermark in
  `meta`, re-reading a few minutes back for events loaded late) and appends their
  records idempotently (id from source id + message id + purpose). A consent event
  always records; `context.consent` on other events records only a change from the
  previous record of that identifier and purpose, so a banner that adds it to every
  call does not grow the history with every page view. Every read syncs first.
- `record` (the API), `import_consents` (rows from a file), `withdraw` (unsubscribe
  links; activation calls it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import ibis
import ibis.expr.types as ir
import orjson
import pyarrow as pa

from touchpoints.collect.consent import (
    CONSENT_EVENTS,
    STATUSES,
    choice,
    is_consent_event,
    read_choices,
    set_collection_mode,
)
from touchpoints.errors import InvalidInput
from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.identifiers import normalise
from touchpoints.identity.lookup import KINDS
from touchpoints.identity.resolve import SETTINGS as IDENTITY_SETTINGS
from touchpoints.privacy import audit
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.functions import json_text
from touchpoints.warehouse.schema import AUDIT_LOG, CONSENTS

__all__ = [
    "DEFAULT_PURPOSES",
    "STATUSES",
    "ConsentConfig",
    "allowed",
    "allowed_many",
    "consent_status",
    "import_consents",
    "load_config",
    "record",
    "save_config",
    "set_source_mode",
    "sync_consents",
    "withdraw",
]

DEFAULT_PURPOSES: tuple[str, ...] = (
    "analytics",
    "personalization",
    "email_marketing",
    "advertising",
)
#: Allowed when a person has no record for the purpose (see the module docstring).
DEFAULT_ALLOWED: Mapping[str, bool] = MappingProxyType({"analytics": True})

CONFIG_KEY = "consent_settings"
WATERMARK = "consent_watermark"
#: How far before the watermark each sync looks again, for events loaded late.
LOOKBACK = timedelta(minutes=5)
#: How far ahead of now a decision's time may be (clocks differ a little).
MAX_SKEW = timedelta(minutes=5)
ACTION = "consent.set"

_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_CUSTOMER = re.compile(r"^cus_[A-Za-z0-9_\-]{1,60}$")
#: Customer ids `with_customer` gives identifiers no build has seen yet.
_FALLBACK = (("user:", "user_id:"), ("anon:", "anonymous_id:"))
_CONSENTS_ARROW = CONSENTS.to_pyarrow()
_AUDIT_ARROW = AUDIT_LOG.to_pyarrow()


@dataclass(frozen=True)
class ConsentConfig:
    """The purposes consent is asked for, and which are allowed without a record."""

    purposes: tuple[str, ...] = DEFAULT_PURPOSES
    defaults: Mapping[str, bool] = field(default_factory=lambda: DEFAULT_ALLOWED)

    def __post_init__(self) -> None:
        if not self.purposes or not all(
            isinstance(p, str) and _PURPOSE.match(p) for p in self.purposes
        ):
            raise InvalidInput(
                "purposes is a list of names (lower-case letters, digits, _)", field="purposes"
            )
        unknown = set(self.defaults) - set(self.purposes)
        if unknown or not all(isinstance(v, bool) for v in self.defaults.values()):
            raise InvalidInput(
                "defaults maps configured purposes to true or false", field="defaults"
            )

    def default(self, purpose: str) -> bool:
        return bool(self.defaults.get(purpose, False))

    def check_purpose(self, purpose: Any, where: str = "purpose") -> str:
        if not isinstance(purpose, str) or purpose not in self.purposes:
            raise InvalidInput(
                f"purpose must be one of {', '.join(self.purposes)}, not {str(purpose)[:40]!r}",
                field=where,
            )
        return purpose

    def to_json(self) -> str:
        return orjson.dumps(
            {"purposes": list(self.purposes), "defaults": dict(self.defaults)}
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> ConsentConfig:
        data = orjson.loads(text)
        return cls(tuple(data["purposes"]), dict(data.get("defaults", {})))


def load_config(warehouse: Warehouse) -> ConsentConfig:
    """The stored consent settings, else the defaults."""
    stored = warehouse.get_meta(CONFIG_KEY)
    return ConsentConfig.from_json(stored) if stored else ConsentConfig()


def save_config(warehouse: Warehouse, config: ConsentConfig, *, actor: str = "server") -> None:
    """Keep consent settings for every later call (and audit the change)."""
    with warehouse.lock:
        warehouse.set_meta(CONFIG_KEY, config.to_json())
        _audit(warehouse, actor, "consent.settings", None, None, orjson.loads(config.to_json()))


# -- writing ---------------------------------------------------------------------------


def record(
    warehouse: Warehouse,
    subject: str,
    purposes: Mapping[str, Any],
    *,
    source: str = "api",
    policy_version: str | None = None,
    recorded_at: datetime | str | None = None,
    actor: str = "server",
    reason: str | None = None,
) -> list[dict[str, Any]]:
    """Append a person's decisions (purpose → `granted`/`denied`/`withdrawn`, or true /
    false); returns the rows stored. Nothing is stored unless all of it is valid."""
    if not isinstance(purposes, Mapping) or not purposes:
        raise InvalidInput("purposes maps each purpose to its status", field="purposes")
    rows = [
        {
            "subject": subject,
            "purpose": purpose,
            "status": status,
            "source": source,
            "policy_version": policy_version,
            "recorded_at": recorded_at,
        }
        for purpose, status in purposes.items()
    ]
    return _append(warehouse, rows, actor=actor, reason=reason, now_default=True, where="")


def withdraw(
    warehouse: Warehouse,
    identifier: str,
    purpose: str,
    source: str = "unsubscribe",
    *,
    actor: str = "server",
    reason: str | None = None,
) -> dict[str, Any]:
    """Record that a person withdrew consent for `purpose` now (an unsubscribe link)."""
    load_config(warehouse).check_purpose(purpose)
    rows = record(
        warehouse,
        identifier,
        {purpose: "withdrawn"},
        source=source,
        actor=actor,
        reason=reason,
    )
    return rows[0]


def import_consents(
    warehouse: Warehouse,
    rows: Iterable[Mapping[str, Any]],
    *,
    source: str = "import",
    actor: str = "import",
) -> int:
    """Append decisions from rows with `subject` (or `identifier`), `purpose`, `status`,
    `recorded_at` (aware datetime or ISO-8601 with offset) and optionally
    `policy_version` and `source`. All rows are checked before any is stored; a row
    imported before is skipped. Returns how many rows were new."""
    prepared = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInput("each row is a mapping of column to value", field=f"rows[{index}]")
        prepared.append(
            {
                "subject": row.get("subject", row.get("identifier")),
                "purpose": row.get("purpose"),
                "status": row.get("status"),
                "source": row.get("source") or source,
                "policy_version": row.get("policy_version"),
                "recorded_at": row.get("recorded_at"),
            }
        )
    stored = _append(warehouse, prepared, actor=actor, reason=None, now_default=False, where="rows")
    return len(stored)


def set_source_mode(
    warehouse: Warehouse, source_id: str, mode: str, *, actor: str = "server"
) -> dict[str, str]:
    """Set a source's collection mode (`off`, `pseudonymous`, `drop`) and audit it."""
    with warehouse.lock:
        previous = set_collection_mode(warehouse, source_id, mode)
        _audit(
            warehouse,
            actor,
            "source.consent_mode",
            source_id,
            None,
            {"mode": mode, "previous": previous},
        )
    return {"source_id": source_id, "consent_mode": mode, "previous": previous}


def _append(
    warehouse: Warehouse,
    rows: Sequence[Mapping[str, Any]],
    *,
    actor: str,
    reason: str | None,
    now_default: bool,
    where: str,
) -> list[dict[str, Any]]:
    """Check every row, normalise its subject, then store the new ones (all under the
    warehouse lock: one thread at a time uses the connection)."""
    with warehouse.lock:
        return _append_locked(warehouse, rows, actor, reason, now_default, where)


def _append_locked(
    warehouse: Warehouse,
    rows: Sequence[Mapping[str, Any]],
    actor: str,
    reason: str | None,
    now_default: bool,
    where: str,
) -> list[dict[str, Any]]:
    config = load_config(warehouse)
    now = datetime.now(UTC)
    checked = []
    for index, row in enumerate(rows):
        prefix = f"{where}[{index}]." if where else ""
        purpose_field = f"{prefix}purpose" if where else f"purposes.{row.get('purpose')}"
        status_field = f"{prefix}status" if where else purpose_field
        purpose = config.check_purpose(row.get("purpose"), purpose_field)
        status = choice(row.get("status"))
        if status is None:
            raise InvalidInput(
                f"status must be one of {', '.join(STATUSES)}, not {str(row.get('status'))[:40]!r}",
                field=status_field,
            )
        recorded = row.get("recorded_at")
        if recorded is None and not now_default:
            raise InvalidInput("recorded_at is required", field=f"{prefix}recorded_at")
        recorded_at = now if recorded is None else _aware(recorded, f"{prefix}recorded_at")
        if recorded_at > now + MAX_SKEW:
            raise InvalidInput("recorded_at is in the future", field=f"{prefix}recorded_at")
        checked.append(
            {
                "subject": _subject_text(row.get("subject"), f"{prefix}subject"),
                "purpose": purpose,
                "status": status,
                "source": _short_text(row.get("source"), f"{prefix}source", required=True),
                "policy_version": _short_text(
                    row.get("policy_version"), f"{prefix}policy_version", required=False
                ),
                "recorded_at": recorded_at,
                "received_at": now,
            }
        )
    fields = [f"{where}[{i}].subject" if where else "subject" for i in range(len(checked))]
    subjects = normalise_subjects(warehouse, [r["subject"] for r in checked], fields)
    for row, subject in zip(checked, subjects, strict=True):
        row["subject"] = subject
        row["consent_id"] = _consent_id(
            "record",
            row["source"],
            subject,
            row["purpose"],
            row["status"],
            row["recorded_at"].isoformat(),
            row["policy_version"] or "",
        )
    return _store(warehouse, checked, actor=actor, reason=reason)


def _store(
    warehouse: Warehouse,
    rows: list[dict[str, Any]],
    *,
    actor: str,
    reason: str | None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Append the consent rows whose id is new, and an audit row for each."""
    unique = {row["consent_id"]: row for row in rows}
    with warehouse.lock:
        if unique:
            table = warehouse.table("consents")
            ids = ibis.memtable({"_id": list(unique)}, schema={"_id": "string"})
            existing = (
                table.semi_join(ids, table.consent_id == ids["_id"])
                .select("consent_id")
                .to_pyarrow()
                .column("consent_id")
                .to_pylist()
            )
            for consent_id in existing:
                unique.pop(consent_id, None)
        fresh = list(unique.values())
        if not fresh:
            return []
        warehouse.insert("consents", pa.Table.from_pylist(fresh, schema=_CONSENTS_ARROW))
        audit = [
            {
                "audit_id": "aud_" + hashlib.sha256(row["consent_id"].encode()).hexdigest()[:24],
                "at": row["received_at"],
                "actor": actor,
                "action": ACTION,
                "subject": row["subject"],
                "reason": reason,
                "details": orjson.dumps(
                    {
                        "consent_id": row["consent_id"],
                        "purpose": row["purpose"],
                        "status": row["status"],
                        "source": row["source"],
                        "policy_version": row["policy_version"],
                        "recorded_at": row["recorded_at"].isoformat(),
                        **((extra or {}).get(row["consent_id"]) or {}),
                    }
                ).decode(),
            }
            for row in fresh
        ]
        warehouse.insert("audit_log", pa.Table.from_pylist(audit, schema=_AUDIT_ARROW))
    return [_public(row) for row in sorted(fresh, key=lambda r: (r["recorded_at"], r["purpose"]))]


def _audit(
    warehouse: Warehouse,
    actor: str,
    action: str,
    subject: str | None,
    reason: str | None,
    details: Mapping[str, Any],
) -> None:
    audit.record(warehouse, actor, action, subject, reason, details)


# -- the collector path ------------------------------------------------------------------


def sync_consents(warehouse: Warehouse) -> int:
    """Append the decisions carried by events received since the last sync (see the
    module docstring); returns how many records were new. Safe to run any time."""
    config = load_config(warehouse)
    with warehouse.lock:
        events = warehouse.table("events")
        watermark = warehouse.get_meta(WATERMARK)
        carrying = (events.type == "track") & events.event.isin(list(CONSENT_EVENTS))
        carrying |= json_text(events.context, "consent").notnull()
        wanted = events.filter(carrying)
        if watermark is not None:
            since = datetime.fromisoformat(watermark) - LOOKBACK
            wanted = wanted.filter(wanted.received_at > since)
        found = wanted.select(
            "source_id",
            "message_id",
            "type",
            "event",
            "user_id",
            "anonymous_id",
            "timestamp",
            "received_at",
            "properties",
            "context",
        ).to_pyarrow()
        if found.num_rows == 0:
            return 0
        high = max(found.column("received_at").to_pylist())
        candidates, extra = _from_events(found.to_pylist(), config)
        fresh = _changes(warehouse, candidates)
        stored = _store(warehouse, fresh, actor="collector", reason=None, extra=extra)
        if watermark is None or high > datetime.fromisoformat(watermark):
            warehouse.set_meta(WATERMARK, _utc(high).isoformat())
    return len(stored)


def _from_events(
    events: list[dict[str, Any]], config: ConsentConfig
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Candidate records from event rows, with what the audit should say of each."""
    rows: list[dict[str, Any]] = []
    extra: dict[str, dict[str, Any]] = {}
    for event in events:
        user = (event["user_id"] or "").strip()
        anonymous = (event["anonymous_id"] or "").strip()
        if not user and not anonymous:
            continue  # pseudonymised without a cookie id: nobody to attach it to
        subject = f"user_id:{user}" if user else f"anonymous_id:{anonymous}"
        context = _json(event["context"])
        choices, version = read_choices(context.get("consent"))
        explicit = is_consent_event(event)
        if explicit:
            own, own_version = read_choices(_json(event["properties"]))
            choices.update(own)
            version = own_version or version
        received = _utc(event["received_at"])
        recorded = min(_utc(event["timestamp"]), received)
        for purpose, status in choices.items():
            if purpose not in config.purposes:
                continue  # banner categories that are no purpose (necessary, …)
            consent_id = _consent_id("event", event["source_id"], event["message_id"], purpose)
            rows.append(
                {
                    "consent_id": consent_id,
                    "subject": subject,
                    "purpose": purpose,
                    "status": status,
                    "source": "collector",
                    "policy_version": version[:100] if version else None,
                    "recorded_at": recorded,
                    "received_at": received,
                    "_explicit": explicit,
                }
            )
            extra[consent_id] = {
                "source_id": event["source_id"],
                "message_id": event["message_id"],
                "event": event["event"],
            }
    return rows, extra


def _changes(warehouse: Warehouse, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates to store: consent events always; `context.consent` only where it
    differs from the record before it for that identifier and purpose."""
    if not candidates:
        return []
    subjects = sorted({row["subject"] for row in candidates})
    table = warehouse.table("consents")
    wanted = ibis.memtable({"_s": subjects}, schema={"_s": "string"})
    stored = (
        table.semi_join(wanted, table.subject == wanted["_s"])
        .select("consent_id", "subject", "purpose", "status", "recorded_at", "received_at")
        .to_pyarrow()
        .to_pylist()
    )
    known = {row["consent_id"] for row in stored}
    timeline = [{**row, "_stored": True} for row in stored]
    timeline += [row for row in candidates if row["consent_id"] not in known]
    timeline.sort(
        key=lambda r: (
            r["subject"],
            r["purpose"],
            _utc(r["recorded_at"]),
            _utc(r["received_at"]),
            r["consent_id"],
        )
    )
    keep: list[dict[str, Any]] = []
    previous: dict[tuple[str, str], str] = {}
    seen: set[str] = set()
    for row in timeline:
        key = (row["subject"], row["purpose"])
        if row.get("_stored"):
            previous[key] = row["status"]
            continue
        if row["consent_id"] in seen:
            continue
        seen.add(row["consent_id"])
        if row["_explicit"] or previous.get(key) != row["status"]:
            keep.append({k: v for k, v in row.items() if not k.startswith("_")})
            previous[key] = row["status"]
    return keep


# -- reading -----------------------------------------------------------------------------


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
    when = _aware(at, "at") if at is not None else None
    with warehouse.lock:
        if sync:
            sync_consents(warehouse)
        _, subjects = _subjects(warehouse, identifier_or_customer_id)
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
    when = _aware(at, "at") if at is not None else None
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
            for prefix, kind in _FALLBACK
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
    when = _aware(at, "at") if at is not None else None
    with warehouse.lock:
        if sync:
            sync_consents(warehouse)
        customer, subjects = _subjects(warehouse, identifier_or_customer_id)
        table = warehouse.table("consents")
        history = (
            table.filter(table.subject.isin(subjects or [""]))
            .order_by("recorded_at", "received_at", "consent_id")
            .to_pyarrow()
            .to_pylist()
        )
    if when is not None:
        history = [row for row in history if _utc(row["recorded_at"]) <= when]
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
        "history": [_public(row) for row in history],
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
    return max(
        rows, key=lambda r: (_utc(r["recorded_at"]), _utc(r["received_at"]), r["consent_id"])
    )


def _subjects(warehouse: Warehouse, who: str) -> tuple[str | None, list[str]]:
    """(customer id or None, every identifier whose records count for `who`)."""
    if not isinstance(who, str) or not who or len(who) > 512:
        raise InvalidInput(
            "give an identifier as kind:value (email:ana@example.com) or a customer id",
            field="identifier",
        )
    identities = warehouse.table("identities")
    for prefix, kind in _FALLBACK:
        if who.startswith(prefix):  # a customer id of an identifier no build has seen
            who = kind + who.removeprefix(prefix)
            break
    if ":" in who:
        subject = normalise_subjects(warehouse, [who], ["identifier"])[0]
        owner = identities.filter(identities.identifier == subject).select(
            _owner=identities.customer_id
        )
        rows = (
            identities.semi_join(owner, identities.customer_id == owner["_owner"])
            .select("customer_id", "identifier")
            .to_pyarrow()
            .to_pylist()
        )
        if not rows:
            return None, [subject]
        return rows[0]["customer_id"], sorted(row["identifier"] for row in rows)
    if not _CUSTOMER.match(who):
        raise InvalidInput(
            "give an identifier as kind:value (email:ana@example.com) or a customer id (cus_…)",
            field="identifier",
        )
    found = (
        identities.filter(identities.customer_id == who)
        .select("identifier")
        .to_pyarrow()
        .column("identifier")
        .to_pylist()
    )
    return who, sorted(found)


def normalise_subjects(
    warehouse: Warehouse, subjects: Sequence[str], fields: Sequence[str]
) -> list[str]:
    """`kind:value` identifiers in the canonical form identity resolution gives them
    (one query for all); InvalidInput naming (from `fields`) the first that is not one."""
    stored = warehouse.get_meta(IDENTITY_SETTINGS)
    identity = IdentityConfig.from_json(stored) if stored else IdentityConfig()
    kinds = tuple(KINDS) + tuple(identity.traits)
    split = []
    for subject, where in zip(subjects, fields, strict=True):
        kind, _, value = subject.partition(":")
        if kind not in kinds or not value.strip():
            raise InvalidInput(
                f"an identifier is kind:value with kind one of {', '.join(kinds)} "
                f"(email:ana@example.com), not {subject[:60]!r}",
                field=where,
            )
        split.append((kind, value))
    if not split:
        return []
    given = ibis.memtable(
        {
            "i": list(range(len(split))),
            "kind": [k for k, _ in split],
            "raw": [v for _, v in split],
        },
        schema={"i": "int64", "kind": "string", "raw": "string"},
    )
    canonical = ibis.cases(
        *[(given.kind == kind, normalise(kind, given.raw, identity)) for kind in kinds],
        else_=ibis.null("string"),
    )
    ordered = given.select("i", value=canonical).order_by("i")
    values = _in_process(warehouse).to_pyarrow(ordered).column("value").to_pylist()
    out = []
    for (kind, raw), value, where in zip(split, values, fields, strict=True):
        if value is None:
            raise InvalidInput(f"{raw.strip()[:60]!r} is not a valid {kind}", field=where)
        out.append(f"{kind}:{value}")
    return out


def _in_process(warehouse: Warehouse) -> Any:
    """Where to evaluate expressions over a few literal values: the embedded warehouse
    itself, else a throwaway in-memory DuckDB (a Spark job per identifier typed would
    take seconds; the expressions are the ones identity resolution runs)."""
    if warehouse.engine == "duckdb":
        return warehouse.backend
    return ibis.duckdb.connect()


# -- small helpers -------------------------------------------------------------------------


def _consent_id(*parts: str) -> str:
    return "con_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:28]


def _subject_text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 512:
        raise InvalidInput("subject is an identifier as kind:value", field=where)
    if any(ord(c) < 32 for c in value):
        raise InvalidInput("subject holds control characters", field=where)
    return value


def _short_text(value: Any, where: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise InvalidInput("must be text of 1 to 100 characters", field=where)
    return value.strip()


def _aware(value: Any, where: str) -> datetime:
    """An aware datetime in UTC from a datetime or an ISO-8601 text with an offset."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                f"{value[:40]!r} is not an ISO-8601 date-time", field=where
            ) from None
    if not isinstance(value, datetime):
        raise InvalidInput("must be a date-time", field=where)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("the time has no time zone; give an offset (…Z or +01:00)", field=where)
    if not 1970 <= value.year <= 9000:
        raise InvalidInput("date-time out of range (1970 to 9000)", field=where)
    return value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text:
        return {}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "consent_id": row["consent_id"],
        "subject": row["subject"],
        "purpose": row["purpose"],
        "status": row["status"],
        "source": row["source"],
        "policy_version": row["policy_version"],
        "recorded_at": _utc(row["recorded_at"]).isoformat(),
        "received_at": _utc(row["received_at"]).isoformat(),
    }
