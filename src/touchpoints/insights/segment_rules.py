"""The segment rule language: parsing, checking, and compiling to Ibis.

A rule is a tree of plain dicts and lists, written in JSON or YAML (both parse to the
same tree, see `parse_rule`). Each node is a dict with exactly one of these keys:

- ``{"and": [RULE, …]}``, ``{"or": [RULE, …]}`` (at least one rule), ``{"not": RULE}``.
- ``{"trait": NAME, "op": OP, "value": V}``: a profile trait (the latest value of a key of
  the `traits` JSON of `profiles`; dots reach nested keys, ``address.city``).
- ``{"computed": NAME, "op": OP, "value": V}``: a column the profile build computed:
  numbers `sessions`, `orders`, `revenue`, `average_order_value`, `emails_delivered`,
  `emails_opened`, `emails_clicked`, `email_open_rate`; text `last_channel`; times
  `first_seen`, `last_seen`; lists `channels`, `favourite_categories`.
- ``{"did": EVENT, "at_least": N, "at_most": M, "in_last_days": D, "where": {…}}``: the
  customer did EVENT at least N times (default 1; at most M times when given) in the D
  days before `as_of`, or ``"since": DATE`` (an ISO date or time, UTC when no zone),
  or ever (before `as_of`) when neither is given. EVENT is a track event name, or
  ``page:/path`` / ``screen:Name`` as in funnels.
- ``{"did_not": EVENT, "in_last_days": D}`` or ``{"did_not": EVENT, "since": DATE}``: no
  such event in that time (or ever); the same ``where`` applies.
- ``{"segment": NAME}``: membership of a saved segment, by name, looked up in the
  definitions passed in; a segment that reaches itself is refused.

OP is one of ``=, !=, <, <=, >, >=, in, contains, exists``:

- ``=``/``!=`` take a scalar; ``!=`` is exactly ``not =`` (a missing value differs).
- ``<``, ``<=``, ``>``, ``>=`` compare numbers, texts or (for `first_seen`, `last_seen`)
  times given as ISO text; a missing value is never smaller nor larger.
- ``in`` takes a non-empty list of texts or of numbers.
- ``contains``: a text holds the substring; a list (`channels`) holds the element.
- ``exists``: the value is present (``"value": false`` for absent; default true).

Traits and event properties are JSON, so the value decides how they compare: a number
compares the field read as a number (text that is not a number is never equal, smaller
or larger), a boolean compares ``true``/``false``, a text compares the text. Computed
columns have types, and a value of another type is an error.

``where`` filters the events of ``did``/``did_not``: ``{FIELD: VALUE}`` means ``=``, a
list means ``in``, ``{"op": OP, "value": V}`` any comparison. FIELD is an event property
(``category`` or ``properties.category``), ``traits.x``, ``context.x``, or a column
field of `touchpoints.insights.frame.COLUMN_FIELDS` (``channel``, ``path``, …).

Example (JSON, then the same in YAML)::

    {"and": [{"trait": "tier", "op": "=", "value": "gold"},
             {"did": "Order Completed", "at_least": 2, "in_last_days": 90,
              "where": {"category": "shoes", "revenue": {"op": ">=", "value": 50}}},
             {"not": {"segment": "vip"}}]}

    or:
      - computed: orders
        op: ">="
        value: 5
      - did_not: Email Opened
        since: 2026-01-01

Errors (an unknown key, field, operator or segment, a value of the wrong type, a cycle)
raise `InvalidInput` whose `field` is the path of the bad node from ``rule`` (or from
``segments.NAME`` inside a saved definition): ``rule.and[1].at_least``,
``rule.or[0].value[2]``, ``rule.and[1].where.category``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import yaml

from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import event_field
from touchpoints.insights.funnels import Step
from touchpoints.insights.useragent import TECHNOLOGY_FIELDS
from touchpoints.warehouse.functions import json_text

Rule = Mapping[str, Any]

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "contains", "exists")
_ORDERING = ("<", "<=", ">", ">=")

#: Profile columns a ``computed`` node may name, and how they compare.
COMPUTED: dict[str, str] = {
    **dict.fromkeys(("sessions", "orders", "revenue", "average_order_value",
                     "emails_delivered", "emails_opened", "emails_clicked",
                     "email_open_rate"), "number"),
    "last_channel": "text",
    "first_seen": "time",
    "last_seen": "time",
    "channels": "list",
    "favourite_categories": "list",
}  # fmt: skip

_KINDS = ("and", "or", "not", "trait", "computed", "did", "did_not", "segment")
_KEYS = {
    "trait": {"trait", "op", "value"},
    "computed": {"computed", "op", "value"},
    "did": {"did", "at_least", "at_most", "in_last_days", "since", "where"},
    "did_not": {"did_not", "in_last_days", "since", "where"},
}
_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def parse_rule(text: str) -> dict[str, Any]:
    """A rule from JSON or YAML text (JSON first; YAML is tried when JSON fails)."""
    try:
        tree = json.loads(text)
    except ValueError:
        try:
            tree = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"the rule is neither JSON nor YAML: {exc}", field="rule") from exc
    if not isinstance(tree, dict):
        raise InvalidInput("a rule is an object (a mapping)", field="rule")
    return tree


# -- the checked tree ----------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    """A field of the customer (or of an event, in ``where``) against a value."""

    name: str
    kind: str  # json, number, text, time, list
    op: str
    value: Any


@dataclass(frozen=True)
class EventCount:
    """Which events a ``did``/``did_not`` node counts (one count column per distinct one)."""

    event: str
    where: tuple[Compare, ...]
    days: int | None
    since: datetime | None


@dataclass(frozen=True)
class Logic:
    op: str  # and, or, not
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Trait:
    source: str  # trait or computed
    test: Compare


@dataclass(frozen=True)
class Did:
    count: EventCount
    at_least: int
    at_most: int | None


Node = Logic | Trait | Did


class RuleChecker:
    """Checks rules into `Node` trees, inlining saved segments (each checked once)."""

    def __init__(self, segments: Mapping[str, Rule] | None = None) -> None:
        self.segments = dict(segments or {})
        self._done: dict[str, Node] = {}

    def check(self, rule: Any, path: str = "rule", stack: tuple[str, ...] = ()) -> Node:
        """The checked tree of `rule`; `stack` is the chain of segments being expanded."""
        if not isinstance(rule, Mapping):
            raise InvalidInput(f"a rule is an object, not {_what(rule)}", field=path)
        kinds = [k for k in _KINDS if k in rule]
        if len(kinds) != 1:
            wanted = ", ".join(_KINDS)
            found = "several" if kinds else "none"
            raise InvalidInput(f"a rule has exactly one of {wanted} ({found} here)", field=path)
        kind = kinds[0]
        allowed = _KEYS.get(kind, {kind})
        for key in rule:
            if key not in allowed:
                raise InvalidInput(
                    f"{key!r} is not a key of a {kind!r} rule", field=f"{path}.{key}"
                )
        if kind in ("and", "or"):
            items = rule[kind]
            if not isinstance(items, list) or not items:
                raise InvalidInput(
                    f"{kind!r} takes a non-empty list of rules", field=f"{path}.{kind}"
                )
            return Logic(kind, tuple(
                self.check(item, f"{path}.{kind}[{i}]", stack) for i, item in enumerate(items)
            ))  # fmt: skip
        if kind == "not":
            return Logic("not", (self.check(rule["not"], f"{path}.not", stack),))
        if kind == "segment":
            return self._segment(rule["segment"], f"{path}.segment", stack)
        if kind in ("trait", "computed"):
            return Trait(kind, _comparison(rule, kind, path))
        return self._did(rule, kind, path)

    def _segment(self, name: Any, path: str, stack: tuple[str, ...]) -> Node:
        if not isinstance(name, str) or name not in self.segments:
            raise InvalidInput(f"there is no saved segment {name!r}", field=path)
        if name in stack:
            chain = " -> ".join((*stack[stack.index(name) :], name))
            raise InvalidInput(f"segments refer to each other in a cycle: {chain}", field=path)
        if name not in self._done:
            definition = self.segments[name]
            self._done[name] = self.check(definition, f"segments.{name}", (*stack, name))
        return self._done[name]

    def _did(self, rule: Rule, kind: str, path: str) -> Did:
        event = rule[kind]
        if not isinstance(event, str) or not event.strip():
            raise InvalidInput("the event is a non-empty text", field=f"{path}.{kind}")
        at_least = _integer(rule.get("at_least", 1), f"{path}.at_least", minimum=1)
        at_most = rule.get("at_most")
        if at_most is not None:
            at_most = _integer(at_most, f"{path}.at_most", minimum=at_least)
        if kind == "did_not":
            at_least, at_most = 0, 0
        days = rule.get("in_last_days")
        if days is not None:
            days = _integer(days, f"{path}.in_last_days", minimum=1)
        since = rule.get("since")
        if since is not None:
            if days is not None:
                raise InvalidInput("give in_last_days or since, not both", field=f"{path}.since")
            since = _time(since, f"{path}.since")
        where = rule.get("where", {})
        if not isinstance(where, Mapping):
            raise InvalidInput("'where' maps event fields to values", field=f"{path}.where")
        tests = tuple(_where(key, value, f"{path}.where.{key}") for key, value in where.items())
        return Did(EventCount(event.strip(), tests, days, since), at_least, at_most)


def validate_rule(rule: Any, segments: Mapping[str, Rule] | None = None) -> None:
    """Raise `InvalidInput` (with the path) when `rule` is not a valid rule."""
    RuleChecker(segments).check(rule)


def _comparison(rule: Rule, kind: str, path: str) -> Compare:
    name = rule[kind]
    if kind == "computed":
        if name not in COMPUTED:
            known = ", ".join(COMPUTED)
            raise InvalidInput(
                f"unknown computed trait {name!r} (one of {known})", field=f"{path}.computed"
            )
        field_kind = COMPUTED[name]
    else:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(f"{name!r} is not a trait name (letters, digits, _ and dots)",
                               field=f"{path}.trait")  # fmt: skip
        field_kind = "json"
    if "op" not in rule:
        raise InvalidInput(f"the operator is missing (one of {', '.join(OPERATORS)})",
                           field=f"{path}.op")  # fmt: skip
    return _compare(name, field_kind, rule["op"], rule.get("value", _MISSING), path)


def _where(key: Any, spec: Any, path: str) -> Compare:
    if not isinstance(key, str) or not _NAME.fullmatch(key) or key in TECHNOLOGY_FIELDS:
        raise InvalidInput(f"{key!r} is not an event field or property name", field=path)
    if isinstance(spec, Mapping):
        for extra in set(spec) - {"op", "value"}:
            raise InvalidInput(f"{extra!r} is not a key of a condition", field=f"{path}.{extra}")
        if "op" not in spec:
            raise InvalidInput("the operator is missing", field=f"{path}.op")
        return _compare(key, "json", spec["op"], spec.get("value", _MISSING), path)
    if isinstance(spec, list):
        return _compare(key, "json", "in", spec, path, value_path=path)
    return _compare(key, "json", "=", spec, path, value_path=path)


_MISSING = object()


def _compare(
    name: str, kind: str, op: Any, value: Any, path: str, value_path: str | None = None
) -> Compare:
    """Check that `op` applies to a field of `kind` with `value`, and normalise the value."""
    vpath = value_path or f"{path}.value"
    if op not in OPERATORS:
        raise InvalidInput(f"unknown operator {op!r} (one of {', '.join(OPERATORS)})",
                           field=f"{path}.op")  # fmt: skip
    if op == "exists":
        value = True if value is _MISSING else value
        if not isinstance(value, bool):
            raise InvalidInput("'exists' takes true or false", field=vpath)
        return Compare(name, kind, op, value)
    if value is _MISSING:
        raise InvalidInput(f"{op!r} needs a value", field=vpath)
    if op == "contains":
        if kind not in ("json", "text", "list"):
            raise InvalidInput(
                f"{name} is a {kind}: 'contains' needs a text or a list", field=f"{path}.op"
            )
        if not isinstance(value, str):
            raise InvalidInput(f"'contains' takes a text, not {_what(value)}", field=vpath)
        return Compare(name, kind, op, value)
    if kind == "list":
        raise InvalidInput(f"{name} is a list: use 'contains' or 'exists'", field=f"{path}.op")
    if op == "in":
        if not isinstance(value, list) or not value:
            raise InvalidInput("'in' takes a non-empty list", field=vpath)
        items = [_scalar(kind, name, v, f"{vpath}[{i}]", op) for i, v in enumerate(value)]
        if kind == "json" and len({type(v) for v in items}) > 1:
            raise InvalidInput("'in' takes texts or numbers, not both", field=vpath)
        return Compare(name, kind, op, tuple(items))
    return Compare(name, kind, op, _scalar(kind, name, value, vpath, op))


def _scalar(kind: str, name: str, value: Any, path: str, op: str) -> Any:
    """`value` as the type a field of `kind` compares with (float, str, bool, datetime)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and not math.isfinite(value):
        raise InvalidInput("numbers must be finite", field=path)
    if kind == "time":
        if op == "in":
            raise InvalidInput(f"{name} is a time: 'in' does not apply", field=path)
        return _time(value, path)
    if kind == "number" and not number:
        raise InvalidInput(f"{name} is a number; cannot compare it with {_what(value)}", field=path)
    if kind == "text" and not isinstance(value, str):
        raise InvalidInput(f"{name} is a text; cannot compare it with {_what(value)}", field=path)
    if kind == "json" and not (number or isinstance(value, str | bool)):
        raise InvalidInput(
            f"compare with a text, number or boolean, not {_what(value)}", field=path
        )
    if isinstance(value, bool) and (op in _ORDERING or op == "in"):
        raise InvalidInput(f"{op!r} does not apply to true/false", field=path)
    return float(value) if number else value


def _integer(value: Any, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"a whole number is needed, not {_what(value)}", field=path)
    if value < minimum:
        raise InvalidInput(f"must be at least {minimum}", field=path)
    return value


def _time(value: Any, path: str) -> datetime:
    """A UTC time from ISO text or a date/datetime (what YAML makes of unquoted dates)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidInput(f"{value!r} is not an ISO date or time", field=path) from exc
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        raise InvalidInput(f"a date or time (ISO text) is needed, not {_what(value)}", field=path)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _what(value: Any) -> str:
    return {bool: "true/false", str: "a text", list: "a list", dict: "an object"}.get(
        type(value), "a number" if isinstance(value, int | float) else repr(value)
    )


# -- compiling to Ibis ---------------------------------------------------------------


def count_columns(nodes: Sequence[Node]) -> dict[EventCount, str]:
    """A column name for each distinct event count the trees need."""
    found: dict[EventCount, str] = {}

    def visit(node: Node) -> None:
        if isinstance(node, Logic):
            for child in node.children:
                visit(child)
        elif isinstance(node, Did) and node.count not in found:
            found[node.count] = f"_did{len(found)}"

    for node in nodes:
        visit(node)
    return found


def count_expr(events: ir.Table, count: EventCount, as_of: datetime) -> ir.IntegerValue:
    """How many of a customer's `events` (all before `as_of`) `count` matches."""
    match = Step(count.event).matches(events)
    start = count.since
    if count.days is not None:
        start = as_of - timedelta(days=count.days)
    if start is not None:
        match &= events.timestamp >= start
    for test in count.where:
        match &= _test(event_field(events, test.name), test)
    return ibis.coalesce(match, False).cast("int64").sum()


def predicate(node: Node, table: ir.Table, columns: Mapping[EventCount, str]) -> ir.BooleanValue:
    """The never-null boolean of `node` over a customer table (see `segments`)."""
    if isinstance(node, Logic):
        parts = [predicate(child, table, columns) for child in node.children]
        if node.op == "not":
            return ~parts[0]
        return ibis.and_(*parts) if node.op == "and" else ibis.or_(*parts)
    if isinstance(node, Did):
        n = table[columns[node.count]]
        test = n >= node.at_least
        return test & (n <= node.at_most) if node.at_most is not None else test
    test = node.test
    value = json_text(table.traits, test.name) if node.source == "trait" else table[test.name]
    return _test(value, test)


def _test(value: ir.Value, test: Compare) -> ir.BooleanValue:
    """`value` against `test`, never null (a missing value fails all but != and absent)."""
    op, v = test.op, test.value
    if op == "exists":
        present = value.notnull()
        if test.kind == "list":
            present &= value.length() > 0
        present = ibis.coalesce(present, False)
        return present if v else ~present
    if op == "!=":
        return ~_test(value, Compare(test.name, test.kind, "=", v))
    if op == "contains":
        found = value.contains(v)
    else:
        sample = v[0] if op == "in" else v
        if test.kind == "json" and isinstance(sample, float):
            value = value.try_cast("float64")
        elif test.kind == "json" and isinstance(sample, bool):
            v = "true" if v else "false"
        if op == "in":
            found = value.isin(list(v))
        else:
            found = {
                "=": value == v, "<": value < v, "<=": value <= v, ">": value > v, ">=": value >= v
            }[op]  # fmt: skip
    return ibis.coalesce(found, False)
