"""Signed links in outgoing email: unsubscribe, the open pixel and click redirects.

A link carries a small payload (the send, campaign, customer and the pseudonymous
address it went to; for a click, the target URL) and a MAC under the warehouse key
(`Vault.sign`), so that nobody can unsubscribe someone else, forge opens, or turn the
redirect into an open redirect to a URL we never sent. No email address travels in
clear: the address is its blind (`email:<blind>`), as consents record it.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from urllib.parse import urlencode

import orjson

from touchpoints.errors import InvalidInput
from touchpoints.warehouse.vault import Vault

__all__ = ["LinkPayload", "link_url", "read_token", "sign_token"]

KINDS = ("unsubscribe", "open", "click")
#: Paths of the API that serve each kind (touchpoints.api.email_routes).
PATHS = {
    "unsubscribe": "/v1/email/unsubscribe",
    "open": "/v1/email/open",
    "click": "/v1/email/click",
}


@dataclass(frozen=True)
class LinkPayload:
    """What a link stands for."""

    kind: str
    send_id: str
    campaign_id: str
    customer_id: str
    address: str  # `email:<blind>`
    url: str | None = None  # where a click goes

    def as_json(self) -> bytes:
        body = {
            "k": self.kind,
            "s": self.send_id,
            "c": self.campaign_id,
            "p": self.customer_id,
            "a": self.address,
        }
        if self.url is not None:
            body["u"] = self.url
        return orjson.dumps(body)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_token(vault: Vault, payload: LinkPayload) -> str:
    """`<payload>.<mac>`, both URL-safe base64."""
    body = _b64(payload.as_json())
    return f"{body}.{vault.sign(body.encode())}"


def read_token(vault: Vault, token: str | None, kind: str) -> LinkPayload:
    """The payload of a link of `kind`; InvalidInput (field `t`) when the token is
    missing, altered, or of another kind."""
    if not token or len(token) > 4096 or token.count(".") != 1:
        raise InvalidInput("the link is incomplete: copy the whole address", field="t")
    body, mac = token.split(".")
    if not hmac.compare_digest(mac.encode(), vault.sign(body.encode()).encode()):
        raise InvalidInput("the link is not valid (altered, or from another system)", field="t")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload = LinkPayload(data["k"], data["s"], data["c"], data["p"], data["a"], data.get("u"))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput("the link is not valid", field="t") from exc
    if payload.kind != kind:
        raise InvalidInput(f"this is not an {kind} link", field="t")
    return payload


def link_url(base_url: str, vault: Vault, payload: LinkPayload) -> str:
    """The absolute URL of a signed link served by the API at `base_url`."""
    if payload.kind not in KINDS:
        raise InvalidInput(f"a link is one of {', '.join(KINDS)}", field="kind")
    query = urlencode({"t": sign_token(vault, payload)})
    return f"{base_url.rstrip('/')}{PATHS[payload.kind]}?{query}"
