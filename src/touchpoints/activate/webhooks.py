"""Webhooks: a JSON payload POSTed to a configured URL, signed with HMAC-SHA256, retried
with exponential backoff, kept as a dead letter after the last failure, replayable.

The public face of three modules: `webhook_endpoints` (definitions, secrets, signing),
`webhook_delivery` (the queue, attempts, consent before each one, giving up) and
`webhook_records` (viewing deliveries and dead letters, replay).
A receiver checks `Touchpoints-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>.<raw body>")>` (see `verify_signature`) and drops a `Touchpoints-Delivery` id it
has seen: delivery is at least once.
"""

from __future__ import annotations

from touchpoints.activate.webhook_delivery import STATUSES, delete_webhook, deliver_due, enqueue
from touchpoints.activate.webhook_endpoints import (
    DEFAULTS,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    list_webhooks,
    rotate_secret,
    save_webhook,
    sign,
    verify_signature,
)
from touchpoints.activate.webhook_records import dead_letters, deliveries, get_delivery, replay

__all__ = [
    "DEFAULTS",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "STATUSES",
    "dead_letters",
    "delete_webhook",
    "deliver_due",
    "deliveries",
    "enqueue",
    "get_delivery",
    "list_webhooks",
    "replay",
    "rotate_secret",
    "save_webhook",
    "sign",
    "verify_signature",
]
