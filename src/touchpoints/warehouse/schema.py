"""Table schemas of the warehouse, as data.

Every engine gets the same columns and types; `docs/schema.md` documents them and a
test keeps the two in step. JSON payloads are kept as text so that every Ibis backend
can hold them.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt

SCHEMA_VERSION = 1

UTC_TIMESTAMP = dt.Timestamp(timezone="UTC")

#: One row per event of the Segment spec, whatever the channel.
EVENTS = ibis.schema(
    {
        "message_id": dt.String(nullable=False),
        "source_id": dt.String(nullable=False),
        "type": dt.String(nullable=False),
        "event": dt.string,
        "name": dt.string,
        "anonymous_id": dt.string,
        "user_id": dt.string,
        "group_id": dt.string,
        "previous_id": dt.string,
        "timestamp": dt.Timestamp(timezone="UTC", nullable=False),
        "original_timestamp": UTC_TIMESTAMP,
        "sent_at": UTC_TIMESTAMP,
        "received_at": dt.Timestamp(timezone="UTC", nullable=False),
        "channel": dt.String(nullable=False),
        "page_url": dt.string,
        "page_path": dt.string,
        "page_title": dt.string,
        "page_referrer": dt.string,
        "utm_source": dt.string,
        "utm_medium": dt.string,
        "utm_campaign": dt.string,
        "utm_term": dt.string,
        "utm_content": dt.string,
        "user_agent": dt.string,
        "ip": dt.string,
        "locale": dt.string,
        "revenue": dt.float64,
        "currency": dt.string,
        "order_id": dt.string,
        "properties": dt.string,
        "traits": dt.string,
        "context": dt.string,
        "integrations": dt.string,
    }
)

#: Messages that failed validation, kept with the reason so none is dropped silently.
REJECTED_EVENTS = ibis.schema(
    {
        "rejected_id": dt.String(nullable=False),
        "source_id": dt.string,
        "message_id": dt.string,
        "received_at": dt.Timestamp(timezone="UTC", nullable=False),
        "field": dt.string,
        "reason": dt.String(nullable=False),
        "payload": dt.string,
    }
)

#: Where events come from; the write key itself is never stored, only its hash.
SOURCES = ibis.schema(
    {
        "source_id": dt.String(nullable=False),
        "name": dt.String(nullable=False),
        "channel": dt.String(nullable=False),
        "write_key_hash": dt.String(nullable=False),
        "write_key_prefix": dt.String(nullable=False),
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "settings": dt.string,
    }
)

#: Advertising cost per day, channel and campaign (not events: nobody did them).
SPEND = ibis.schema(
    {
        "date": dt.Date(nullable=False),
        "channel": dt.String(nullable=False),
        "source": dt.string,
        "campaign": dt.string,
        "impressions": dt.int64,
        "clicks": dt.int64,
        "cost": dt.float64,
        "currency": dt.string,
        "import_key": dt.String(nullable=False),
    }
)

#: Every identifier seen and the customer it belongs to (rebuilt by `touchpoints build`).
IDENTITIES = ibis.schema(
    {
        "identifier": dt.String(nullable=False),
        "kind": dt.String(nullable=False),
        "customer_id": dt.String(nullable=False),
        "quarantined": dt.Boolean(nullable=False),
        "first_seen": UTC_TIMESTAMP,
        "last_seen": UTC_TIMESTAMP,
        "resolved_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Every distinct link between two identifiers seen so far (the identity graph).
IDENTITY_LINKS = ibis.schema(
    {
        "a": dt.String(nullable=False),
        "a_kind": dt.String(nullable=False),
        "b": dt.String(nullable=False),
        "b_kind": dt.String(nullable=False),
    }
)

#: Customers joined into one when an identifier linked them; the history is kept.
IDENTITY_MERGES = ibis.schema(
    {
        "customer_id": dt.String(nullable=False),
        "merged_customer_id": dt.String(nullable=False),
        "via_identifier": dt.string,
        "linked_identifier": dt.string,
        "merged_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Identifiers linked to too many others (a shared tablet, a placeholder email).
IDENTITY_QUARANTINE = ibis.schema(
    {
        "identifier": dt.String(nullable=False),
        "kind": dt.String(nullable=False),
        "linked_kind": dt.String(nullable=False),
        "links": dt.Int64(nullable=False),
        "max_links": dt.Int64(nullable=False),
        "detected_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: The customer 360, one row per customer (rebuilt by `touchpoints build`).
PROFILES = ibis.schema(
    {
        "customer_id": dt.String(nullable=False),
        "identifiers": dt.Array(dt.string),
        "traits": dt.string,
        "first_seen": UTC_TIMESTAMP,
        "last_seen": UTC_TIMESTAMP,
        "channels": dt.Array(dt.string),
        "last_channel": dt.string,
        "sessions": dt.int64,
        "orders": dt.int64,
        "revenue": dt.float64,
        "average_order_value": dt.float64,
        "favourite_categories": dt.Array(dt.string),
        "emails_delivered": dt.int64,
        "emails_opened": dt.int64,
        "emails_clicked": dt.int64,
        "email_open_rate": dt.float64,
        "built_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Keys of people and programs that read insights (`read`) or run the platform (`admin`).
API_KEYS = ibis.schema(
    {
        "key_id": dt.String(nullable=False),
        "name": dt.String(nullable=False),
        "role": dt.String(nullable=False),
        "key_hash": dt.String(nullable=False),
        "key_prefix": dt.String(nullable=False),
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "revoked_at": UTC_TIMESTAMP,
    }
)

#: Saved segment rules (see `touchpoints.insights.segments`), by unique name.
SEGMENTS = ibis.schema(
    {
        "name": dt.String(nullable=False),
        "definition": dt.String(nullable=False),
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "updated_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: The size of each saved segment every time it was computed: its size over time.
SEGMENT_SIZES = ibis.schema(
    {
        "name": dt.String(nullable=False),
        "computed_at": dt.Timestamp(timezone="UTC", nullable=False),
        "size": dt.Int64(nullable=False),
    }
)

#: Saved experiment definitions (see `touchpoints.models.experiments`), by unique key.
EXPERIMENTS = ibis.schema(
    {
        "key": dt.String(nullable=False),
        "definition": dt.String(nullable=False),
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "updated_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Surveys defined in the product (see `touchpoints.collect.surveys`), by unique id.
SURVEYS = ibis.schema(
    {
        "survey_id": dt.String(nullable=False),
        "definition": dt.String(nullable=False),
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "updated_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Audiences (see `touchpoints.activate.audiences`): what defines each, by unique name.
AUDIENCES = ibis.schema(
    {
        "name": dt.String(nullable=False),
        "definition": dt.String(nullable=False),
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "updated_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Who was in each audience when: one row per stay (left_at is null while it lasts).
AUDIENCE_MEMBERS = ibis.schema(
    {
        "audience": dt.String(nullable=False),
        "customer_id": dt.String(nullable=False),
        "entered_at": dt.Timestamp(timezone="UTC", nullable=False),
        "left_at": UTC_TIMESTAMP,
    }
)

#: Each refresh of an audience: its size and how many entered and left since the last.
AUDIENCE_SIZES = ibis.schema(
    {
        "audience": dt.String(nullable=False),
        "computed_at": dt.Timestamp(timezone="UTC", nullable=False),
        "size": dt.Int64(nullable=False),
        "entered": dt.Int64(nullable=False),
        "left": dt.Int64(nullable=False),
    }
)

#: Offers (see `touchpoints.activate.offers`): discount, expiry, code pool, holdout.
OFFERS = ibis.schema(
    {
        "offer_id": dt.String(nullable=False),
        "definition": dt.String(nullable=False),
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "updated_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Coupon codes of each offer: free in the pool, or given to one customer.
COUPONS = ibis.schema(
    {
        "code": dt.String(nullable=False),
        "offer_id": dt.String(nullable=False),
        "customer_id": dt.string,
        "assigned_at": UTC_TIMESTAMP,
        "expires_at": UTC_TIMESTAMP,
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Who an offer was decided for: the group (offer or holdout) and the code given.
OFFER_ASSIGNMENTS = ibis.schema(
    {
        "offer_id": dt.String(nullable=False),
        "customer_id": dt.String(nullable=False),
        "arm": dt.String(nullable=False),
        "code": dt.string,
        "assigned_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Email campaigns (see `touchpoints.activate.campaigns`): audience, template, offer.
CAMPAIGNS = ibis.schema(
    {
        "campaign_id": dt.String(nullable=False),
        "definition": dt.String(nullable=False),
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "updated_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: The send log: one row per person per campaign (or trigger firing), never two.
SENDS = ibis.schema(
    {
        "send_id": dt.String(nullable=False),
        "campaign_id": dt.String(nullable=False),
        "customer_id": dt.String(nullable=False),
        "status": dt.String(nullable=False),
        "reason": dt.string,
        "queued_at": dt.Timestamp(timezone="UTC", nullable=False),
        "sent_at": UTC_TIMESTAMP,
        "message_id": dt.string,
    }
)

#: Trigger rules (see `touchpoints.activate.triggers`), by unique name.
TRIGGERS = ibis.schema(
    {
        "name": dt.String(nullable=False),
        "definition": dt.String(nullable=False),
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "updated_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Delayed trigger conditions waiting for their time (A seen, B not yet): kept here, not
#: in memory, so that they survive a restart.
TRIGGER_PENDING = ibis.schema(
    {
        "trigger": dt.String(nullable=False),
        "customer_id": dt.String(nullable=False),
        "user_id": dt.string,
        "anonymous_id": dt.string,
        "started_at": dt.Timestamp(timezone="UTC", nullable=False),
        "due_at": dt.Timestamp(timezone="UTC", nullable=False),
        "message_id": dt.string,
    }
)

#: Every time a trigger fired for a person (frequency caps count these), and what came of
#: its action.
TRIGGER_FIRES = ibis.schema(
    {
        "fire_id": dt.String(nullable=False),
        "trigger": dt.String(nullable=False),
        "customer_id": dt.String(nullable=False),
        "fired_at": dt.Timestamp(timezone="UTC", nullable=False),
        "status": dt.String(nullable=False),
        "reason": dt.string,
    }
)

#: Webhook endpoints (see `touchpoints.activate.webhooks`); the signing secret sealed.
WEBHOOKS = ibis.schema(
    {
        "name": dt.String(nullable=False),
        "definition": dt.String(nullable=False),
        "secret": dt.String(nullable=False),
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "updated_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Each webhook call to make or made: retried with backoff until delivered or dead.
WEBHOOK_DELIVERIES = ibis.schema(
    {
        "delivery_id": dt.String(nullable=False),
        "webhook": dt.String(nullable=False),
        "customer_id": dt.string,
        "payload": dt.String(nullable=False),
        "status": dt.String(nullable=False),
        "attempts": dt.Int64(nullable=False),
        "next_attempt_at": UTC_TIMESTAMP,
        "last_error": dt.string,
        "created_at": dt.Timestamp(timezone="UTC", nullable=False),
        "delivered_at": UTC_TIMESTAMP,
    }
)

#: Deliveries that failed their last attempt, kept to be replayed.
WEBHOOK_DEAD_LETTERS = ibis.schema(
    {
        "delivery_id": dt.String(nullable=False),
        "webhook": dt.String(nullable=False),
        "customer_id": dt.string,
        "payload": dt.String(nullable=False),
        "attempts": dt.Int64(nullable=False),
        "last_error": dt.string,
        "failed_at": dt.Timestamp(timezone="UTC", nullable=False),
        "replayed_at": UTC_TIMESTAMP,
    }
)

#: Consent history: one row per decision of a person for a purpose; never rewritten.
CONSENTS = ibis.schema(
    {
        "consent_id": dt.String(nullable=False),
        "subject": dt.String(nullable=False),
        "purpose": dt.String(nullable=False),
        "status": dt.String(nullable=False),
        "source": dt.String(nullable=False),
        "policy_version": dt.string,
        "recorded_at": dt.Timestamp(timezone="UTC", nullable=False),
        "received_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Who did what to whose data, when and why: append-only.
AUDIT_LOG = ibis.schema(
    {
        "audit_id": dt.String(nullable=False),
        "at": dt.Timestamp(timezone="UTC", nullable=False),
        "actor": dt.String(nullable=False),
        "action": dt.String(nullable=False),
        "subject": dt.string,
        "reason": dt.string,
        "details": dt.string,
    }
)

#: Tombstones of erased people: salted hashes only, so their identifiers arriving again
#: are recognised (and never re-linked to the old profile) without being kept.
ERASURES = ibis.schema(
    {
        "erasure_id": dt.String(nullable=False),
        "hash": dt.String(nullable=False),
        "salt_id": dt.String(nullable=False),
        "erased_at": dt.Timestamp(timezone="UTC", nullable=False),
    }
)

#: Key/value facts about the warehouse itself, such as the schema version.
META = ibis.schema({"key": dt.String(nullable=False), "value": dt.string})

TABLES: dict[str, ibis.Schema] = {
    "events": EVENTS,
    "rejected_events": REJECTED_EVENTS,
    "sources": SOURCES,
    "spend": SPEND,
    "identities": IDENTITIES,
    "identity_links": IDENTITY_LINKS,
    "identity_merges": IDENTITY_MERGES,
    "identity_quarantine": IDENTITY_QUARANTINE,
    "profiles": PROFILES,
    "api_keys": API_KEYS,
    "segments": SEGMENTS,
    "segment_sizes": SEGMENT_SIZES,
    "experiments": EXPERIMENTS,
    "surveys": SURVEYS,
    "audiences": AUDIENCES,
    "audience_members": AUDIENCE_MEMBERS,
    "audience_sizes": AUDIENCE_SIZES,
    "offers": OFFERS,
    "coupons": COUPONS,
    "offer_assignments": OFFER_ASSIGNMENTS,
    "campaigns": CAMPAIGNS,
    "sends": SENDS,
    "triggers": TRIGGERS,
    "trigger_pending": TRIGGER_PENDING,
    "trigger_fires": TRIGGER_FIRES,
    "webhooks": WEBHOOKS,
    "webhook_deliveries": WEBHOOK_DELIVERIES,
    "webhook_dead_letters": WEBHOOK_DEAD_LETTERS,
    "consents": CONSENTS,
    "audit_log": AUDIT_LOG,
    "erasures": ERASURES,
    "meta": META,
}

#: Columns holding JSON text; writers take them as objects and store their text.
JSON_COLUMNS: dict[str, tuple[str, ...]] = {
    "events": ("properties", "traits", "context", "integrations"),
}

#: Columns that make a row unique; engines that can enforce them do.
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "events": ("source_id", "message_id"),
    "rejected_events": ("rejected_id",),
    "sources": ("source_id",),
    "spend": ("import_key",),
    "api_keys": ("key_id",),
    "segments": ("name",),
    "experiments": ("key",),
    "surveys": ("survey_id",),
    "audiences": ("name",),
    "offers": ("offer_id",),
    "coupons": ("code",),
    "offer_assignments": ("offer_id", "customer_id"),
    "campaigns": ("campaign_id",),
    "sends": ("send_id",),
    "triggers": ("name",),
    "trigger_pending": ("trigger", "customer_id"),
    "trigger_fires": ("fire_id",),
    "webhooks": ("name",),
    "webhook_deliveries": ("delivery_id",),
    "webhook_dead_letters": ("delivery_id",),
    "consents": ("consent_id",),
    "audit_log": ("audit_id",),
    "meta": ("key",),
}

#: Channels an event can belong to; a source names its default.
CHANNELS = ("web", "app", "store", "email", "ads", "social", "server", "device", "other")
