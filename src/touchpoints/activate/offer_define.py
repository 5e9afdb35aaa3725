"""Offer definitions and coupon codes, checked field by field before anything is stored.

A definition is an object (JSON or YAML):

- `offer_id`: the offer's id, also the campaign it belongs to (letters, digits, `_.-`);
- `name`: what people call it;
- `discount`: `{"percent": 1..100}` or `{"amount": > 0, "currency": "EUR"}`;
- `valid_days`: how long a code stays valid after it is given (1..3650);
- `codes`: `{"generate": {"prefix": "SAVE", "length": 8}}` (random codes of an
  unambiguous alphabet) or `{"pool": true}` (codes uploaded beforehand);
- `holdout`: the share of people kept back, given nothing, to measure what the offer adds
  (0..0.5, default 0.1);
- for the next best offer, all optional: `audience` (only its current members),
  `product_id` or `category` (a product offer, scored by purchase probability),
  `min_churn_risk` (a retention offer, scored by churn risk × CLV), `min_clv`,
  `priority` (breaks ties, higher first), `active` (false: no new assignments).

`parse_offer` returns the normalised definition (defaults filled in) that is stored;
`normalise_code` and `codes_from_text` read uploaded codes.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from touchpoints.errors import InvalidInput

OFFER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
#: A coupon code, once upper-cased: what tills and shop platforms accept everywhere.
CODE = re.compile(r"[A-Z0-9][A-Z0-9_\-]{2,63}")
PREFIX = re.compile(r"[A-Z0-9][A-Z0-9_\-]{0,19}|")
CURRENCY = re.compile(r"[A-Z]{3}")
#: Generated codes use no 0/O, 1/I/L or U/V look-alikes, so they survive being read out.
ALPHABET = "ABCDEFGHJKMNPQRSTWXYZ23456789"
FIELDS = (
    "offer_id", "name", "discount", "valid_days", "codes", "holdout", "audience",
    "product_id", "category", "min_churn_risk", "min_clv", "priority", "active",
)  # fmt: skip
DEFAULT_HOLDOUT = 0.1
DEFAULT_LENGTH = 8


def parse_offer(source: str | Mapping[str, Any]) -> dict[str, Any]:
    """The normalised definition of an offer from JSON or YAML text or a mapping;
    `InvalidInput` names the bad field (see the module docstring)."""
    data = _load(source) if isinstance(source, str) else source
    if not isinstance(data, Mapping):
        raise InvalidInput("an offer definition is an object", field="offer")
    _known(data, "", FIELDS)
    offer_id = data.get("offer_id")
    if not isinstance(offer_id, str) or not OFFER_ID.fullmatch(offer_id):
        raise InvalidInput(
            "offer_id is 1-100 letters, digits, '_', '.' or '-' (starting with a letter or "
            f"digit), not {offer_id!r}",
            field="offer_id",
        )
    out: dict[str, Any] = {"offer_id": offer_id, "name": _text(data.get("name", offer_id), "name")}
    out["discount"] = _discount(data.get("discount"))
    out["valid_days"] = _whole(data.get("valid_days"), "valid_days", 1, 3650)
    out["codes"] = _codes(data.get("codes"))
    out["holdout"] = _number(data.get("holdout", DEFAULT_HOLDOUT), "holdout", 0.0, 0.5)
    for name in ("audience", "product_id", "category"):
        if data.get(name) is not None:
            out[name] = _text(data[name], name)
    if "product_id" in out and "category" in out:
        raise InvalidInput("give product_id or category, not both", field="category")
    if data.get("min_churn_risk") is not None:
        out["min_churn_risk"] = _number(data["min_churn_risk"], "min_churn_risk", 0.0, 1.0)
    if data.get("min_clv") is not None:
        out["min_clv"] = _number(data["min_clv"], "min_clv", 0.0, math.inf)
    out["priority"] = _whole(data.get("priority", 0), "priority", -1000, 1000)
    active = data.get("active", True)
    if not isinstance(active, bool):
        raise InvalidInput("active is true or false", field="active")
    out["active"] = active
    return out


def normalise_code(value: object, where: str) -> str:
    """A code upper-cased and trimmed, or `InvalidInput` naming `where` (its position)."""
    code = value.strip().upper() if isinstance(value, str) else None
    if not code or not CODE.fullmatch(code):
        raise InvalidInput(
            f"{where}: {value!r} is not a coupon code (3-64 letters, digits, '_' or '-', "
            "starting with a letter or digit)",
            field="codes",
        )
    return code


def normalise_codes(values: Sequence[object], labels: Sequence[str] | None = None) -> list[str]:
    """Codes normalised, refusing a malformed one or a repeat by its position (`labels`
    name the positions, such as `line 4`; else `codes[3]`)."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InvalidInput("codes is a list of coupon codes", field="codes")
    names = list(labels) if labels is not None else [f"codes[{i}]" for i in range(len(values))]
    seen: dict[str, str] = {}
    out = []
    for value, where in zip(values, names, strict=True):
        code = normalise_code(value, where)
        if code in seen:
            raise InvalidInput(f"{where}: {code} repeats {seen[code]}", field="codes")
        seen[code] = where
        out.append(code)
    return out


def codes_from_text(text: str) -> tuple[list[str], list[str]]:
    """Codes from an uploaded text or CSV file (the first column; blank lines and a
    `code` header skipped), with the line each came from."""
    codes, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        cell = line.split(",", 1)[0].strip().strip('"').strip()
        if not cell or (not codes and cell.lower() in ("code", "codes", "coupon")):
            continue
        codes.append(cell)
        labels.append(f"line {number}")
    return normalise_codes(codes, labels), labels


# -- fields -----------------------------------------------------------------------------


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        message = f"the definition is neither JSON nor YAML: {exc}"
        raise InvalidInput(message, field="offer") from None


def _known(data: Mapping[str, Any], path: str, names: Sequence[str]) -> None:
    for key in data:
        if key not in names:
            where = f"{path}.{key}" if path else str(key)
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(names)}"
            raise InvalidInput(f"unknown field {where!r}{hint}", field=where)


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidInput(f"{name} is non-empty text of at most 200 characters", field=name)
    return value.strip()


def _number(value: object, name: str, low: float, high: float) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and isinstance(value, int) and abs(value) > 2**53:
        ok = False  # beyond what a float holds exactly (and what math.isfinite takes)
    if not ok or not math.isfinite(value) or not low <= value <= high:  # type: ignore[arg-type]
        top = "" if math.isinf(high) else f" to {high:g}"
        raise InvalidInput(f"{name} is a number from {low:g}{top}, not {value!r}", field=name)
    return float(value)  # type: ignore[arg-type]


def _whole(value: object, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(
            f"{name} is a whole number from {low} to {high}, not {value!r}", field=name
        )
    return value


def _discount(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not value:
        raise InvalidInput(
            'discount is {"percent": 10} or {"amount": 5, "currency": "EUR"}', field="discount"
        )
    _known(value, "discount", ("percent", "amount", "currency"))
    if "percent" in value:
        if set(value) != {"percent"}:
            raise InvalidInput("a percent discount takes no amount or currency", field="discount")
        return {"percent": _number(value["percent"], "discount.percent", 1, 100)}
    amount = value.get("amount")
    if not isinstance(amount, int | float) or isinstance(amount, bool) or not amount > 0:
        raise InvalidInput(f"discount.amount is a number above 0, not {amount!r}",
                           field="discount.amount")  # fmt: skip
    currency = value.get("currency")
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency.upper()):
        raise InvalidInput(
            f"discount.currency is an ISO 4217 code such as EUR, not {currency!r}",
            field="discount.currency",
        )
    return {"amount": _number(amount, "discount.amount", 0, math.inf), "currency": currency.upper()}


def _codes(value: object) -> dict[str, Any]:
    shape = 'codes is {"generate": {"prefix": "SAVE", "length": 8}} or {"pool": true}'
    if not isinstance(value, Mapping) or len(value) != 1:
        raise InvalidInput(shape, field="codes")
    _known(value, "codes", ("generate", "pool"))
    if "pool" in value:
        if value["pool"] is not True:
            raise InvalidInput(shape, field="codes.pool")
        return {"pool": True}
    settings = value["generate"]
    if settings is None or settings is True:
        settings = {}
    if not isinstance(settings, Mapping):
        raise InvalidInput(shape, field="codes.generate")
    _known(settings, "codes.generate", ("prefix", "length"))
    prefix = settings.get("prefix", "")
    if not isinstance(prefix, str) or not PREFIX.fullmatch(prefix.strip().upper()):
        raise InvalidInput(
            "codes.generate.prefix is up to 20 letters, digits, '_' or '-'",
            field="codes.generate.prefix",
        )
    length = _whole(settings.get("length", DEFAULT_LENGTH), "codes.generate.length", 6, 32)
    return {"generate": {"prefix": prefix.strip().upper(), "length": length}}
