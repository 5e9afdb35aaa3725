"""Paths: what sessions do right after (or right before) a given step.

A *step* is what an event is called on a path: a track event's name (`Order Completed`),
`page:` + the view name of a page view (its path, else name, else URL: `page:/home`), or
`screen:` + a screen's name (`screen:Home`), as in funnels. Other events (identify,
group, alias) are not steps: they are skipped, though they still count when cutting
sessions (see `touchpoints.insights.sessions`).

For each session holding the anchor step, one occurrence of the anchor is chosen:

- `after`: the session's FIRST occurrence; `step_1` is the next step, `step_2` the one
  after it, and so on;
- `before`: the session's LAST occurrence; `step_1` is the step just before it, `step_2`
  the one before that, and so on (read backwards in time).

Steps are taken in the session's order (`seq`: time, then message id) and never cross
the session's edge; where the session ends (or, before, begins) within K steps the
remaining `step_k` are null. A repeated anchor appears as an ordinary step on the path.

The Sankey graph labels each node with its signed offset from the anchor, `"0 · Checkout"`
for the anchor, `"1 · page:/home"` after it or `"-1 · page:/home"` before it, so the
graph is acyclic; edges always run forward in time (before: from `-2` to `-1` to `0`).
Session boundaries are explicit nodes: a session that ends within K steps after the
anchor flows into `"k · (end)"`; one that begins within K steps before it flows from
`"-k · (start)"`. So every node between the anchor and position ±K carries as many
sessions in as out, and the edges leaving (or entering) the anchor add up to the sessions
containing the anchor. The graph covers every path, not only the `top` ones.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from touchpoints.errors import InvalidInput
from touchpoints.insights.sessions import view_name

MAX_STEPS = 10
DIRECTIONS = ("after", "before")
END, START = "(end)", "(start)"
_DOT = " · "


def step_name(events: ir.Table) -> ir.StringValue:
    """The step each event stands for (see the module docstring); null for events that
    are not steps."""
    view = view_name(events)
    return ibis.cases(
        (events.type == "track", events.event),
        (events.type == "page", "page:" + view),
        (events.type == "screen", "screen:" + view),
        else_=ibis.null("string"),
    )


def _check(anchor: str, direction: str, steps: int, top: int = 1) -> None:
    if not isinstance(anchor, str) or not anchor.strip():
        raise InvalidInput("the anchor step must be an event name, page:PATH or screen:NAME",
                           field="anchor")  # fmt: skip
    if direction not in DIRECTIONS:
        raise InvalidInput(f"the direction is 'after' or 'before', not {direction!r}",
                           field="direction")  # fmt: skip
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise InvalidInput(f"steps must be a whole number from 1 to {MAX_STEPS}", field="steps")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InvalidInput("top must be a whole number of at least 1", field="top")


def anchored_paths(sessionized: ir.Table, anchor: str, direction: str = "after",
                   steps: int = 3) -> ir.Table:  # fmt: skip
    """One row per session holding the anchor: `session_id` and `step_1..step_K`."""
    _check(anchor, direction, steps)
    t = sessionized.mutate(_step=step_name(sessionized))
    t = t.filter(t._step.notnull())
    ordered = ibis.window(group_by="session_id", order_by="seq")
    whole = ibis.window(group_by="session_id")
    at_anchor = ibis.ifelse(t._step == anchor, t.seq, ibis.null("int64"))
    chosen = at_anchor.min() if direction == "after" else at_anchor.max()
    shift = (lambda k: t._step.lead(k)) if direction == "after" else (lambda k: t._step.lag(k))
    t = t.mutate(
        _anchor_seq=chosen.over(whole),
        **{f"step_{k}": shift(k).over(ordered) for k in range(1, steps + 1)},
    )
    t = t.filter(t.seq == t._anchor_seq)
    return t.select("session_id", *[f"step_{k}" for k in range(1, steps + 1)])


def paths(sessionized: ir.Table, anchor: str, direction: str = "after", steps: int = 3,
          top: int = 20) -> ir.Table:  # fmt: skip
    """The `top` most common paths of K steps after (or before) the anchor: `step_1..step_K`
    (null past the session's edge), `sessions` and `share` (of the sessions holding the
    anchor), by sessions (most first), then path (null before any value)."""
    _check(anchor, direction, steps, top)
    columns = [f"step_{k}" for k in range(1, steps + 1)]
    per_session = anchored_paths(sessionized, anchor, direction, steps)
    counted = per_session.group_by(columns).aggregate(sessions=per_session.count())
    counted = counted.mutate(
        share=counted.sessions.cast("float64") / counted.sessions.sum().over(ibis.window())
    )
    order = [ibis.desc("sessions"), *[ibis.asc(c, nulls_first=True) for c in columns]]
    return counted.order_by(order).limit(top)


def sankey(sessionized: ir.Table, anchor: str, direction: str = "after",
           steps: int = 3) -> ir.Table:  # fmt: skip
    """The edges of the Sankey diagram of all paths: `source`, `target` and `value`
    (sessions taking the edge), by value (most first), then source and target. Node
    labels and session boundaries: see the module docstring."""
    _check(anchor, direction, steps)
    per_session = anchored_paths(sessionized, anchor, direction, steps)
    sign = 1 if direction == "after" else -1
    edge = END if direction == "after" else START

    def node(k: int) -> ir.StringValue:
        name = ibis.literal(anchor) if k == 0 else per_session[f"step_{k}"]
        return ibis.literal(f"{sign * k}{_DOT}") + name

    parts = []
    for k in range(steps):
        nearer, farther = node(k), node(k + 1)
        farther = ibis.coalesce(farther, ibis.literal(f"{sign * (k + 1)}{_DOT}{edge}"))
        source, target = (nearer, farther) if sign == 1 else (farther, nearer)
        kept = per_session.filter(nearer.notnull())
        parts.append(kept.select(source=source, target=target))
    edges = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    edges = edges.group_by(["source", "target"]).aggregate(value=edges.count())
    return edges.order_by([ibis.desc("value"), "source", "target"])
