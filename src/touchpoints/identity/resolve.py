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
from touchpoints.warehouse.connection import IDENTITY_SETTINGS
from touchpoints.warehouse.functions import md5_hex
from touchpoints.warehouse.personal import IdentifierRules
from touchpoints.warehouse.reblind import reblind


@dataclass(frozen=True)
class ResolveSummary:
    identifiers: int
    customers: int
    merges: int
    quarantined: int
    mode: str = "full"  # full, incremental, or unchanged


WATERMARK = "identity_watermark"
SETTINGS = IDENTITY_SETTINGS


def resolve(
    warehouse: Warehouse, config: IdentityConfig | None = None, *, full: bool = False
) -> ResolveSummary:
    """Bring `identities` up to date with the event log. Without `config`, the settings
    of the last build (stored in `meta`) apply, else the defaults.

    After a first (full) build, a run looks only at events received since the last one
    and at the links they add (`incremental.py`), unless `full` is asked for or a new
    link quarantines an identifier (which may split people: then everything is redone).
    """
    stored = warehouse.get_meta(SETTINGS)
    config = config or (IdentityConfig.from_json(stored) if stored else IdentityConfig())
    now = datetime.now(UTC)
    events = warehouse.table("events")
    high = events.received_at.max().to_pyarrow().as_py()
    watermark = warehouse.get_meta(WATERMARK)
    settings = config.to_json()
    same_settings = stored == settings  # new rules: redo everything
    rules = IdentifierRules(config.country_code, config.strip_plus_addressing)
    if rules != warehouse.identifier_rules:
        reblind(warehouse, rules)  # sealed emails and phones get blinds under the new rules
    with Scratch(warehouse) as store:
        incremental = not full and same_settings and watermark is not None
        if incremental and warehouse.count("identities") > 0:
            from touchpoints.identity.incremental import resolve_new

            since = datetime.fromisoformat(watermark)
            summary = resolve_new(warehouse, config, store, now, since, high)
            if summary is not None:
                if high is not None:
                    warehouse.set_meta(WATERMARK, high.isoformat())
                return summary
        summary = _resolve_all(warehouse, config, store, now, high)
    if high is not None:
        warehouse.set_meta(WATERMARK, high.isoformat())
    warehouse.set_meta(SETTINGS, settings)
    return summary


class Scratch:
    """Temporary tables of one run, dropped at its end."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.run = uuid.uuid4().hex[:8]
        self.names: list[str] = []

    def __call__(self, expr: ir.Table, name: str) -> ir.Table:
        self.names.append(f"_tp_{self.run}_{name}")
        return self.warehouse.scratch(expr, self.names[-1])

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.names:
            self.warehouse.drop_scratch(name)


def _resolve_all(
    warehouse: Warehouse,
    config: IdentityConfig,
    store: Scratch,
    now: datetime,
    high: datetime | None,
) -> ResolveSummary:
    events = warehouse.table("events")
    if high is not None:
        events = events.filter(events.received_at <= high)
    identified = event_identifiers(events, config)
    all_nodes = store(nodes(identified, config), "nodes")
    links = store(edges(identified, config), "links")
    quarantine = store(over_limit(links, config, now), "quarantine")
    bad = quarantine.select("identifier").distinct()
    kept_links = links.anti_join(bad, links.a == bad.identifier)
    bad_too = bad.view()
    kept_links = kept_links.anti_join(bad_too, kept_links.b == bad_too.identifier)
    labels = connected_components(
        all_nodes.select(node=all_nodes.identifier), kept_links, store, prefix=f"{store.run}_cc"
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
    warehouse.replace("identity_links", links)
    return summarise(warehouse, merge_rows.num_rows, "full")


def summarise(warehouse: Warehouse, merges: int, mode: str) -> ResolveSummary:
    table = warehouse.table("identities")
    counts = (
        table.aggregate(
            identifiers=table.count(),
            customers=table.customer_id.nunique(),
            quarantined=table.quarantined.sum(),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    return ResolveSummary(
        identifiers=int(counts["identifiers"]),
        customers=int(counts["customers"]),
        merges=merges,
        quarantined=int(counts["quarantined"] or 0),
        mode=mode,
    )


def over_limit(links: ir.Table, config: IdentityConfig, now: datetime) -> ir.Table:
    """Identifiers linked to more identifiers of one kind than `max_links` allows."""
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
        },
        schema={"limit_kind": "string", "max_links": "int64"},
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
    # after a split, a new id could equal one another component keeps: derive it again
    taken = kept.select(taken=kept.kept)
    fresh = ibis.ifelse(
        fresh.isin(taken.taken), "cus_" + md5_hex(joined.label + "#split").substr(0, 20), fresh
    )
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
    both = ibis.union(forward, backward)
    how = both.group_by("customer_id", "merged").agg(
        via=both.via.min(),
        other=both.other.argmin(both.via),  # both ends of one link
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
