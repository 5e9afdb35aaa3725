"""The customer 360: one row per customer from the event log and the identities.

Counts and sums are Ibis aggregations (any engine); the latest traits are merged per
trait key in Python (latest timestamp wins), since trait keys are open-ended.
Sessions follow the web-analytics rule: a web or app visit ends after 30 minutes
without an event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import ibis
import ibis.expr.types as ir
import orjson
import pyarrow as pa

from touchpoints.identity.attribution import with_customer
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.functions import json_text

SESSION_GAP = timedelta(minutes=30)
INTERACTIVE_CHANNELS = ("web", "app")
BROWSING_EVENTS = ("Product Viewed", "Product Added", "Product Clicked")


def profile_aggregates(events: ir.Table, identities: ir.Table) -> ir.Table:
    """Per customer: identifiers, time span, channels, sessions, orders, revenue,
    favourite categories and email engagement (no traits; see `build_profiles`)."""
    attributed = with_customer(events, identities)
    is_order = attributed.event == "Order Completed"
    spans = attributed.group_by("customer_id").agg(
        first_seen=attributed.timestamp.min(),
        last_seen=attributed.timestamp.max(),
        channels=attributed.channel.collect(distinct=True),
        last_channel=attributed.channel.argmax(attributed.timestamp),
        orders=is_order.sum().cast("int64"),
        revenue=attributed.revenue.sum(where=is_order),
        emails_delivered=(attributed.event == "Email Delivered").sum().cast("int64"),
        emails_opened=(attributed.event == "Email Opened").sum().cast("int64"),
        emails_clicked=(attributed.event == "Email Link Clicked").sum().cast("int64"),
    )
    sessions = _sessions(attributed)
    categories = _favourite_categories(attributed)
    known = identities.group_by("customer_id").agg(identifiers=identities.identifier.collect())
    joined = (
        spans.left_join(sessions, spans.customer_id == sessions.customer_id)
        .left_join(categories, spans.customer_id == categories.customer_id)
        .left_join(known, spans.customer_id == known.customer_id)
    )
    return joined.select(
        customer_id=spans.customer_id,
        identifiers=known.identifiers,
        first_seen=spans.first_seen,
        last_seen=spans.last_seen,
        channels=spans.channels,
        last_channel=spans.last_channel,
        sessions=ibis.coalesce(sessions.sessions, 0).cast("int64"),
        orders=spans.orders,
        revenue=ibis.coalesce(spans.revenue, 0.0),
        average_order_value=ibis.ifelse(
            spans.orders > 0, spans.revenue / spans.orders, ibis.null()
        ).cast("float64"),
        favourite_categories=categories.favourite_categories,
        emails_delivered=spans.emails_delivered,
        emails_opened=spans.emails_opened,
        emails_clicked=spans.emails_clicked,
        email_open_rate=ibis.ifelse(
            spans.emails_delivered > 0, spans.emails_opened / spans.emails_delivered, ibis.null()
        ).cast("float64"),
    )


def _sessions(attributed: ir.Table) -> ir.Table:
    visits = attributed.filter(attributed.channel.isin(INTERACTIVE_CHANNELS))
    window = ibis.window(group_by=visits.customer_id, order_by=visits.timestamp)
    previous = visits.timestamp.lag().over(window)
    starts = visits.mutate(
        starts=previous.isnull() | (visits.timestamp > previous + ibis.interval(minutes=30))
    )
    return starts.group_by("customer_id").agg(sessions=starts.starts.sum())


def _favourite_categories(attributed: ir.Table, top: int = 3) -> ir.Table:
    browsing = attributed.filter(attributed.event.isin(BROWSING_EVENTS)).mutate(
        category=json_text(attributed.properties, "category")
    )
    counted = (
        browsing.filter(browsing.category.notnull())
        .group_by("customer_id", "category")
        .agg(n=ibis._.count())
    )
    ranked = counted.mutate(
        rank=ibis.row_number().over(
            group_by=counted.customer_id, order_by=[ibis.desc(counted.n), counted.category]
        )
    )
    best = ranked.filter(ranked.rank < top)
    # one column per place, then an array: ordered collection is not portable to Spark
    places = best.group_by("customer_id").agg(
        **{f"p{i}": best.category.max(where=best.rank == i) for i in range(top)}
    )
    ordered = ibis.array([places[f"p{i}"] for i in range(top)])
    return places.select("customer_id", favourite_categories=ordered.filter(lambda c: c.notnull()))


def latest_traits(events: ir.Table, identities: ir.Table) -> dict[str, dict]:
    """customer_id -> traits, each trait key taking its latest value."""
    attributed = with_customer(events, identities)
    carrying = (
        attributed.filter(attributed.traits.notnull())
        .select("customer_id", "timestamp", "traits")
        .order_by(["customer_id", "timestamp"])
    )
    merged: dict[str, dict] = {}
    for batch in carrying.to_pyarrow_batches(chunk_size=100_000):
        for customer, traits in zip(
            batch.column("customer_id").to_pylist(), batch.column("traits").to_pylist(), strict=True
        ):
            merged.setdefault(customer, {}).update(orjson.loads(traits))
    return merged


def build_profiles(warehouse: Warehouse) -> int:
    """Rebuild the `profiles` table; returns how many customers it holds."""
    events, identities = warehouse.table("events"), warehouse.table("identities")
    table = profile_aggregates(events, identities).order_by("customer_id").to_pyarrow()
    traits = latest_traits(events, identities)
    texts = [
        orjson.dumps(traits[c]).decode() if c in traits else None
        for c in table.column("customer_id").to_pylist()
    ]
    now = datetime.now(UTC)
    table = table.append_column("traits", pa.array(texts, pa.string())).append_column(
        "built_at", pa.array([now] * table.num_rows, pa.timestamp("us", tz="UTC"))
    )
    from touchpoints.warehouse.schema import PROFILES

    ordered = table.select(PROFILES.names).cast(PROFILES.to_pyarrow())
    warehouse.replace("profiles", ibis.memtable(ordered))
    return ordered.num_rows
