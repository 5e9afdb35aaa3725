"""Find a customer by any identifier and read their profile and timeline."""

from __future__ import annotations

from typing import Any

import ibis

from touchpoints.errors import InvalidInput, NotFound
from touchpoints.identity.attribution import with_customer
from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.identifiers import normalise
from touchpoints.identity.resolve import SETTINGS
from touchpoints.warehouse import Warehouse

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
    if config is None:
        stored = warehouse.get_meta(SETTINGS)  # the rules the last build used
        config = IdentityConfig.from_json(stored) if stored else IdentityConfig()
    if not identifier or any(ord(c) < 32 for c in identifier) or len(identifier) > 512:
        raise InvalidInput("an identifier is 1 to 512 printable characters", field="identifier")
    known = KINDS + config.traits
    kind, _, value = identifier.partition(":")
    kinds, raw = ((kind,), value) if value and kind in known else (known, identifier)
    given = ibis.memtable({"raw": [raw]})
    forms = given.select(**{k: normalise(k, given.raw, config) for k in kinds})
    row = warehouse.backend.to_pyarrow(forms).to_pylist()[0]
    return [f"{k}:{v}" for k, v in row.items() if v]


def find_customer(warehouse: Warehouse, identifier: str) -> str:
    """The customer id an identifier resolves to, or NotFound."""
    forms = candidates(warehouse, identifier)
    identities = warehouse.table("identities")
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
    return {**body, "timeline": timeline}
