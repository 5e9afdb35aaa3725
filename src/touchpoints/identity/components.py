"""Connected components of a graph held in two tables, in Ibis (any engine).

Label propagation with pointer jumping: every node starts labelled by itself; each
round a node takes the smallest label among itself and its neighbours, then the label
of its label (which halves the distance to the component's smallest node). Rounds end
when no label changes: about log2 of the component diameter rounds, plus a couple.
Each round is stored (`store`) so expressions stay small and engines see real tables.
"""

from __future__ import annotations

from collections.abc import Callable

import ibis
import ibis.expr.types as ir

Store = Callable[[ir.Table, str], ir.Table]


def connected_components(
    nodes: ir.Table, links: ir.Table, store: Store, *, max_rounds: int = 64, prefix: str = "_tp_cc"
) -> ir.Table:
    """(node, label) for every node of `nodes` (column `node`), where `links` holds
    undirected edges (columns `a`, `b`); label = the smallest node of the component."""
    both = ibis.union(links.select("a", "b"), links.select(a=links.b, b=links.a), distinct=True)
    edges = store(both, f"{prefix}_edges")
    labels = store(nodes.select(node=nodes.node, label=nodes.node), f"{prefix}_0")
    for round_number in range(1, max_rounds + 1):
        neighbour = (
            edges.join(labels, edges.b == labels.node)
            .group_by(node=edges.a)
            .agg(smallest=labels.label.min())
        )
        spread = labels.left_join(neighbour, labels.node == neighbour.node).select(
            node=labels.node,
            label=ibis.least(labels.label, ibis.coalesce(neighbour.smallest, labels.label)),
        )
        spread = store(spread, f"{prefix}_{round_number}a")
        target = spread.view()
        jumped = spread.join(target, spread.label == target.node).select(
            node=spread.node, label=ibis.least(spread.label, target.label)
        )
        jumped = store(jumped, f"{prefix}_{round_number}")
        changed = (
            jumped.join(labels, jumped.node == labels.node)
            .filter(lambda t: t.label != t.label_right)
            .count()
            .execute()
        )
        labels = jumped
        if int(changed) == 0:
            return labels
    raise RuntimeError(f"connected components did not settle in {max_rounds} rounds")
