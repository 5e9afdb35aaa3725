"""One campaign message for one person: rendered templates, signed links, the headers
mail clients and providers expect of marketing mail (RFC 2369 `List-Unsubscribe`, RFC
8058 one-click), and the Segment email-spec event that records it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any

from touchpoints.activate.email_render import render, track_links
from touchpoints.activate.email_settings import EmailSettings
from touchpoints.activate.links import LinkPayload, link_url
from touchpoints.activate.recipients import Recipient
from touchpoints.warehouse.vault import Vault

__all__ = ["compose", "email_event"]

#: Headers up to RFC 5322's 998 characters a line, so that a long signed link in
#: List-Unsubscribe stays one plain URL instead of being folded into encoded words.
HEADERS = policy.default.clone(max_line_length=998)


def compose(
    campaign: Mapping[str, Any],
    recipient: Recipient,
    *,
    send_id: str,
    address_form: str,
    settings: EmailSettings,
    vault: Vault,
    extra: Mapping[str, Any],
    now: datetime,
) -> EmailMessage:
    """The message (EmailMessage) for `recipient`; `address_form` is their address as
    consents know it (`email:<blind>`), carried by the links instead of the address."""
    assert recipient.email is not None

    def link(kind: str, url: str | None = None) -> str:
        payload = LinkPayload(
            kind, send_id, campaign["campaign_id"], recipient.customer_id, address_form, url
        )
        return link_url(settings.public_url, vault, payload)

    unsubscribe = link("unsubscribe")
    context = {
        "person": recipient.traits,
        "customer_id": recipient.customer_id,
        "campaign": {"id": campaign["campaign_id"], "name": campaign["name"]},
        "unsubscribe_url": unsubscribe,
        **extra,
    }
    rendered = render(campaign, context)
    message = EmailMessage(policy=HEADERS)
    message["From"] = formataddr((settings.from_name or "", settings.from_address))
    message["To"] = recipient.email
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{send_id}@{settings.domain}>"
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    text = rendered.text
    if unsubscribe not in text:
        text = f"{text.rstrip()}\n\n--\nUnsubscribe: {unsubscribe}\n"
    message.set_content(text)
    if rendered.html is not None:
        ours = settings.public_url.rstrip("/") + "/v1/email/"
        body = track_links(
            rendered.html,
            lambda url: link("click", url),
            link("open"),
            keep=lambda url: url.startswith(ours),
        )
        message.add_alternative(body, subtype="html")
    return message


def email_event(
    event: str,
    campaign: Mapping[str, Any],
    identity: Mapping[str, str],
    *,
    send_id: str,
    subject: str | None,
    at: datetime,
    **properties: Any,
) -> dict[str, Any]:
    """A Segment email-spec track message (`Email Delivered`, `Email Opened`, …)."""
    return {
        "type": "track",
        "event": event,
        **identity,
        "messageId": f"{send_id}-{event.lower().replace(' ', '-')}-{int(at.timestamp() * 1e6)}",
        "timestamp": at.isoformat(),
        "properties": {
            "email_id": send_id,
            "email_subject": subject,
            "campaign_id": campaign["campaign_id"],
            "campaign_name": campaign.get("name"),
            **properties,
        },
    }
