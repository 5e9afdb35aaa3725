"""Identity resolution: from the event log to one stable `customer_id` per person.

1. Read every event's identifiers (`identifiers.py`) and link each event's hub to the
   rest.
2. Quarantine identifiers linked to more identifiers of one kind than `max_links`
   allows (a shared tablet, `none@none.com`, a test phone number): they keep a customer
   of their own and join nobody, and are listed in `identity_quarantine`.
3. Connected components (`components.py`) are the people.
4. Customer ids stay stable: each earlier customer id goes to the component that holds
   most of its identifiers; a component keeps the smallest id it inherits, and the
   others it inherits are recorded in `identity_merges` (which, when, through which
   link). A component that inherits none gets `cus_` + the MD5 of its smallest
   identifier, so the same data always gives the same ids.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import ibis
import ibis.expr.types as ir

from touchpoints.identity.components import connected_components
from touchpoints.identity.config import IdentityConfig
from touchpoints.identity.identifiers import edges, event_identifiers, nodes
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.functions import md5_hex


@dataclass(frozen=True)
class ResolveSummary:
    identifiers: int
    customers: int
    merges: int
    quarantined: int


def resolve(warehouse: Warehouse, config: IdentityConfig | None = None) -> ResolveSummary:
    """Rebuild `identities`, append to `identity_merges`, refresh `identity_quarantine`."""
    config = config or IdentityConfig()
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]

    def store(expr: ir.Table, name: str) -> ir.Table:
        temporary.append(f"_tp_{run}_{name}")
        return warehouse.scratch(expr, temporary[-1])

    temporary: list[str] = []
    try:
        identified = event_identifiers(warehouse.table("events"), config)
        all_nodes = store(nodes(identified, config), "nodes")
        links = store(edges(identified, config), "links")
        quarantine = store(_over_limit(links, config, now), "quarantine")
        bad = quarantine.select("identifier").distinct()
        kept_links = links.anti_join(bad, links.a == bad.identifier)
        bad_too = bad.view()
        kept_links = kept_links.anti_join(bad_too, kept_links.b == bad_too.identifier)
        labels = connected_components(
            all_nodes.select(node=all_nodes.identifier), kept_links, store, prefix=f"_tp_{run}_cc"
        )
        previous = warehouse.table("identities").select("identifier", "customer_id")
        owners = store(_owners(labels, previous), "owners")
        merges = _merges(owners, labels, previous, links, now)
        identities = _identities(all_nodes, labels, owners, bad, now)
        new_merges = store(merges, "merges")
        warehouse.replace("identities", identities)
        merge_rows = new_merges.to_pyarrow()
        warehouse.insert("identity_merges", merge_rows)
        warehouse.replace("identity_quarantine", quarantine)
        table = warehouse.table("identities")
        return ResolveSummary(
            identifiers=int(table.count().execute()),
            customers=int(table.customer_id.nunique().execute()),
            merges=merge_rows.num_rows,
            quarantined=int(bad.count().execute()),
        )
    finally:
        for name in temporary:
            warehouse.drop_scratch(name)


def _over_limit(links: ir.Table, config: IdentityConfig, now: datetime) -> ir.Table:
    both = ibis.union(
        links.select("a", "a_kind", "b", "b_kind"),
        links.select(a=links.b, a_kind=links.b_kind, b=links.a, b_kind=links.a_kind),
        distinct=True,
    )
    counted = both.group_by(identifier=both.a, kind=both.a_kind, linked_kind=both.b_kind).agg(
        links=both.b.nunique()
    )
    limits = ibis.memtable(
        {
            "limit_kind": list(config.max_links),
            "max_links": [int(v) for v in config.max_links.values()],
        }
    )
    joined = counted.join(limits, counted.linked_kind == limits.limit_kind)
    return joined.filter(joined.links > joined.max_links).select(
        identifier=joined.identifier,
        kind=joined.kind,
        linked_kind=joined.linked_kind,
        links=joined.links.cast("int64"),
        max_links=joined.max_links.cast("int64"),
        detected_at=ibis.literal(now, type="timestamp('UTC')"),
    )


def _owners(labels: ir.Table, previous: ir.Table) -> ir.Table:
    """(label, customer_id): the id each component keeps, earlier or new."""
    claims = (
        labels.join(previous, labels.node == previous.identifier)
        .group_by("label", "customer_id")
        .agg(held=ibis._.count())
    )
    ranked = claims.mutate(
        rank=ibis.row_number().over(
            group_by=claims.customer_id, order_by=[ibis.desc(claims.held), claims.label]
        )
    )
    heirs = ranked.filter(ranked.rank == 0).select("label", "customer_id")
    kept = heirs.group_by("label").agg(kept=heirs.customer_id.min())
    components = labels.select("label").distinct()
    joined = components.left_join(kept, components.label == kept.label)
    fresh = "cus_" + md5_hex(joined.label).substr(0, 20)
    inherited = heirs.join(kept, heirs.label == kept.label).select(
        label=heirs.label, inherited=heirs.customer_id
    )
    owners = joined.select(label=components.label, customer_id=ibis.coalesce(joined.kept, fresh))
    return owners.left_join(inherited, owners.label == inherited.label).select(
        label=owners.label, customer_id=owners.customer_id, inherited=inherited.inherited
    )


def _merges(
    owners: ir.Table, labels: ir.Table, previous: ir.Table, links: ir.Table, now: datetime
) -> ir.Table:
    """One row per earlier customer id absorbed into another, with a link that did it."""
    absorbed = owners.filter(owners.inherited.notnull() & (owners.inherited != owners.customer_id))
    left, right = previous.view(), previous.view()
    linked = (
        links.join(left, links.a == left.identifier)
        .join(right, links.b == right.identifier)
        .select(a=links.a, b=links.b, a_customer=left.customer_id, b_customer=right.customer_id)
    )
    forward = absorbed.join(
        linked,
        (linked.a_customer == absorbed.customer_id) & (linked.b_customer == absorbed.inherited),
    ).select(
        customer_id=absorbed.customer_id, merged=absorbed.inherited, via=linked.a, other=linked.b
    )
    backward = absorbed.join(
        linked,
        (linked.b_customer == absorbed.customer_id) & (linked.a_customer == absorbed.inherited),
    ).select(
        customer_id=absorbed.customer_id, merged=absorbed.inherited, via=linked.b, other=linked.a
    )
    how = (
        ibis.union(forward, backward)
        .group_by("customer_id", "merged")
        .agg(via=ibis._.via.min(), other=ibis._.other.min())
    )
    rows = absorbed.left_join(
        how, (absorbed.customer_id == how.customer_id) & (absorbed.inherited == how.merged)
    )
    return rows.select(
        customer_id=absorbed.customer_id,
        merged_customer_id=absorbed.inherited,
        via_identifier=rows.via,
        linked_identifier=rows.other,
        merged_at=ibis.literal(now, type="timestamp('UTC')"),
    )


def _identities(
    all_nodes: ir.Table, labels: ir.Table, owners: ir.Table, bad: ir.Table, now: datetime
) -> ir.Table:
    owner = owners.select("label", "customer_id").distinct()
    with_label = all_nodes.join(labels, all_nodes.identifier == labels.node)
    with_owner = with_label.join(owner, with_label.label == owner.label)
    flagged = with_owner.left_join(bad, with_owner.identifier == bad.identifier)
    return flagged.select(
        identifier=with_owner.identifier,
        kind=with_owner.kind,
        customer_id=with_owner.customer_id,
        quarantined=bad.identifier.notnull(),
        first_seen=with_owner.first_seen,
        last_seen=with_owner.last_seen,
        resolved_at=ibis.literal(now, type="timestamp('UTC')"),
    )
