"""Consent at collection: reading the choices a message carries, and each source's mode.

The shape of consent in a message
---------------------------------
A consent banner tells Touchpoints what a person chose in either of two ways:

- a `Consent Updated` track event (Segment's `Segment Consent Preference Updated` is read
  the same way), sent when the person saves their choice::

      {"type": "track", "event": "Consent Updated", "userId": "u1",
       "properties": {"purposes": {"analytics": true, "email_marketing": false},
                      "policy_version": "2026-01"}}

- `context.consent` on any event, as the banner's wrapper adds to every call::

      "context": {"consent": {"purposes": {"analytics": true}, "policy_version": "2026-01"}}

  Segment's own form, ``{"categoryPreferences": {"Analytics": true, …}}``, is read too.

Purposes map to choices: ``true`` is `granted`, ``false`` is `denied`, and the strings
``"granted"``, ``"denied"`` and ``"withdrawn"`` are taken as they are. Category names are
matched without case, spaces and hyphens becoming ``_`` (``"Email Marketing"`` is
`email_marketing`); categories that are no purpose (``necessary``, …) are ignored, as are
values of any other type: a banner's quirks never make the collector reject an event.
`touchpoints.privacy.consent_sync.sync_consents` turns these into the `consents` history.

Collection modes
----------------
Each source has a mode (`off` by default) that applies to the events of a person whose
message does not itself say analytics is granted — the collector has no time to look
anything up, so only the message's own `context.consent` counts (for a consent event,
its `properties.purposes` too); a message without consent counts as not granted:

- `off`: stored as sent.
- `pseudonymous`: stored without what names the person: no user id, no traits, no ip,
  and keys such as email, phone, name or address removed (at any depth) from context
  and properties, as is any text that looks like an email address (in URLs too). The
  anonymous id (a random cookie or device id) and the consent itself stay.
- `drop`: not stored at all (the response still says success: a retry would not help).

A consent event itself is never dropped: the record of a refusal is needed to honour
it. Under `pseudonymous` or `drop` without analytics consent it is stored minimised:
its ids and consent only, without traits, ip, user agent, page or other context.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from touchpoints.collect.source_settings import (
    check_choice,
    json_object,
    put_source_setting,
    setting_choice,
)
from touchpoints.warehouse import Warehouse

#: Track events that carry a decision in `properties`.
CONSENT_EVENTS: tuple[str, ...] = ("Consent Updated", "Segment Consent Preference Updated")
#: What a consent record may say.
STATUSES: tuple[str, ...] = ("granted", "denied", "withdrawn")
COLLECTION_MODES: tuple[str, ...] = ("off", "pseudonymous", "drop")
DEFAULT_MODE = "off"
#: The key of a source's mode in its `settings` JSON.
MODE_SETTING = "consent_mode"

#: Keys removed from context and properties (any depth) in pseudonymous mode.
PERSONAL_KEYS = frozenset(
    {
        "email", "phone", "name", "first_name", "firstname", "last_name", "lastname",
        "username", "address", "street", "postal_code", "postalcode", "zip", "birthday",
        "ip", "user_id", "userid", "traits", "advertising_id", "advertisingid", "device_id",
        "password", "ssn",
    }
)  # fmt: skip
_EMAIL = re.compile(r"[^@\s/?&=#:;,\"'<>]+@[^@\s/?&=#:;,\"'<>]+\.[A-Za-z]{2,}")
_REDACTED = "[redacted]"
_DEVICE_IDS = frozenset({"id", "advertisingId", "adTrackingEnabled", "token"})
_SEPARATORS = re.compile(r"[\s\-]+")


def purpose_key(name: str) -> str:
    """A banner's category name as a purpose key: ``"Email Marketing"`` → email_marketing."""
    return _SEPARATORS.sub("_", name.strip()).lower()


def choice(value: Any) -> str | None:
    """The status a banner's value stands for, or None when it is none of them."""
    if isinstance(value, bool):
        return "granted" if value else "denied"
    if isinstance(value, str) and value.strip().lower() in STATUSES:
        return value.strip().lower()
    return None


def read_choices(consent: Any) -> tuple[dict[str, str], str | None]:
    """(purpose key → status, policy version) from a consent object of the documented
    shape (`purposes` or `categoryPreferences`); empty when it holds none."""
    if not isinstance(consent, Mapping):
        return {}, None
    purposes = consent.get("purposes")
    if not isinstance(purposes, Mapping):
        purposes = consent.get("categoryPreferences")
    choices: dict[str, str] = {}
    if isinstance(purposes, Mapping):
        for name, value in purposes.items():
            status = choice(value)
            if isinstance(name, str) and name.strip() and status is not None:
                choices[purpose_key(name)] = status
    version = consent.get("policy_version", consent.get("policyVersion"))
    return choices, version if isinstance(version, str) and version else None


def is_consent_event(row: Mapping[str, Any]) -> bool:
    return row.get("type") == "track" and row.get("event") in CONSENT_EVENTS


def message_choices(row: Mapping[str, Any]) -> dict[str, str]:
    """Everything an event row says was chosen: its `context.consent`, and for a consent
    event its properties (which win)."""
    context = json_object(row.get("context"))
    choices, _ = read_choices(context.get("consent"))
    if is_consent_event(row):
        own, _ = read_choices(json_object(row.get("properties")))
        choices.update(own)
    return choices


def apply_mode(row: dict[str, Any], mode: str) -> dict[str, Any] | None:
    """The event row to store under a source's collection mode, or None to drop it
    (see the module docstring)."""
    if mode == DEFAULT_MODE or message_choices(row).get("analytics") == "granted":
        return row
    if is_consent_event(row):
        return minimised(row)
    if mode == "drop":
        return None
    return pseudonymised(row)


def pseudonymised(row: dict[str, Any]) -> dict[str, Any]:
    """The row without what names the person (see the module docstring)."""
    out = dict(row)
    out["user_id"] = None
    if out.get("type") == "alias":
        out["previous_id"] = None
    out["traits"] = None
    out["ip"] = None
    for column in ("page_url", "page_referrer", "page_title", "page_path"):
        if isinstance(out.get(column), str):
            out[column] = _EMAIL.sub(_REDACTED, out[column])
    context = _scrub(json_object(row.get("context")))
    device = context.get("device")
    if isinstance(device, dict):  # lasting device identifiers
        context["device"] = {k: v for k, v in device.items() if k not in _DEVICE_IDS}
    out["context"] = context or None
    out["properties"] = _scrub(json_object(row.get("properties"))) or None
    return out


def minimised(row: dict[str, Any]) -> dict[str, Any]:
    """A consent event reduced to who decided, when, and what."""
    out = dict(row)
    for column in ("traits", "ip", "user_agent", "locale", "page_url", "page_path", "page_title",
                   "page_referrer", "integrations"):  # fmt: skip
        out[column] = None
    for column in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"):
        out[column] = None
    context = json_object(row.get("context"))
    out["context"] = {"consent": context["consent"]} if "consent" in context else None
    properties = json_object(row.get("properties"))
    kept = {k: properties[k] for k in ("purposes", "categoryPreferences", "policy_version")
            if k in properties}  # fmt: skip
    out["properties"] = kept or None
    return out


def _scrub(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            key: _scrub(item)
            for key, item in value.items()
            if key == "consent" or purpose_key(str(key)) not in PERSONAL_KEYS
        }
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, str) and "@" in value:
        return _EMAIL.sub(_REDACTED, value)
    return value


# -- the per-source setting ------------------------------------------------------------


def mode_from_settings(settings: str | None) -> str:
    """A source's collection mode from its `settings` JSON text (`off` when unset)."""
    return setting_choice(settings, MODE_SETTING, COLLECTION_MODES, DEFAULT_MODE)


def check_mode(mode: Any) -> str:
    return check_choice(mode, COLLECTION_MODES, "mode")


def set_collection_mode(warehouse: Warehouse, source_id: str, mode: str) -> str:
    """Store a source's collection mode in its `settings` JSON; returns the previous one.
    A running collector sees it once its cache forgets the source
    (`SourceRegistry.forget`)."""
    before = put_source_setting(warehouse, source_id, MODE_SETTING, check_mode(mode))
    return mode_from_settings(before)
