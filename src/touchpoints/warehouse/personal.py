"""Which stored values are personal, their canonical forms, and sealing them on the way
into the warehouse (and opening them on the way out, for those allowed to read).

Personal traits — email, phone, names, address, birthday, username — are sealed
wherever a person's traits travel: an event's `traits` and `context.traits`, and the
payload of a rejected message. Properties carry product names under `name`, so only
`email` and `phone` are sealed there. Email and phone are blinded in the canonical form
identity resolution gives them, so a blind is the identifier itself for joins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from touchpoints.warehouse.vault import Vault, is_token

PERSONAL_TRAITS = frozenset(
    {
        "email",
        "phone",
        "name",
        "firstName",
        "lastName",
        "first_name",
        "last_name",
        "address",
        "birthday",
        "username",
    }
)
PERSONAL_PROPERTIES = frozenset({"email", "phone"})
#: Kinds whose identifier values are blinds (the others are pseudonymous ids).
BLINDED_KINDS = ("email", "phone")

#: White space spelt out, for `\s` differs between Python, RE2 (DuckDB) and Java (Spark).
WHITE = r" \t\n\x0b\f\r"  # regex escapes, not the characters: Spark SQL reads \v as v
TRIM_PATTERN = f"^[{WHITE}]+|[{WHITE}]+$"
EMAIL_PATTERN = f"^[^@{WHITE}]+@[^@{WHITE}]+\\.[^@{WHITE}]+$"
_SPACE = re.compile(TRIM_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
BLIND = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class IdentifierRules:
    """The part of identity's settings that shapes a canonical email or phone."""

    country_code: str = "1"
    strip_plus_addressing: bool = False

    @classmethod
    def from_settings(cls, text: str | None) -> IdentifierRules:
        """From identity's stored settings (JSON), ignoring what does not concern us."""
        data = orjson.loads(text) if text else {}
        return cls(
            str(data.get("country_code", "1")), bool(data.get("strip_plus_addressing", False))
        )


def canonical(kind: str, value: Any, rules: IdentifierRules) -> str | None:
    """An email or phone as identity resolution writes it, or None when it is not one.
    (The same rules as `touchpoints.identity.identifiers.normalise`; a test holds the
    two together.)"""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = _SPACE.sub("", str(value))
    if kind == "email":
        text = text.lower()
        if rules.strip_plus_addressing:
            text = re.sub(r"\+[^@]*@", "@", text)
        return text if _EMAIL.search(text) else None
    if kind == "phone":
        digits = re.sub(r"[^0-9+]", "", text)
        international = "+" + digits[2:] if digits.startswith("00") else digits
        national = "+" + rules.country_code + re.sub(r"^0+", "", digits)
        e164 = international if international.startswith("+") else national
        return e164 if _E164.search(e164) else None
    return text or None


def blind_value(vault: Vault, field: str, value: Any, rules: IdentifierRules) -> tuple[str, bool]:
    """(blind, whether it is an identifier's) of a personal value: of its identifier
    form for a valid email or phone (so equal identifiers join), else of its trimmed
    lower-case text."""
    if field in BLINDED_KINDS:
        form = canonical(field, value, rules)
        if form is not None:
            return vault.blind(field, form), True
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return vault.blind(field, _SPACE.sub("", text).lower()), False


#: Tokens already made in one write, by (field, value): an event's traits and its
#: `context.traits` usually hold the same email, and a batch repeats people. Reusing a
#: token shows only what its blind shows anyway: that two values are equal.
Memo = dict[tuple[str, Any], str]


def seal_fields(
    vault: Vault,
    values: Any,
    personal: frozenset[str],
    rules: IdentifierRules,
    memo: Memo | None = None,
) -> Any:
    """A copy of a JSON object with its personal keys' values sealed (others as given)."""
    if not isinstance(values, Mapping):
        return values
    memo = {} if memo is None else memo
    out = dict(values)
    for key in personal & out.keys():
        value = out[key]
        if value is None or value == "" or is_token(value):
            continue
        remembered = (key, value if isinstance(value, str) else orjson.dumps(value))
        token = memo.get(remembered)
        if token is None:
            blind, identifier = blind_value(vault, key, value, rules)
            token = memo[remembered] = vault.seal(key, value, blind, identifier)
        out[key] = token
    return out


def seal_event(
    vault: Vault, row: dict[str, Any], rules: IdentifierRules, memo: Memo | None = None
) -> dict[str, Any]:
    """An event row (JSON columns as objects or text) with its personal values sealed."""
    memo = {} if memo is None else memo
    traits, context, properties = (_loaded(row.get(c)) for c in ("traits", "context", "properties"))
    changed = dict(row)
    for column in ("user_id", "anonymous_id"):
        pseudonym, email = pseudonym_of(vault, row.get(column), rules)
        if pseudonym is not None:
            changed[column] = pseudonym
        if email is not None and not (isinstance(traits, Mapping) and traits.get("email")):
            traits = {**(traits if isinstance(traits, Mapping) else {}), "email": email}
    if isinstance(traits, Mapping):
        changed["traits"] = seal_fields(vault, traits, PERSONAL_TRAITS, rules, memo)
    if isinstance(context, Mapping) and isinstance(context.get("traits"), Mapping):
        inner = seal_fields(vault, context["traits"], PERSONAL_TRAITS, rules, memo)
        changed["context"] = {**context, "traits": inner}
    if isinstance(properties, Mapping) and PERSONAL_PROPERTIES & properties.keys():
        changed["properties"] = seal_fields(vault, properties, PERSONAL_PROPERTIES, rules, memo)
    return changed


def pseudonym_of(vault: Vault, value: Any, rules: IdentifierRules) -> tuple[str | None, str | None]:
    """(what to store instead of an id that is personal, the email it was). An id of
    the importers' form `email:…` or `phone:…` keeps its kind and gets the blind; a user
    id that is an email address becomes `email:<blind>`, its email kept sealed in the
    traits so that identity still links it. Other ids are pseudonymous: (None, None)."""
    if not isinstance(value, str) or is_token(value):
        return None, None
    kind, _, rest = value.partition(":")
    if kind in BLINDED_KINDS and rest and not BLIND.match(rest):
        return f"{kind}:{blind_value(vault, kind, rest, rules)[0]}", None
    if "@" in value and canonical("email", value, rules) is not None:
        return f"email:{blind_value(vault, 'email', value, rules)[0]}", value
    return None, None


def seal_rejected(vault: Vault, row: dict[str, Any], rules: IdentifierRules) -> dict[str, Any]:
    """A rejected-message row with its payload's personal values sealed; a payload that
    is not a JSON object (cut short, say) is sealed whole."""
    payload = row.get("payload")
    if payload is None:
        return row
    try:
        message = orjson.loads(payload) if isinstance(payload, str) else payload
    except orjson.JSONDecodeError:
        message = None
    if isinstance(message, Mapping):
        sealed = seal_event(vault, dict(message), rules)
        return {**row, "payload": orjson.dumps(sealed).decode()}
    text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    return {**row, "payload": vault.seal("payload", text, vault.blind("payload", text))}


def reveal(vault: Vault, value: Any, field: str = "payload") -> Any:
    """A JSON value with every token inside opened (the key it sits under names the
    field it was sealed for)."""
    if isinstance(value, str):
        return vault.open(field, value) if is_token(value) else value
    if isinstance(value, Mapping):
        return {key: reveal(vault, item, key) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(vault, item, field) for item in value]
    return value


def reveal_text(vault: Vault, text: str | None, field: str = "payload") -> Any:
    """JSON text with its tokens opened, parsed; a whole-token text opened as is."""
    if text is None:
        return None
    if is_token(text):
        return vault.open(field, text)
    try:
        return reveal(vault, orjson.loads(text), field)
    except orjson.JSONDecodeError:
        return text


def _loaded(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value
