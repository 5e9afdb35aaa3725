"""What happens when a recipient uses a link of a message: an unsubscribe withdraws their
`email_marketing` consent at once; an open or a click comes back as a Segment email-spec
event (`Unsubscribed`, `Email Opened`, `Email Link Clicked`) on their timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from touchpoints.activate.compose import email_event
from touchpoints.activate.links import LinkPayload, read_token
from touchpoints.activate.recipients import recipients
from touchpoints.activate.sending import EMAIL_SOURCE
from touchpoints.collect.internal import internal_source, record_events
from touchpoints.privacy.consent_records import withdraw
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.writer import EventWriter

__all__ = ["clicked", "opened", "unsubscribe"]

PURPOSE = "email_marketing"


def unsubscribe(warehouse: Warehouse, writer: EventWriter, token: str | None) -> dict[str, Any]:
    """Withdraw the recipient's email marketing consent now; InvalidInput for a bad link.
    Using the link again records nothing new."""
    link = read_token(warehouse.vault, token, "unsubscribe")
    with warehouse.lock:
        row = withdraw(warehouse, link.address, PURPOSE, source="unsubscribe", actor="email")
    _record(warehouse, writer, link, "Unsubscribed")
    return {"unsubscribed": True, "purpose": PURPOSE, "recorded_at": row["recorded_at"]}


def opened(warehouse: Warehouse, writer: EventWriter, token: str | None) -> None:
    """Record an `Email Opened` event for the open pixel's message."""
    _record(warehouse, writer, read_token(warehouse.vault, token, "open"), "Email Opened")


def clicked(warehouse: Warehouse, writer: EventWriter, token: str | None) -> str:
    """Record an `Email Link Clicked` event; returns where the link goes (only URLs the
    message was sent with can be in a valid token, so this is no open redirect)."""
    link = read_token(warehouse.vault, token, "click")
    assert link.url is not None
    _record(warehouse, writer, link, "Email Link Clicked", link_url=link.url)
    return link.url


def _record(
    warehouse: Warehouse, writer: EventWriter, link: LinkPayload, event: str, **extra: Any
) -> None:
    with warehouse.lock:
        person = recipients(warehouse, [link.customer_id]).get(link.customer_id)
        source = internal_source(warehouse, EMAIL_SOURCE, "email")
    identity = person.identity if person else {"anonymousId": link.customer_id}
    campaign = {"campaign_id": link.campaign_id, "name": None}
    message = email_event(
        event, campaign, identity, send_id=link.send_id, subject=None, at=datetime.now(UTC), **extra
    )
    record_events(writer, source, [message])
