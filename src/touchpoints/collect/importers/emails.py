"""The `email` importer: an email tool's export of sends, deliveries, opens, clicks,
bounces and unsubscribes, as the Segment email spec's track events (channel `email`).

(Named `emails.py`, not `email.py`, so that it can never shadow the standard library's
`email` package.)
"""

from __future__ import annotations

from typing import Any

from touchpoints.collect.importers.reading import Column, canonical
from touchpoints.collect.importers.runner import ImportReport, Options, run_events
from touchpoints.collect.importers.values import (
    RowError,
    customer_keys,
    identify,
    iso,
    message_id,
    parse_time,
    required_text,
    text,
)
from touchpoints.warehouse import Warehouse

COLUMNS = (
    Column("event", True, ("type", "event_type", "action", "activity")),
    Column("email", True, ("email_address", "recipient", "to")),
    Column("timestamp", True, ("time", "date", "datetime", "occurred_at", "event_time")),
    Column("campaign", False, ("campaign_name",)),
    Column("campaign_id"),
    Column("email_id", False, ("message_id", "mail_id")),
    Column("subject", False, ("email_subject",)),
    Column("link_url", False, ("url", "link", "clicked_url")),
    Column("user_id"),
)

#: What the export calls each event (compared loosely), and the spec's name for it.
EVENT_NAMES: dict[str, str] = {}
for _spec_name, _words in {
    "Email Sent": ("send", "sent", "sends", "processed"),
    "Email Delivered": ("deliver", "delivered", "delivery", "deliveries"),
    "Email Opened": ("open", "opened", "opens", "view", "viewed"),
    "Email Link Clicked": ("click", "clicked", "clicks", "link_click", "link_clicked"),
    "Email Bounced": ("bounce", "bounced", "bounces", "hard_bounce", "soft_bounce", "dropped"),
    "Unsubscribed": ("unsubscribe", "unsubscribed", "unsub", "opt_out", "opted_out"),
    "Email Marked as Spam": ("spam", "spamreport", "spam_report", "complaint", "complained"),
}.items():
    EVENT_NAMES[canonical(_spec_name)] = _spec_name
    for _word in _words:
        EVENT_NAMES[_word] = _spec_name


def event_name(value: Any) -> str:
    raw = required_text({"event": value}, "event")
    name = EVENT_NAMES.get(canonical(raw))
    if name is None:
        raise RowError(
            "event",
            f"{raw[:40]!r} is not an email event; expected send, delivered, open, click, "
            "bounce, unsubscribe or spam (or the spec's names, e.g. 'Email Opened')",
        )
    return name


def build(values: dict[str, Any]) -> dict[str, Any]:
    """One export row -> one track message, keyed by event, email, time, email id (and
    the link of a click)."""
    name = event_name(values.get("event"))
    keys = customer_keys({"email": values.get("email"), "user_id": values.get("user_id")})
    if "email" not in keys:
        raise RowError("email", "no value")
    moment = iso(parse_time(values.get("timestamp"), "timestamp"))
    properties = {
        key: value
        for key, value in (
            ("email_id", text(values.get("email_id"))),
            ("email_subject", text(values.get("subject"))),
            ("campaign_name", text(values.get("campaign"))),
            ("campaign_id", text(values.get("campaign_id"))),
            ("link_url", text(values.get("link_url"))),
        )
        if value is not None
    }
    message: dict[str, Any] = {
        "type": "track",
        "event": name,
        "timestamp": moment,
        "properties": properties,
        "messageId": message_id(
            "email",
            name,
            keys["email"],
            moment,
            properties.get("email_id"),
            properties.get("link_url"),
        ),
    }
    identify(message, keys, None)
    return message


def import_email(warehouse: Warehouse, options: Options) -> ImportReport:
    """Load an email tool's event export (CSV or Parquet) as track events."""
    return run_events(warehouse, options, COLUMNS, "email", build)


__all__ = ["COLUMNS", "EVENT_NAMES", "import_email"]
