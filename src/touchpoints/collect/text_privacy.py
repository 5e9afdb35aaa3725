"""Personal data inside free text, masked on the way in: an email address becomes
"[email]" and a phone number "[phone]" in the comments of survey answers and the text of
social mentions, so that no analysis, export or screen ever shows them.

Masking happens in `normalize`, the one step every event passes (collector, importers,
demo), before anything is stored. The identifiers a message carries on purpose
(`userId`, `traits.email`) are not free text and are kept, encrypted as usual.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"

#: The free-text properties of each event, by event name.
FREE_TEXT: dict[str, tuple[str, ...]] = {
    "Survey Responded": ("comment", "answer", "text"),
    "Brand Mentioned": ("text",),
}

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# A run of digits with the separators phone numbers are written with, optionally led by
# + or 00; masked only when it holds 9 to 15 digits (E.164 allows 15), so that prices,
# dates, years and order quantities stay as written.
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d(?:[\d\s().\-/]*\d)?(?![\w])")
_MIN_DIGITS, _MAX_DIGITS = 9, 15
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")


def _phone(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = sum(ch.isdigit() for ch in found)
    if not _MIN_DIGITS <= digits <= _MAX_DIGITS or _DATE.fullmatch(found.strip()):
        return found
    return PHONE_MASK


def mask_text(text: str) -> str:
    """`text` with every email address and phone number replaced by its mask."""
    return _PHONE.sub(_phone, _EMAIL.sub(EMAIL_MASK, text))


def mask_properties(event: str | None, properties: Mapping[str, Any]) -> Mapping[str, Any]:
    """The properties of a track event with its free-text values masked; the same
    object when the event has no free text, or nothing in it needed masking."""
    keys = FREE_TEXT.get(event or "")
    if not keys or not isinstance(properties, Mapping):
        return properties
    masked: dict[str, Any] | None = None
    for key in keys:
        value = properties.get(key)
        if isinstance(value, str):
            clean = mask_text(value)
            if clean != value:
                masked = dict(properties) if masked is None else masked
                masked[key] = clean
    return properties if masked is None else masked
