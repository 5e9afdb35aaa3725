"""Whose consent records count: identifiers in canonical form, and the customer they
belong to.

Consent rows are keyed by an identifier (`kind:value`) normalised as identity
resolution does, so that `Ana@Example.com` and `ana@example.com` are one person. A
question about a person resolves the identifier (or customer id) to its customer
(`identities`) and to every identifier of that customer; before any build, or for an
identifier no event carried, an identifier stands for itself. Shared by writing
(`consent_records`) and reading (`consent_read`), hence its own module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import ibis

from touchpoints.errors import InvalidInput
from touchpoints.identity.identifiers import normalise
from touchpoints.identity.lookup import KINDS, is_blind, stored_config, stored_form
from touchpoints.warehouse import Warehouse

__all__ = ["FALLBACK", "normalise_subjects", "person_subjects"]

_CUSTOMER = re.compile(r"^cus_[A-Za-z0-9_\-]{1,60}$")
#: Customer ids `with_customer` gives identifiers no build has seen yet.
FALLBACK = (("user:", "user_id:"), ("anon:", "anonymous_id:"))


def person_subjects(warehouse: Warehouse, who: str) -> tuple[str | None, list[str]]:
    """(customer id or None, every identifier whose records count for `who`)."""
    if not isinstance(who, str) or not who or len(who) > 512:
        raise InvalidInput(
            "give an identifier as kind:value (email:ana@example.com) or a customer id",
            field="identifier",
        )
    identities = warehouse.table("identities")
    for prefix, kind in FALLBACK:
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
    identity = stored_config(warehouse)
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
        if is_blind(kind, raw):
            out.append(f"{kind}:{raw}")  # already the stored form
            continue
        if value is None:
            raise InvalidInput(f"{raw.strip()[:60]!r} is not a valid {kind}", field=where)
        out.append(stored_form(warehouse, kind, raw, identity) or f"{kind}:{value}")
    return out


def _in_process(warehouse: Warehouse) -> Any:
    """Where to evaluate expressions over a few literal values: the embedded warehouse
    itself, else a throwaway in-memory DuckDB (a Spark job per identifier typed would
    take seconds; the expressions are the ones identity resolution runs)."""
    if warehouse.engine == "duckdb":
        return warehouse.backend
    return ibis.duckdb.connect()
