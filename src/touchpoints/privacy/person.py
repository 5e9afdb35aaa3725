"""Everything that identifies one person, and which rows of each table are theirs.

`find_person` resolves any identifier (or a customer id) to the customer and gathers
every form in which the warehouse may hold them: their identifiers (`kind:value`, as
identity resolution writes them), the raw values their events carried (an email in
capitals, a phone as typed), their customer ids (the current one and those merged into
it), and the MD5 and SHA-256 hex digests of each (what ad platforms and importers hash).
`owned` says, per table, which rows are the person's; `mentions` finds any other row
that names them. Access export and erasure both use these, so they never disagree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import orjson

from touchpoints.errors import InvalidInput, NotFound
from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.identifiers import normalise
from touchpoints.identity.lookup import find_customer, stored_config
from touchpoints.privacy import audit
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.functions import json_text
from touchpoints.warehouse.vault import blind_of

Predicate = Callable[[ir.Table], ir.BooleanValue]

_CUSTOMER = re.compile(r"^cus_[A-Za-z0-9_\-]{1,60}$")
#: Shorter texts are matched exactly only, never as a part of another text.
MIN_MENTION = 6


@dataclass(frozen=True)
class Person:
    """One customer as the warehouse knows them (see the module docstring)."""

    customer_id: str
    customer_ids: tuple[str, ...]
    identifiers: tuple[str, ...]
    forms: tuple[str, ...]

    @property
    def subjects(self) -> tuple[str, ...]:
        """What an audit row or consent may name them by."""
        return self.identifiers + self.customer_ids


identity_config = stored_config  # the identity settings of the last build


def find_person(warehouse: Warehouse, identifier: str) -> Person:
    """The person with `identifier` (any identifier, `kind:value`, or a customer id);
    NotFound when no build has seen it."""
    if not isinstance(identifier, str) or not identifier.strip():
        raise InvalidInput("give an identifier or a customer id", field="identifier")
    identities = warehouse.table("identities")
    if _CUSTOMER.match(identifier):
        customer = identifier
    else:
        customer = find_customer(warehouse, identifier.strip())
    ids = sorted(
        identities.filter(identities.customer_id == customer).identifier.to_pyarrow().to_pylist()
    )
    if not ids:
        raise NotFound(f"no customer {identifier!r}", field="identifier")
    customers = _customer_ids(warehouse, customer)
    config = identity_config(warehouse)
    events = warehouse.table("events")
    mine = events.filter(carries(events, ids, config))
    raw_columns = {
        "user_id": mine.user_id,
        "anonymous_id": mine.anonymous_id,
        "previous_id": mine.previous_id,
        **{kind: json_text(mine.traits, kind) for kind in _trait_kinds(config)},
    }
    raw = mine.select(**raw_columns).distinct().to_pyarrow().to_pylist()
    values = {v.strip() for row in raw for v in row.values() if isinstance(v, str) and v.strip()}
    values |= _opened(warehouse, raw)  # sealed emails and phones: their blinds and clear text
    values |= {i.partition(":")[2] for i in ids} | set(ids) | set(customers)
    hashed = {h for v in values for h in digests(v)}
    return Person(customer, customers, tuple(ids), tuple(sorted(values | hashed)))


def _opened(warehouse: Warehouse, raw: list[dict[str, Any]]) -> set[str]:
    """The blinds and clear values inside the sealed identifiers of these raw values,
    so that a copy of them anywhere (a spool file, a legacy row) is found too."""
    found = set()
    for row in raw:
        for kind, value in row.items():
            blind = blind_of(value) if isinstance(value, str) else None
            if blind is None:
                continue
            clear = str(warehouse.vault.open(kind, value)).strip()
            found |= {blind, clear}
    return found


def digests(text: str) -> tuple[str, ...]:
    """Hex digests a product may store instead of a value (of it, and lower-cased)."""
    forms = {text, text.lower()}
    return tuple(
        sorted(
            hashlib.new(algo, f.encode()).hexdigest() for f in forms for algo in ("md5", "sha256")
        )
    )


def _customer_ids(warehouse: Warehouse, customer: str) -> tuple[str, ...]:
    """The customer id and every earlier one merged into it."""
    merges = warehouse.table("identity_merges").select("customer_id", "merged_customer_id")
    pairs = merges.to_pyarrow().to_pylist()
    found, todo = {customer}, [customer]
    while todo:
        current = todo.pop()
        for row in pairs:
            if row["customer_id"] == current and row["merged_customer_id"] not in found:
                found.add(row["merged_customer_id"])
                todo.append(row["merged_customer_id"])
    return (customer, *sorted(found - {customer}))


def _trait_kinds(config: IdentityConfig) -> tuple[str, ...]:
    return ("email", "phone", "loyalty_id", *config.traits)


def carries(
    events: ir.Table, identifiers: Iterable[str], config: IdentityConfig
) -> ir.BooleanValue:
    """Events carrying any of `identifiers` in any slot identity resolution reads."""
    wanted = sorted(set(identifiers))
    slots = [
        ("user_id", events.user_id),
        ("anonymous_id", events.anonymous_id),
        ("anonymous_id", events.previous_id),
        *[(kind, json_text(events.traits, kind)) for kind in _trait_kinds(config)],
    ]
    tests = [
        (kind + ":" + normalise(kind, raw.cast("string"), config)).isin(wanted)
        for kind, raw in slots
    ]
    return ibis.or_(*[ibis.coalesce(test, False) for test in tests])


def mentions(
    table: ir.Table, forms: Iterable[str], columns: Iterable[str] | None = None
) -> ir.BooleanValue:
    """Rows whose text columns hold any of `forms` (case-insensitive; forms shorter than
    MIN_MENTION only as the whole value)."""
    names = list(columns) if columns is not None else text_columns(table)
    long = sorted({f.lower() for f in forms if len(f) >= MIN_MENTION})
    short = sorted({f for f in forms if len(f) < MIN_MENTION})
    if not names:
        return ibis.literal(False)
    texts = [ibis.coalesce(table[name].cast("string"), "") for name in names]
    blob = ibis.literal("\x1f").join(texts).lower() if len(texts) > 1 else texts[0].lower()
    tests = [blob.contains(form) for form in long]
    tests += [table[name].cast("string").isin(short) for name in names if short]
    if not tests:
        return ibis.literal(False)
    return ibis.or_(*[ibis.coalesce(test, False) for test in tests])


def text_columns(table: ir.Table) -> list[str]:
    """The string and string-array columns of a table."""
    schema = table.schema()
    return [
        name
        for name, kind in schema.items()
        if kind.is_string() or (kind.is_array() and kind.value_type.is_string())
    ]


#: Activation tables whose rows belong to the customer they name.
CUSTOMER_TABLES = (
    "audience_members",
    "offer_assignments",
    "coupons",
    "sends",
    "trigger_fires",
    "webhook_deliveries",
    "webhook_dead_letters",
)


def owned(person: Person, config: IdentityConfig) -> dict[str, Predicate]:
    """Per table, the rows that are the person's own (audit rows: that name them)."""
    ids, customers = list(person.identifiers), list(person.customer_ids)
    return {
        "events": lambda t: carries(t, ids, config),
        "rejected_events": lambda t: mentions(t, person.forms),
        "identities": lambda t: t.customer_id.isin(customers) | t.identifier.isin(ids),
        "identity_links": lambda t: t.a.isin(ids) | t.b.isin(ids),
        "identity_merges": lambda t: (
            t.customer_id.isin(customers)
            | t.merged_customer_id.isin(customers)
            | ibis.coalesce(t.via_identifier.isin(ids), False)
            | ibis.coalesce(t.linked_identifier.isin(ids), False)
        ),
        "identity_quarantine": lambda t: t.identifier.isin(ids),
        "profiles": lambda t: t.customer_id.isin(customers),
        "consents": lambda t: t.subject.isin(ids),
        **{name: lambda t: t.customer_id.isin(customers) for name in CUSTOMER_TABLES},
        "trigger_pending": lambda t: (
            t.customer_id.isin(customers)
            | ibis.coalesce(("user_id:" + t.user_id).isin(ids), False)
            | ibis.coalesce(("anonymous_id:" + t.anonymous_id).isin(ids), False)
        ),
        "audit_log": lambda t: (
            ibis.coalesce(t.subject.isin(list(person.subjects)), False)
            | mentions(t, person.forms, ["details"])
        ),
    }


def scrub_text(value: Any, forms: Iterable[str], replacement: str) -> Any:
    """`value` with every form replaced (case-insensitive), inside lists too."""
    if isinstance(value, list):
        return [scrub_text(v, forms, replacement) for v in value]
    if not isinstance(value, str):
        return value
    for form in sorted(set(forms), key=len, reverse=True):
        if len(form) >= MIN_MENTION:
            value = re.sub(re.escape(form), replacement, value, flags=re.IGNORECASE)
        elif value == form:
            value = replacement
    return value


def write_audit(
    warehouse: Warehouse,
    action: str,
    *,
    actor: str,
    subject: str | None,
    reason: str | None,
    details: Mapping[str, Any],
) -> str:
    """Append one `audit_log` entry (`touchpoints.privacy.audit.record`); returns its id."""
    plain = orjson.loads(orjson.dumps(dict(details), default=str))
    return audit.record(warehouse, actor, action, subject, reason, plain)["audit_id"]
