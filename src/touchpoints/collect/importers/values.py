"""Parsing the values of one file row: times, numbers and customer keys.

Each parser takes what the file held (text from a CSV, a native value from Parquet) and
returns a clean value or raises `RowError` naming the column, so the caller can set the
row aside with its line number instead of stopping the import.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any


class RowError(Exception):
    """One value of one row is unusable; `column` is our column name (or None)."""

    def __init__(self, column: str | None, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


def digest(*parts: object) -> str:
    """A SHA-256 hex digest of the parts, joined by the ASCII unit separator (\\x1f)."""
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def message_id(kind: str, *natural_key: object) -> str:
    """A deterministic messageId from the row's natural key, so re-imports add nothing."""
    return f"imp-{kind}-{digest(kind, *natural_key)[:32]}"


# -- text ---------------------------------------------------------------------------
def text(value: Any) -> str | None:
    """A value as stripped text; None for missing or blank."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    result = value.strip() if isinstance(value, str) else str(value).strip()
    return result or None


def required_text(row: Mapping[str, Any], column: str) -> str:
    value = text(row.get(column))
    if value is None:
        raise RowError(column, "no value")
    return value


# -- times --------------------------------------------------------------------------
_MIN_YEAR, _MAX_YEAR = 1970, 9000
_MONTHS = {
    name: index + 1
    for index, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_CLF_TIME = re.compile(
    r"^(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\s+([+-])(\d{2})(\d{2}))?$"
)


def parse_time(value: Any, column: str) -> datetime:
    """An ISO-8601 date-time (UTC when it has no offset) or a plain date, as UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        raw = text(value)
        if raw is None:
            raise RowError(column, "no value")
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise RowError(
                column,
                f"{raw[:40]!r} is not an ISO-8601 date-time or date (e.g. 2026-03-01T10:15:00Z)",
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    if not _MIN_YEAR <= parsed.year <= _MAX_YEAR:
        raise RowError(column, f"out of range ({_MIN_YEAR} to {_MAX_YEAR})")
    return parsed


def iso(moment: datetime) -> str:
    """The canonical text of a UTC time, as the messages carry it."""
    return moment.isoformat(timespec="microseconds")


def parse_clf_time(value: str, column: str = "timestamp") -> datetime:
    """A web log time, ``10/Oct/2000:13:55:36 -0700``, as UTC (no locale involved)."""
    match = _CLF_TIME.match(value.strip())
    month = _MONTHS.get(match.group(2).lower()) if match else None
    if match is None or month is None:
        raise RowError(column, "the time is not like 10/Oct/2000:13:55:36 -0700")
    day, _, year, hour, minute, second, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(int(year), month, int(day), int(hour), int(minute), int(second))
    except ValueError:
        raise RowError(column, "the time is not a valid date and time") from None
    offset = 0 if sign is None else (int(off_h) * 60 + int(off_m)) * (1 if sign == "+" else -1)
    result = (moment - timedelta(minutes=offset)).replace(tzinfo=UTC)
    if not _MIN_YEAR <= result.year <= _MAX_YEAR:
        raise RowError(column, f"the time is out of range ({_MIN_YEAR} to {_MAX_YEAR})")
    return result


def parse_day(value: Any, column: str) -> date:
    """A calendar day: the date as written (a date-time keeps its own local date)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raw = text(value)
    if raw is None:
        raise RowError(column, "no value")
    try:
        return datetime.fromisoformat(raw).date()
    except ValueError:
        raise RowError(column, f"{raw[:40]!r} is not an ISO-8601 date (e.g. 2026-03-01)") from None


# -- numbers ------------------------------------------------------------------------
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_CURRENCY_SIGNS = "$€£¥"


def parse_decimal(value: Any, column: str) -> Decimal:
    """A finite number, exactly: plain decimals, ``1,234.50`` and a leading $ € £ ¥ sign
    are accepted; anything else (``12,50``, ``N/A``) is a bad value, not a guess."""
    if isinstance(value, bool):
        raise RowError(column, f"{value!r} is not a number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        raw = text(value)
        if raw is None:
            raise RowError(column, "no value")
        cleaned, sign = raw.replace(" ", ""), ""
        if cleaned.startswith(("+", "-")):
            sign, cleaned = cleaned[0], cleaned[1:]
        if cleaned.startswith(tuple(_CURRENCY_SIGNS)):
            cleaned = cleaned[1:]
        cleaned = sign + cleaned
        if _THOUSANDS.match(cleaned):
            cleaned = cleaned.replace(",", "")
        try:
            number = Decimal(cleaned)
        except InvalidOperation:
            raise RowError(column, f"{raw[:40]!r} is not a number") from None
    if not number.is_finite():
        raise RowError(column, "not a finite number")
    return number


def parse_number(value: Any, column: str) -> float:
    return float(parse_decimal(value, column))


def optional_count(value: Any, column: str) -> int | None:
    """A whole number of zero or more (impressions, clicks, likes), or None when empty."""
    if text(value) is None:
        return None
    number = parse_decimal(value, column)
    if number != number.to_integral_value() or number < 0:
        raise RowError(column, f"{value!r} is not a whole number of zero or more")
    return int(number)


def plain_number(number: Decimal) -> int | float:
    """An int when the value is whole (a quantity of 2, not 2.0), else a float."""
    return int(number) if number == number.to_integral_value() else float(number)


_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


def currency(value: Any, column: str = "currency", default: str = "USD") -> str:
    raw = text(value)
    if raw is None:
        return default
    if not _CURRENCY.match(raw):
        raise RowError(column, f"{raw[:40]!r} is not an ISO 4217 currency code (e.g. USD)")
    return raw.upper()


# -- customer keys ------------------------------------------------------------------
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
KEY_COLUMNS = ("user_id", "loyalty_id", "email", "phone")


def email(value: Any, column: str = "email") -> str | None:
    """A lower-cased email address, None when empty; a malformed one is a bad value."""
    raw = text(value)
    if raw is None:
        return None
    lowered = raw.lower()
    if not _EMAIL.match(lowered):
        raise RowError(column, f"{raw[:60]!r} is not an email address")
    return lowered


def phone(value: Any, column: str = "phone") -> str | None:
    """A phone number with only its digits (and a leading +; 00 becomes +)."""
    raw = text(value)
    if raw is None:
        return None
    digits = re.sub(r"[^0-9+]", "", raw)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if len(digits.lstrip("+")) < 6 or "+" in digits[1:]:
        raise RowError(column, f"{raw[:40]!r} is not a phone number")
    return digits


def customer_keys(row: Mapping[str, Any]) -> dict[str, str]:
    """The customer keys a row carries (user_id, loyalty_id, email, phone), cleaned."""
    keys: dict[str, str] = {}
    user = text(row.get("user_id"))
    if user is not None:
        keys["user_id"] = user
    loyalty = text(row.get("loyalty_id"))
    if loyalty is not None:
        keys["loyalty_id"] = loyalty.upper()
    mail = email(row.get("email"))
    if mail is not None:
        keys["email"] = mail
    number = phone(row.get("phone"))
    if number is not None:
        keys["phone"] = number
    return keys


def identify(message: dict[str, Any], keys: Mapping[str, str], fallback: str | None) -> None:
    """Put the keys on a message: user_id as userId, the others in context.traits, and,
    without a user id, anonymousId from the strongest key (loyalty card, then email,
    then phone) so identity resolution links the event; else `fallback`."""
    traits = {k: keys[k] for k in ("email", "phone", "loyalty_id") if k in keys}
    if traits:
        message.setdefault("context", {})["traits"] = traits
    if "user_id" in keys:
        message["userId"] = keys["user_id"]
        return
    for kind, prefix in (("loyalty_id", "loyalty"), ("email", "email"), ("phone", "phone")):
        if kind in keys:
            message["anonymousId"] = f"{prefix}:{keys[kind]}"
            return
    if fallback is None:
        raise RowError("email", "no customer key (user_id, loyalty_id, email or phone)")
    message["anonymousId"] = fallback
