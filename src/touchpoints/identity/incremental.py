"""Incremental identity resolution: only the events since the last build, and the links
they add, touch the graph.

Each new link joins customers, not identifiers: its ends are replaced by the customer
they already belong to (or stay themselves when new), and the connected components of
that small graph say which customers and new identifiers become one. A component keeps
the smallest customer id it holds (the rule of the full build), or, with none, gets
`cus_` + MD5 of its smallest identifier. A link that would push an identifier over its
limit can split people that were one; then the caller redoes everything.
"""

from __future__ import annotations

from datetime import datetime

import ibis
import ibis.expr.types as ir

from touchpoints.identity.components import connected_components
from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.identifiers import edges, event_identifiers, nodes
from touchpoints.identity.resolve import ResolveSummary, Scratch, over_limit, summarise
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.functions import md5_hex


def resolve_new(
    warehouse: Warehouse,
    config: IdentityConfig,
    store: Scratch,
    now: datetime,
    since: datetime,
    high: datetime | None,
) -> ResolveSummary | None:
    """Apply the events received in [since, high]; None when a full build is needed."""
    events = warehouse.table("events")
    fresh = events.filter(events.received_at >= since)
    if high is not None:
        fresh = fresh.filter(fresh.received_at <= high)
    identified = store(event_identifiers(fresh, config), "identified")
    fresh_nodes = store(nodes(identified, config), "fresh_nodes")
    known_links = warehouse.table("identity_links")
    found = edges(identified, config)
    new_links = store(
        found.anti_join(known_links, (found.a == known_links.a) & (found.b == known_links.b)),
        "new_links",
    )
    identities = warehouse.table("identities")
    if _quarantines_anyone(known_links, new_links, identities, config, now):
        return None
    new_ids = store(
        fresh_nodes.anti_join(identities, fresh_nodes.identifier == identities.identifier),
        "new_ids",
    )
    if int(new_links.count().execute()) == 0 and int(new_ids.count().execute()) == 0:
        _write(warehouse, store, identities, fresh_nodes, new_ids, None, now)  # times only
        return summarise(warehouse, 0, "unchanged")

    usable = _without_quarantined(new_links, identities)
    owner_a = identities.select(a_id=identities.identifier, a_customer=identities.customer_id)
    owner_b = identities.select(b_id=identities.identifier, b_customer=identities.customer_id)
    step = usable.left_join(owner_a, usable.a == owner_a.a_id).select(
        "a", "b", a_to=ibis.coalesce(owner_a.a_customer, usable.a)
    )
    step = step.left_join(owner_b, step.b == owner_b.b_id).select(
        a=step.a_to, b=ibis.coalesce(owner_b.b_customer, step.b), via=step.a, other=step.b
    )
    mapped = step
    mapped = store(mapped.filter(mapped.a != mapped.b), "mapped")
    super_nodes = ibis.union(
        mapped.select(node=mapped.a),
        mapped.select(node=mapped.b),
        new_ids.select(node=new_ids.identifier),
        distinct=True,
    )
    labels = connected_components(super_nodes, mapped, store, prefix=f"{store.run}_inc")
    is_customer = ~labels.node.contains(":")  # identifiers are kind:value; ids are not
    per_label = labels.group_by("label").agg(
        kept=labels.node.min(where=is_customer),
        smallest=labels.node.min(where=~is_customer),
    )
    owners = store(
        per_label.select(
            "label",
            customer_id=ibis.coalesce(
                per_label.kept, "cus_" + md5_hex(per_label.smallest).substr(0, 20)
            ),
        ),
        "owners",
    )
    node_owner = store(
        labels.join(owners, labels.label == owners.label).select(
            node=labels.node, customer_id=owners.customer_id
        ),
        "node_owner",
    )
    merges = store(_merges(node_owner, mapped, now), "merges")
    _write(warehouse, store, identities, fresh_nodes, new_ids, node_owner, now)
    merge_rows = merges.to_pyarrow()
    warehouse.insert("identity_merges", merge_rows)
    warehouse.insert("identity_links", new_links.to_pyarrow())
    return summarise(warehouse, merge_rows.num_rows, "incremental")


def _quarantines_anyone(
    known: ir.Table, new: ir.Table, identities: ir.Table, config: IdentityConfig, now: datetime
) -> bool:
    """Would the new links put an identifier not yet quarantined over a limit?"""
    touched = ibis.union(new.select(n=new.a), new.select(n=new.b), distinct=True)
    links = ibis.union(known, new, distinct=True)
    # two equi-joins, not one join on `a = n OR b = n`, which engines run as a loop
    by_a = links.join(touched, links.a == touched.n).select("a", "a_kind", "b", "b_kind")
    by_b = links.join(touched, links.b == touched.n).select("a", "a_kind", "b", "b_kind")
    near = ibis.union(by_a, by_b, distinct=True)
    over = over_limit(near, config, now)
    flagged = identities.filter(identities.quarantined).select("identifier")
    newly = over.anti_join(flagged, over.identifier == flagged.identifier)
    return int(newly.count().execute()) > 0


def _without_quarantined(links: ir.Table, identities: ir.Table) -> ir.Table:
    flagged = identities.filter(identities.quarantined).select(q=identities.identifier)
    clean = links.anti_join(flagged, links.a == flagged.q)
    other = flagged.view()
    return clean.anti_join(other, clean.b == other.q)


def _merges(node_owner: ir.Table, mapped: ir.Table, now: datetime) -> ir.Table:
    """Earlier customers that now belong to another, with a new link that did it."""
    absorbed = node_owner.filter(
        ~node_owner.node.contains(":") & (node_owner.node != node_owner.customer_id)
    )
    touching = mapped.join(
        absorbed, (mapped.a == absorbed.node) | (mapped.b == absorbed.node)
    ).select(
        merged=absorbed.node,
        near=ibis.ifelse(mapped.a == absorbed.node, mapped.other, mapped.via),
        far=ibis.ifelse(mapped.a == absorbed.node, mapped.via, mapped.other),
    )
    how = touching.group_by("merged").agg(
        via=touching.near.min(), other=touching.far.argmin(touching.near)
    )
    rows = absorbed.left_join(how, absorbed.node == how.merged)
    return rows.select(
        customer_id=absorbed.customer_id,
        merged_customer_id=absorbed.node,
        via_identifier=rows.via,
        linked_identifier=rows.other,
        merged_at=ibis.literal(now, type="timestamp('UTC')"),
    )


def _write(
    warehouse: Warehouse,
    store: Scratch,
    identities: ir.Table,
    fresh_nodes: ir.Table,
    new_ids: ir.Table,
    node_owner: ir.Table | None,
    now: datetime,
) -> None:
    """Rewrite `identities`: customers moved by merges, new identifiers added, first and
    last seen times widened. Without `node_owner` nothing moves (only times change)."""
    stamp = ibis.literal(now, type="timestamp('UTC')")
    if node_owner is None:
        node_owner = ibis.memtable(
            {"node": [], "customer_id": []}, schema={"node": "string", "customer_id": "string"}
        )
    moved = node_owner.filter(~node_owner.node.contains(":")).select(
        old=node_owner.node, new=node_owner.customer_id
    )
    seen = fresh_nodes.select(
        s_id=fresh_nodes.identifier, s_first=fresh_nodes.first_seen, s_last=fresh_nodes.last_seen
    )
    old = identities.left_join(moved, identities.customer_id == moved.old).left_join(
        seen, identities.identifier == seen.s_id
    )
    kept = old.select(
        identifier=identities.identifier,
        kind=identities.kind,
        customer_id=ibis.coalesce(old.new, identities.customer_id),
        quarantined=identities.quarantined,
        first_seen=ibis.least(
            identities.first_seen, ibis.coalesce(old.s_first, identities.first_seen)
        ),
        last_seen=ibis.greatest(
            identities.last_seen, ibis.coalesce(old.s_last, identities.last_seen)
        ),
        resolved_at=stamp,
    )
    owner = node_owner.select(o_node=node_owner.node, o_customer=node_owner.customer_id)
    added = new_ids.left_join(owner, new_ids.identifier == owner.o_node).select(
        identifier=new_ids.identifier,
        kind=new_ids.kind,
        customer_id=ibis.coalesce(
            owner.o_customer, "cus_" + md5_hex(new_ids.identifier).substr(0, 20)
        ),
        quarantined=ibis.literal(False),
        first_seen=new_ids.first_seen,
        last_seen=new_ids.last_seen,
        resolved_at=stamp,
    )
    # staged first: a table cannot be rewritten from a query that reads it (Spark)
    warehouse.replace("identities", store(ibis.union(kept, added), "identities_next"))
