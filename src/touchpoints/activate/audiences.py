"""Audiences: who is in them, refreshed on a schedule or on demand, with who entered
and who left at each refresh.

A definition (JSON) is one of

- `{"segment": NAME}` — a saved segment, or `{"rule": RULE}` — a segment rule
  (`touchpoints.insights.segment_rules`);
- `{"list": [IDENTIFIER, …]}` — an uploaded list (`email:…`, `phone:…`, `user_id:…`):
  each resolved to its customer; only pseudonymous forms are stored (an email as its
  blind), and identifiers no customer carries are counted as unmatched;

plus `refresh_every_minutes` (a schedule the server keeps) and `description`.

Membership is kept as stays in `audience_members` (entered_at, left_at null while in);
each refresh appends its size and the counts that entered and left to `audience_sizes`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from touchpoints.errors import InvalidInput
from touchpoints.identity.lookup import pseudonymous, stored_config
from touchpoints.insights.segment_rules import RuleChecker, parse_rule
from touchpoints.insights.segments import members, saved_segments
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.definitions import (
    delete_definition,
    load_definition,
    load_definitions,
    store_definition,
)
from touchpoints.warehouse.schema import AUDIENCE_MEMBERS, AUDIENCE_SIZES

__all__ = [
    "current_members",
    "delete_audience",
    "get_audience",
    "list_audiences",
    "refresh",
    "refresh_due",
    "save_audience",
    "size_history",
]

TABLE, KEY = "audiences", "name"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
KINDS = ("segment", "rule", "list")
MAX_LIST = 1_000_000
_MEMBERS_ARROW = AUDIENCE_MEMBERS.to_pyarrow()
_SIZES_ARROW = AUDIENCE_SIZES.to_pyarrow()


def parse_audience(warehouse: Warehouse, name: Any, body: Any) -> dict[str, Any]:
    """A checked definition; InvalidInput naming the first bad field."""
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInput("name is 1–63 letters, digits, '_', '.' or '-'", field="name")
    if not isinstance(body, Mapping):
        raise InvalidInput("an audience is a JSON object", field="body")
    kinds = [k for k in KINDS if k in body]
    unknown = sorted(set(body) - {*KINDS, "refresh_every_minutes", "description", "name"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=unknown[0])
    if len(kinds) != 1:
        raise InvalidInput("give one of segment, rule or list", field="body")
    kind = kinds[0]
    out: dict[str, Any] = {"name": name, "description": body.get("description")}
    if kind == "segment":
        if body["segment"] not in saved_segments(warehouse):
            raise InvalidInput(f"there is no segment {body['segment']!r}", field="segment")
        out["segment"] = body["segment"]
    elif kind == "rule":
        rule = parse_rule(body["rule"]) if isinstance(body["rule"], str) else body["rule"]
        RuleChecker(saved_segments(warehouse)).check(rule)
        out["rule"] = rule
    else:
        out["list"] = _pseudonymous_list(warehouse, body["list"])
    every = body.get("refresh_every_minutes")
    if every is not None and (
        not isinstance(every, int) or isinstance(every, bool) or not 0 < every <= 525_600
    ):
        raise InvalidInput("refresh_every_minutes is 1 to 525600", field="refresh_every_minutes")
    out["refresh_every_minutes"] = every
    return out


def _pseudonymous_list(warehouse: Warehouse, given: Any) -> list[str]:
    if not isinstance(given, list) or not 0 < len(given) <= MAX_LIST:
        raise InvalidInput(f"list holds 1 to {MAX_LIST} identifiers", field="list")
    config = stored_config(warehouse)
    out = []
    for index, identifier in enumerate(given):
        kind, _, value = identifier.partition(":") if isinstance(identifier, str) else ("", "", "")
        if kind not in ("email", "phone", "user_id", "anonymous_id", "loyalty_id") or not value:
            raise InvalidInput(
                "each entry is kind:value (email:ana@example.com, phone:…, user_id:…)",
                field=f"list[{index}]",
            )
        out.append(pseudonymous(warehouse, identifier.strip(), config))
    return sorted(set(out))


def save_audience(warehouse: Warehouse, name: str, body: Any) -> dict[str, Any]:
    """Create or replace an audience; returns it as stored (uploaded lists as blinds)."""
    audience = parse_audience(warehouse, name, body)
    store_definition(warehouse, TABLE, KEY, name, audience)
    return audience


def get_audience(warehouse: Warehouse, name: str) -> dict[str, Any]:
    return load_definition(warehouse, TABLE, KEY, name, "audience")


def list_audiences(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Every audience with its last refresh (time, size, entered, left)."""
    sizes = warehouse.table("audience_sizes")
    ranked = sizes.mutate(
        _n=ibis.row_number().over(group_by="audience", order_by=ibis.desc("computed_at"))
    )
    last = {
        row["audience"]: row
        for row in ranked.filter(ranked._n == 0).drop("_n").to_pyarrow().to_pylist()
    }
    out = []
    for audience in load_definitions(warehouse, TABLE, KEY):
        row = last.get(audience["name"])
        audience.pop("list", None)  # long, and pseudonymous anyway: see get_audience
        out.append(
            {
                **audience,
                "size": row["size"] if row else None,
                "entered": row["entered"] if row else None,
                "left": row["left"] if row else None,
                "refreshed_at": row["computed_at"].isoformat() if row else None,
            }
        )
    return out


def delete_audience(warehouse: Warehouse, name: str) -> None:
    """Remove an audience, its membership and its history."""
    delete_definition(warehouse, TABLE, KEY, name, "audience")
    with warehouse.lock:
        warehouse.delete_where("audience_members", lambda t: t.audience == name)
        warehouse.delete_where("audience_sizes", lambda t: t.audience == name)


def who(warehouse: Warehouse, audience: Mapping[str, Any], now: datetime) -> ir.Table:
    """The customers (`customer_id`) the definition names now."""
    if "segment" in audience:
        saved = saved_segments(warehouse)
        return members(warehouse, saved[audience["segment"]], now, segments=saved)
    if "rule" in audience:
        return members(warehouse, audience["rule"], now, segments=saved_segments(warehouse))
    identities = warehouse.table("identities")
    found = identities.filter(identities.identifier.isin(audience["list"]))
    return found.select("customer_id").distinct()


def refresh(warehouse: Warehouse, name: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Recompute the members: close the stays of those who left, open stays for those who
    entered, record the size; returns the counts and the ids that entered and left."""
    now = now or datetime.now(UTC)
    with warehouse.lock:
        audience = get_audience(warehouse, name)
        wanted = set(who(warehouse, audience, now).customer_id.to_pyarrow().to_pylist())
        stays = warehouse.table("audience_members")
        open_ = stays.filter((stays.audience == name) & stays.left_at.isnull())
        current = set(open_.customer_id.to_pyarrow().to_pylist())
        entered, left = sorted(wanted - current), sorted(current - wanted)
        if left:  # only open stays: a person's earlier stays keep their left_at
            closing = open_.filter(open_.customer_id.isin(left)).select(
                "audience", "customer_id", "entered_at"
            )
            closed = closing.to_pyarrow().append_column(
                "left_at", pa.array([now] * len(left), pa.timestamp("us", tz="UTC"))
            )
            warehouse.update_many(
                "audience_members", ["audience", "customer_id", "entered_at"], closed
            )
        rows = [{"audience": name, "customer_id": c, "entered_at": now, "left_at": None}
                for c in entered]  # fmt: skip
        warehouse.insert("audience_members", pa.Table.from_pylist(rows, schema=_MEMBERS_ARROW))
        size = {"audience": name, "computed_at": now, "size": len(wanted),
                "entered": len(entered), "left": len(left)}  # fmt: skip
        warehouse.insert("audience_sizes", pa.Table.from_pylist([size], schema=_SIZES_ARROW))
    return {
        "name": name,
        "computed_at": now.isoformat(),
        "size": len(wanted),
        "entered": len(entered),
        "left": len(left),
        "entered_ids": entered,
        "left_ids": left,
    }


def refresh_due(warehouse: Warehouse, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Refresh every scheduled audience whose time has come (never refreshed, or its last
    refresh older than `refresh_every_minutes`)."""
    now = now or datetime.now(UTC)
    with warehouse.lock:
        scheduled = [
            a for a in load_definitions(warehouse, TABLE, KEY) if a.get("refresh_every_minutes")
        ]
        if not scheduled:
            return []
        sizes = warehouse.table("audience_sizes")
        latest = sizes.group_by("audience").agg(at=sizes.computed_at.max())
        last = {row["audience"]: row["at"] for row in latest.to_pyarrow().to_pylist()}
    done = []
    for audience in scheduled:
        at = last.get(audience["name"])
        if at is None or at + timedelta(minutes=audience["refresh_every_minutes"]) <= now:
            done.append(refresh(warehouse, audience["name"], now=now))
    return done


def current_members(warehouse: Warehouse, name: str) -> ir.Table:
    """The members as of the last refresh (`customer_id`, `entered_at`)."""
    stays = warehouse.table("audience_members")
    return stays.filter((stays.audience == name) & stays.left_at.isnull()).select(
        "customer_id", "entered_at"
    )


def size_history(warehouse: Warehouse, name: str) -> list[dict[str, Any]]:
    """Each refresh: when, the size, how many entered and left; oldest first."""
    sizes = warehouse.table("audience_sizes")
    rows = sizes.filter(sizes.audience == name).order_by("computed_at").to_pyarrow().to_pylist()
    return [{**row, "computed_at": row["computed_at"].isoformat()} for row in rows]
