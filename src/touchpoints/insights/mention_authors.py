"""Who wrote a mention: the customer a social handle belongs to, only where a profile
already carries exactly that handle. Never guessed from names or look-alikes.

A "Brand Mentioned" event (properties `platform` and `author_handle`, as the mentions
importer writes them) is linked to customer C when

- C's profile traits hold the handle under the platform's name
  (`traits.instagram = "@ana.example"` for platform `instagram`), or
- C's identities hold it as an identifier of that kind (the identity setting
  `traits: ["instagram"]` makes `instagram:ana.example` an identifier),

and no other customer carries the same handle on that platform: a handle two people
claim links nobody. Handles are compared as the platforms treat them — without a
leading "@", surrounding white space or case — and nothing else: `ana_examp1e` or
`ana.example` is not `ana_example`. Profiles and identities come from the last
`touchpoints build`.
"""

from __future__ import annotations

import re

import ibis
import ibis.expr.types as ir

from touchpoints.insights.frame import Scope, user_events
from touchpoints.warehouse.connection import Warehouse
from touchpoints.warehouse.functions import json_text
from touchpoints.warehouse.personal import TRIM_PATTERN

BRAND_MENTIONED = "Brand Mentioned"
#: The column of `mentions` naming the customer who carries the author's handle.
AUTHOR = "author_customer_id"
#: Platform names that can be a trait key (others are never linked).
PLATFORM = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def canonical_handle(value: ir.StringValue) -> ir.StringValue:
    """A handle as compared: trimmed, without its leading "@", lower case; NULL if empty."""
    text = value.re_replace(TRIM_PATTERN, "").re_replace(r"^@+", "").lower()
    return ibis.ifelse(text.length() > 0, text, ibis.null("string"))


def _platform(value: ir.StringValue) -> ir.StringValue:
    return value.re_replace(TRIM_PATTERN, "").lower()


def mention_platforms(warehouse: Warehouse) -> list[str]:
    """The platforms mentions came from that can be a trait key, sorted."""
    events = warehouse.table("events")
    found = events.filter(events.event == BRAND_MENTIONED)
    names = found.select(p=_platform(json_text(found.properties, "platform"))).distinct()
    values = names.to_pyarrow().column("p").to_pylist()
    return sorted(v for v in values if isinstance(v, str) and PLATFORM.match(v))


def handle_owners(warehouse: Warehouse, platforms: list[str]) -> ir.Table:
    """`_platform`, `_handle`, `owner`: each handle on each of `platforms` that exactly
    one customer carries (see the module docstring)."""
    profiles = warehouse.table("profiles")
    parts = [
        profiles.select(
            _platform=ibis.literal(platform, "string"),
            _handle=canonical_handle(json_text(profiles.traits, platform)),
            owner=profiles.customer_id.cast("string"),
        )
        for platform in platforms
        if PLATFORM.match(platform)
    ]
    identities = warehouse.table("identities")
    kinds = identities.filter(identities.kind.isin(platforms or [""]) & ~identities.quarantined)
    parts.append(
        kinds.select(
            _platform=kinds.kind.cast("string"),
            _handle=canonical_handle(kinds.identifier.re_replace(r"^[^:]*:", "")),
            owner=kinds.customer_id.cast("string"),
        )
    )
    carried = ibis.union(*parts, distinct=True)
    carried = carried.filter(carried._handle.notnull())
    counted = carried.group_by(["_platform", "_handle"]).aggregate(
        owner=carried.owner.max(), _owners=carried.owner.nunique()
    )
    return counted.filter(counted._owners == 1).drop("_owners")


def mentions(warehouse: Warehouse, scope: Scope = Scope()) -> ir.Table:
    """The mentions in scope with `platform`, `handle` (canonical) and `AUTHOR`: the
    customer carrying the author's handle on that platform, else NULL."""
    events = user_events(warehouse, scope)
    posted = events.filter(events.event == BRAND_MENTIONED)
    posted = posted.mutate(
        platform=_platform(json_text(posted.properties, "platform")),
        handle=canonical_handle(json_text(posted.properties, "author_handle")),
    )
    owners = handle_owners(warehouse, mention_platforms(warehouse))
    joined = posted.left_join(
        owners, (posted.platform == owners._platform) & (posted.handle == owners._handle)
    )
    return joined.rename({AUTHOR: "owner"}).drop("_platform", "_handle")
