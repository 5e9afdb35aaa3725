"""Identifiers of each event, normalised, as Ibis expressions (any engine).

Each event yields the identifiers it carries — its anonymous id, user id, an alias's
previous id, and the email, phone and loyalty card in its traits (identify and group
traits, or `context.traits` of any other call) — written `kind:value`. Events with two
or more yield edges from the first (in the order of SLOTS) to each of the others.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from touchpoints.identity.config import IdentityConfig
from touchpoints.warehouse.functions import json_text
from touchpoints.warehouse.personal import BLINDED_KINDS, EMAIL_PATTERN, TRIM_PATTERN
from touchpoints.warehouse.vault import BLIND_PATTERN, TOKEN_PATTERN

#: (kind, where the value comes from); the order picks each event's hub identifier.
SLOTS: tuple[tuple[str, str], ...] = (
    ("user_id", "user_id"),
    ("anonymous_id", "anonymous_id"),
    ("anonymous_id", "previous_id"),  # alias: the id used before, usually anonymous
    ("email", "trait:email"),
    ("phone", "trait:phone"),
    ("loyalty_id", "trait:loyalty_id"),
)


def normalise(kind: str, value: ir.StringValue, config: IdentityConfig) -> ir.StringValue:
    """The canonical text of an identifier, or NULL when it is not a usable one. A sealed
    email or phone (see `touchpoints.warehouse.vault`) is its blind, which the write path
    made from this same canonical text."""
    clear = _normalise_clear(kind, value, config)
    if kind not in BLINDED_KINDS:
        return clear
    blind = value.re_extract(BLIND_PATTERN, 1)
    other_token = value.re_search(TOKEN_PATTERN)  # sealed, but no identifier: none
    return ibis.cases(
        (value.re_search(BLIND_PATTERN), blind), (other_token, ibis.null("string")), else_=clear
    )


def _normalise_clear(kind: str, value: ir.StringValue, config: IdentityConfig) -> ir.StringValue:
    # Not .strip(): Ibis writes it for Spark as TRIM(' \t\n\r\v\f' ...), which also
    # trims the letters v and f ('frank@…' became 'rank@…').
    text = value.re_replace(TRIM_PATTERN, "")
    if kind == "email":
        text = text.lower()
        if config.strip_plus_addressing:
            text = text.re_replace(r"\+[^@]*@", "@")
        return ibis.ifelse(text.re_search(EMAIL_PATTERN), text, ibis.null())
    if kind == "phone":
        digits = text.re_replace(r"[^0-9+]", "")
        international = ibis.ifelse(digits.startswith("00"), "+" + digits.substr(2), digits)
        national = "+" + config.country_code + digits.re_replace(r"^0+", "")
        e164 = ibis.ifelse(international.startswith("+"), international, national)
        return ibis.ifelse(e164.re_search(r"^\+[1-9][0-9]{6,14}$"), e164, ibis.null())
    if kind == "loyalty_id":
        text = text.upper()
    return ibis.ifelse(text.length() > 0, text, ibis.null())


def _slots(config: IdentityConfig) -> list[tuple[str, str]]:
    return list(SLOTS) + [(trait, f"trait:{trait}") for trait in config.traits]


def event_identifiers(events: ir.Table, config: IdentityConfig) -> ir.Table:
    """One row per event: its time and one `kind:value` column per slot (or NULL)."""
    columns: dict[str, ir.Value] = {"ts": events.timestamp}
    for index, (kind, origin) in enumerate(_slots(config)):
        if origin.startswith("trait:"):
            raw = json_text(events.traits, origin.removeprefix("trait:"))
        else:
            raw = events[origin].cast("string")
        value = normalise(kind, raw, config)
        columns[f"id{index}"] = ibis.ifelse(value.isnull(), ibis.null(), f"{kind}:" + value)
    return events.select(**columns)


def nodes(identified: ir.Table, config: IdentityConfig) -> ir.Table:
    """Every identifier with its kind and first and last time seen."""
    parts = [
        identified.select(
            identifier=identified[f"id{i}"], kind=ibis.literal(kind), ts=identified.ts
        ).filter(lambda t: t.identifier.notnull())
        for i, (kind, _) in enumerate(_slots(config))
    ]
    union = ibis.union(*parts, distinct=False)
    return union.group_by("identifier", "kind").agg(
        first_seen=union.ts.min(), last_seen=union.ts.max()
    )


def edges(identified: ir.Table, config: IdentityConfig) -> ir.Table:
    """Distinct links (a, a_kind, b, b_kind) from each event's hub to its other ids."""
    slots = _slots(config)
    hub = ibis.coalesce(*[identified[f"id{i}"] for i in range(len(slots))])
    hub_kind = ibis.cases(
        *[(identified[f"id{i}"].notnull(), kind) for i, (kind, _) in enumerate(slots)],
        else_=ibis.null(),
    )
    with_hub = identified.mutate(hub=hub, hub_kind=hub_kind)
    parts = [
        with_hub.select(
            a=with_hub.hub,
            a_kind=with_hub.hub_kind,
            b=with_hub[f"id{i}"],
            b_kind=ibis.literal(kind),
        ).filter(lambda t: t.b.notnull() & (t.a != t.b))
        for i, (kind, _) in enumerate(slots)
    ]
    return ibis.union(*parts, distinct=True)
