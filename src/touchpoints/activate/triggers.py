"""Trigger rules: when something happens to a person, act — once per person per rule
within a frequency cap.

A definition (JSON):

- `when` — one of
  - `{"event": "Product Added", "properties": {"category": "shoes", "price": {"gte": 50}}}`
    (an event with these properties; operators `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in`);
  - `{"entered_audience": "vip"}` (a refresh of the audience found them new in it);
  - `{"churn_risk_above": 0.7, "horizon_days": 90, "every_minutes": 1440}` (their churn
    risk went from below to above the threshold between two evaluations);
- `unless` (event conditions only) — `{"event": "Order Completed", "within_minutes": 60}`:
  fire only if no such event follows within that time (cart abandonment);
- `action` — `{"email": CAMPAIGN}` (its templates, to this one person), `{"webhook":
  NAME}` (the person and the event, signed), or `{"offer": OFFER}` (a coupon assigned);
- `cap_hours` (default 24): at most one firing per person per rule within that time;
- `enabled` (default true).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from touchpoints.errors import InvalidInput
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.definitions import (
    delete_definition,
    load_definition,
    load_definitions,
    store_definition,
)

__all__ = [
    "delete_trigger",
    "get_trigger",
    "list_triggers",
    "matches",
    "parse_trigger",
    "save_trigger",
]

TABLE, KEY = "triggers", "name"
NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in")
ACTIONS = ("email", "webhook", "offer")
_MISSING = object()


def parse_trigger(body: Any) -> dict[str, Any]:
    """A checked trigger definition; InvalidInput naming the first bad field."""
    if not isinstance(body, Mapping):
        raise InvalidInput("a trigger is a JSON object", field="body")
    unknown = sorted(set(body) - {"name", "when", "unless", "action", "cap_hours", "enabled"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=unknown[0])
    name = body.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInput("name is 1–63 lower-case letters, digits, '_' or '-'", field="name")
    when = _when(body.get("when"))
    unless = body.get("unless")
    if unless is not None:
        if "event" not in when:
            raise InvalidInput("unless applies to event conditions only", field="unless")
        unless = _event_condition(unless, "unless")
        minutes = unless.get("within_minutes")
        if not isinstance(minutes, int | float) or isinstance(minutes, bool) or minutes <= 0:
            raise InvalidInput("within_minutes is a number above 0", field="unless.within_minutes")
    action = body.get("action")
    if not isinstance(action, Mapping) or len(action) != 1 or next(iter(action)) not in ACTIONS:
        raise InvalidInput(
            'action is one of {"email": CAMPAIGN}, {"webhook": NAME}, {"offer": OFFER}',
            field="action",
        )
    kind, target = next(iter(action.items()))
    if not isinstance(target, str) or not target:
        raise InvalidInput(f"action.{kind} names a {kind}", field=f"action.{kind}")
    cap = body.get("cap_hours", 24)
    if not isinstance(cap, int | float) or isinstance(cap, bool) or not 0 <= cap <= 24 * 366:
        raise InvalidInput("cap_hours is a number of hours, 0 to 8784", field="cap_hours")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled is true or false", field="enabled")
    return {
        "name": name,
        "when": when,
        "unless": unless,
        "action": {kind: target},
        "cap_hours": cap,
        "enabled": enabled,
    }


def _when(when: Any) -> dict[str, Any]:
    if isinstance(when, Mapping) and "event" in when:
        return _event_condition(when, "when")
    if isinstance(when, Mapping) and set(when) == {"entered_audience"}:
        if not isinstance(when["entered_audience"], str) or not when["entered_audience"]:
            raise InvalidInput("entered_audience names an audience", field="when.entered_audience")
        return dict(when)
    if isinstance(when, Mapping) and "churn_risk_above" in when:
        unknown = sorted(set(when) - {"churn_risk_above", "horizon_days", "every_minutes"})
        if unknown:
            raise InvalidInput(f"unknown field {unknown[0]!r}", field=f"when.{unknown[0]}")
        threshold = when["churn_risk_above"]
        if not isinstance(threshold, int | float) or not 0 < threshold < 1:
            raise InvalidInput("churn_risk_above is between 0 and 1", field="when.churn_risk_above")
        for field, default, top in (("horizon_days", 90, 3650), ("every_minutes", 1440, 525600)):
            value = when.get(field, default)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= top:
                raise InvalidInput(f"{field} is a whole number, 1 to {top}", field=f"when.{field}")
        return {
            "churn_risk_above": float(threshold),
            "horizon_days": when.get("horizon_days", 90),
            "every_minutes": when.get("every_minutes", 1440),
        }
    raise InvalidInput(
        'when is {"event": …}, {"entered_audience": …} or {"churn_risk_above": …}',
        field="when",
    )


def _event_condition(condition: Any, where: str) -> dict[str, Any]:
    if not isinstance(condition, Mapping):
        raise InvalidInput(f"{where} is a JSON object", field=where)
    unknown = sorted(set(condition) - {"event", "properties", "within_minutes"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}", field=f"{where}.{unknown[0]}")
    event = condition.get("event")
    if not isinstance(event, str) or not event.strip() or len(event) > 200:
        raise InvalidInput("event is an event name", field=f"{where}.event")
    properties = condition.get("properties", {})
    if not isinstance(properties, Mapping):
        raise InvalidInput("properties is a JSON object", field=f"{where}.properties")
    for key, test in properties.items():
        if isinstance(test, Mapping):
            bad = sorted(set(test) - set(OPERATORS))
            if bad or not test:
                raise InvalidInput(
                    f"operators are {', '.join(OPERATORS)}", field=f"{where}.properties.{key}"
                )
            if "in" in test and not isinstance(test["in"], list):
                raise InvalidInput("in takes a list", field=f"{where}.properties.{key}.in")
    return {k: v for k, v in condition.items() if k != "properties"} | {
        "properties": dict(properties)
    }


def matches(condition: Mapping[str, Any], event: str | None, properties: Mapping[str, Any]) -> bool:
    """Does an event of name `event` with `properties` meet an event condition? A
    dotted key reads inside nested objects (`product.category`)."""
    if event != condition["event"]:
        return False
    for key, test in condition.get("properties", {}).items():
        value: Any = properties
        for part in key.split("."):
            value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
        tests = test if isinstance(test, Mapping) else {"eq": test}
        if not all(_holds(op, value, wanted) for op, wanted in tests.items()):
            return False
    return True


def _holds(op: str, value: Any, wanted: Any) -> bool:
    if value is _MISSING:
        return op == "ne"
    if op == "eq":
        return value == wanted
    if op == "ne":
        return value != wanted
    if op == "in":
        return value in wanted
    try:
        return {
            "gt": value > wanted,
            "gte": value >= wanted,
            "lt": value < wanted,
            "lte": value <= wanted,
        }[op]
    except TypeError:  # a string against a number: not met
        return False


def save_trigger(warehouse: Warehouse, body: Any) -> dict[str, Any]:
    """Create or replace a trigger; returns it as stored."""
    trigger = parse_trigger(body)
    store_definition(warehouse, TABLE, KEY, trigger["name"], trigger)
    return trigger


def get_trigger(warehouse: Warehouse, name: str) -> dict[str, Any]:
    return load_definition(warehouse, TABLE, KEY, name, "trigger")


def list_triggers(warehouse: Warehouse) -> list[dict[str, Any]]:
    return load_definitions(warehouse, TABLE, KEY)


def delete_trigger(warehouse: Warehouse, name: str) -> None:
    """Remove a trigger and its waiting conditions."""
    delete_definition(warehouse, TABLE, KEY, name, "trigger")
    with warehouse.lock:
        warehouse.delete_where("trigger_pending", lambda t: t.trigger == name)
