"""Find a customer by any identifier and read their profile and timeline."""

from __future__ import annotations

import re
from typing import Any

import ibis
import ibis.expr.types as ir
import orjson

from touchpoints.errors import InvalidInput, NotFound
from touchpoints.identity.attribution import with_customer
from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.identifiers import normalise
from touchpoints.identity.resolve import SETTINGS
from touchpoints.identity.reveal import Revealer
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.personal import (
    BLIND,
    BLINDED_KINDS,
    IdentifierRules,
    blind_value,
    canonical,
    pseudonym_of,
)

CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9_\-]{1,60}$")
KINDS = ("user_id", "anonymous_id", "email", "phone", "loyalty_id")
TIMELINE_COLUMNS = (
    "timestamp",
    "channel",
    "type",
    "event",
    "name",
    "page_path",
    "utm_source",
    "utm_campaign",
    "revenue",
    "order_id",
    "message_id",
)


def candidates(
    warehouse: Warehouse, identifier: str, config: IdentityConfig | None = None
) -> list[str]:
    """The `kind:value` forms an identifier typed by a person may stand for, normalised
    by the same expressions identity resolution uses (so the two never disagree)."""
    config = config or stored_config(warehouse)
    if not identifier or any(ord(c) < 32 for c in identifier) or len(identifier) > 512:
        raise InvalidInput("an identifier is 1 to 512 printable characters", field="identifier")
    known = KINDS + config.traits
    kind, _, value = identifier.partition(":")
    kinds, raw = ((kind,), value) if value and kind in known else (known, identifier)
    if len(kinds) == 1 and is_blind(kind, raw):
        return [identifier]  # the stored form itself, as profiles and exports show it
    given = ibis.memtable({"raw": [raw]})
    forms = given.select(**{k: normalise(k, given.raw, config) for k in kinds})
    row = warehouse.backend.to_pyarrow(forms).to_pylist()[0]
    found = []
    rules = IdentifierRules(config.country_code, config.strip_plus_addressing)
    for kind, value in row.items():
        if value and kind in BLINDED_KINDS:
            found.append(stored_form(warehouse, kind, raw, config))
        elif value and kind in ("user_id", "anonymous_id"):
            alias, _ = pseudonym_of(warehouse.vault, value, rules)
            found.append(f"{kind}:{alias}" if alias else None)
        if value:
            found.append(f"{kind}:{value}")  # as rows stored before sealing have it
    return list(dict.fromkeys(f for f in found if f))


def is_blind(kind: str, value: str) -> bool:
    """Whether `value` is already the stored (blind) form of an email or phone."""
    return kind in BLINDED_KINDS and BLIND.match(value) is not None


def stored_form(warehouse: Warehouse, kind: str, value: str, config: IdentityConfig) -> str | None:
    """`kind:value` as the identities table holds it: an email or phone as the blind of
    its canonical form (the write path seals them so), other kinds as given."""
    if kind not in BLINDED_KINDS:
        return f"{kind}:{value}"
    rules = IdentifierRules(config.country_code, config.strip_plus_addressing)
    form = canonical(kind, value, rules)
    return None if form is None else f"{kind}:{warehouse.vault.blind(kind, form)}"


def pseudonymous(
    warehouse: Warehouse, identifier: str, config: IdentityConfig | None = None
) -> str:
    """How an identifier a person typed may be written down (audit log, consents): an
    email or phone as its blind, an id holding an email as the write path stores it,
    anything else (customer ids, pseudonymous ids) as typed. `config`: the identity
    settings of the last build, when the caller has read them already (many at once)."""
    kind, _, value = identifier.partition(":")
    if kind in BLINDED_KINDS and value and is_blind(kind, value):
        return identifier
    config = config or stored_config(warehouse)
    rules = IdentifierRules(config.country_code, config.strip_plus_addressing)
    if kind in BLINDED_KINDS and value:
        form = stored_form(warehouse, kind, value, config)
        return form or f"{kind}:{blind_value(warehouse.vault, kind, value, rules)[0]}"
    if kind in ("user_id", "anonymous_id") and value:
        alias, _ = pseudonym_of(warehouse.vault, value, rules)
        return f"{kind}:{alias}" if alias else identifier
    alias, _ = pseudonym_of(warehouse.vault, identifier, rules)
    return alias or identifier


def stored_config(warehouse: Warehouse) -> IdentityConfig:
    """The identity settings of the last build, else the defaults."""
    stored = warehouse.get_meta(SETTINGS)
    return IdentityConfig.from_json(stored) if stored else IdentityConfig()


def find_customer(warehouse: Warehouse, identifier: str) -> str:
    """The customer id an identifier (or a customer id itself) resolves to, or NotFound."""
    identities = warehouse.table("identities")
    if CUSTOMER_ID.match(identifier):
        known = identities.filter(identities.customer_id == identifier).count().to_pyarrow()
        if known.as_py():
            return identifier
    forms = candidates(warehouse, identifier)
    rows = (
        identities.filter(identities.identifier.isin(forms))
        .select("identifier", "customer_id")
        .to_pyarrow()
        .to_pylist()
    )
    # a bare value can match several kinds: the first form (kinds in KINDS order) wins
    rows.sort(key=lambda row: forms.index(row["identifier"]))
    if not rows:
        raise NotFound(
            f"no customer has the identifier {identifier!r} (has "
            "`touchpoints build` run since it arrived?)",
            field="identifier",
        )
    return rows[0]["customer_id"]


def profile(warehouse: Warehouse, identifier: str, timeline_limit: int = 200) -> dict[str, Any]:
    """The profile of the customer with `identifier`, with their latest events."""
    customer = find_customer(warehouse, identifier)
    profiles = warehouse.table("profiles")
    found = profiles.filter(profiles.customer_id == customer).to_pyarrow().to_pylist()
    events = with_customer(warehouse.table("events"), warehouse.table("identities"))
    mine = events.filter(events.customer_id == customer)
    timeline = (
        mine.order_by(ibis.desc("timestamp"))
        .limit(timeline_limit)
        .select(*TIMELINE_COLUMNS)
        .to_pyarrow()
        .to_pylist()
    )
    body = found[0] if found else {"customer_id": customer}
    return _revealed(warehouse, mine, {**body, "timeline": timeline})


def _revealed(warehouse: Warehouse, mine: ir.Table, body: dict[str, Any]) -> dict[str, Any]:
    """The profile with its personal values opened and identifiers in clear, learnt from
    the customer's own sealed identifiers."""
    revealer = Revealer(warehouse.vault, warehouse.identifier_rules)
    sealed = mine.traits.contains('"tp1i') | mine.context.contains('"tp1i')
    rows = mine.filter(sealed).select("traits", "context").limit(1000).to_pyarrow().to_pylist()
    revealer.learn(orjson.loads(text) for row in rows for text in row.values() if text)
    traits = body.get("traits")
    if isinstance(traits, str):
        body["traits"] = orjson.dumps(revealer.value(orjson.loads(traits))).decode()
    return revealer.value(body)
