"""Exporting an audience's members: CSV or Parquet of customer ids, or the hashed
customer-list files that Google Ads (Customer Match) and Meta (custom audiences from a
customer list) accept.

Consent is asked at the door for every member (`activate.gate.verdicts`, with the
member's identifiers so that an erased person who came back is refused too): the purpose
is `advertising` for the ad platforms by default and must be named for CSV and Parquet.
Members refused are left out and counted by reason, as are members with no usable email
or phone for an ad file; nothing is left out silently. Each export is recorded in the
audit log (`audience.export`) with its counts and no personal data.

Ad files, as the platforms document them:

- Google (Customer Match, hashed upload): a UTF-8 CSV with the headers `Email` and
  `Phone`; an email trimmed and lower-cased, a phone in E.164 (`+` and country code),
  each then SHA-256 in lower-case hex.
- Meta (customer list): a CSV with the headers `email` and `phone`; the email trimmed
  and lower-cased, the phone as digits only with the country code (no `+`, no leading
  zeros), then SHA-256 in lower-case hex.

Emails and phones come from the profile's traits (sealed in the warehouse, opened here
only to hash them). Phones without a country code get the identity settings' default
country code, as identity resolution does.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from touchpoints.activate.audiences import open_stays, stored_audience
from touchpoints.activate.gate import verdicts
from touchpoints.errors import Conflict, InvalidInput
from touchpoints.identity.lookup import stored_config
from touchpoints.insights.frame import USER
from touchpoints.privacy import tombstones
from touchpoints.privacy.audit import CONTROL_ACTOR, record
from touchpoints.privacy.consent_config import load_config
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.personal import BLINDED_KINDS, IdentifierRules, canonical, reveal
from touchpoints.warehouse.vault import blind_of

__all__ = ["AD_FORMATS", "FORMATS", "NO_CONTACT", "export_audience", "hashed_email",
           "hashed_phone"]  # fmt: skip

FORMATS = ("csv", "parquet", "google", "meta")
#: The column headers each ad platform's customer-list file takes: email, phone.
AD_FORMATS = {"google": ("Email", "Phone"), "meta": ("email", "phone")}
AD_PURPOSE = "advertising"
NO_CONTACT = "no email or phone"
ACTION = "audience.export"


def hashed_email(value: Any, rules: IdentifierRules) -> str | None:
    """SHA-256 hex of an email trimmed and lower-cased (None when it is not an email)."""
    form = canonical("email", value, IdentifierRules(rules.country_code, False))
    return None if form is None else hashlib.sha256(form.encode()).hexdigest()


def hashed_phone(value: Any, rules: IdentifierRules, *, plus: bool) -> str | None:
    """SHA-256 hex of a phone in E.164, with its `+` (Google) or without (Meta)."""
    form = canonical("phone", value, rules)
    if form is None:
        return None
    return hashlib.sha256((form if plus else form[1:]).encode()).hexdigest()


def export_audience(
    warehouse: Warehouse,
    name: str,
    path: str | Path,
    *,
    format: str,
    purpose: str | None = None,
    actor: str = CONTROL_ACTOR,
    reason: str | None = None,
) -> dict[str, Any]:
    """Write the audience's current members to `path` in `format` (csv, parquet,
    google, meta); returns {name, path, format, purpose, members, written, left_out:
    {reason: count}}."""
    if format not in FORMATS:
        raise InvalidInput(f"format is one of {', '.join(FORMATS)}, not {str(format)[:20]!r}",
                           field="format")  # fmt: skip
    if purpose is None and format in AD_FORMATS:
        purpose = AD_PURPOSE
    if purpose is None:
        raise InvalidInput("name the purpose the export is for (e.g. analytics)", field="purpose")
    load_config(warehouse).check_purpose(purpose)
    with warehouse.lock:
        stored_audience(warehouse, name)
        sizes = warehouse.table("audience_sizes")
        if not int(sizes.filter(sizes.audience == name).count().to_pyarrow().as_py()):
            raise Conflict(f"audience {name!r} was never refreshed: refresh it first",
                           field="name")  # fmt: skip
        people = _members_with_profiles(warehouse, name)
        answers = verdicts(warehouse, [p[USER] for p in people], purpose,
                           identifiers=_worth_checking(warehouse, people))  # fmt: skip
        left_out: Counter[str] = Counter()
        allowed = []
        for person in people:
            verdict = answers[person[USER]]
            if verdict.allowed:
                allowed.append(person)
            else:
                left_out[verdict.reason or "refused"] += 1
        if format in AD_FORMATS:
            written = _write_ad_file(warehouse, allowed, Path(path), format, left_out)
        else:
            written = _write_ids(allowed, Path(path), format)
        summary = {
            "name": name,
            "path": str(path),
            "format": format,
            "purpose": purpose,
            "members": len(people),
            "written": written,
            "left_out": dict(sorted(left_out.items())),
        }
        details = {k: v for k, v in summary.items() if k != "path"}
        record(warehouse, actor, ACTION, reason=reason, details={"audience": name, **details})
    return summary


def _members_with_profiles(warehouse: Warehouse, name: str) -> list[dict[str, Any]]:
    stays = open_stays(warehouse, name)
    profiles = warehouse.table("profiles").select(
        _pid=USER, identifiers="identifiers", traits="traits"
    )
    joined = stays.left_join(profiles, stays[USER] == profiles["_pid"])
    rows = joined.select(USER, "entered_at", "identifiers", "traits").to_pyarrow().to_pylist()
    return sorted(rows, key=lambda r: r[USER])


def _traits(person: dict[str, Any]) -> dict[str, Any]:
    try:
        traits = json.loads(person["traits"]) if person["traits"] else {}
    except ValueError:
        return {}
    return traits if isinstance(traits, dict) else {}


def _identifier_forms(person: dict[str, Any]) -> list[str]:
    """The member's identifiers as stored (the gate checks them against erasures),
    with the email and phone of their traits by their blinds."""
    forms = list(person["identifiers"] or [])
    traits = _traits(person)
    for kind in BLINDED_KINDS:
        blind = blind_of(traits.get(kind)) if isinstance(traits.get(kind), str) else None
        if blind:
            forms.append(f"{kind}:{blind}")
    return list(dict.fromkeys(forms))


def _worth_checking(warehouse: Warehouse, people: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The identifiers to hand the gate: those of the members with any identifier that
    belonged to an erased person (one look-up for all). The gate would refuse exactly
    these members for them; the others' identifiers cannot change its answer, and the
    gate reads settings once per identifier it is given, which a large audience feels."""
    forms = {p[USER]: _identifier_forms(p) for p in people}
    gone = tombstones.erased(warehouse, {f for fs in forms.values() for f in fs})
    return {cid: fs for cid, fs in forms.items() if gone.intersection(fs)}


def _write_ids(people: list[dict[str, Any]], path: Path, format: str) -> int:
    table = pa.table(
        {
            USER: pa.array([p[USER] for p in people], pa.string()),
            "entered_at": pa.array([p["entered_at"] for p in people], pa.timestamp("us", "UTC")),
        }
    )
    if format == "csv":
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return table.num_rows


def _write_ad_file(
    warehouse: Warehouse,
    people: list[dict[str, Any]],
    path: Path,
    format: str,
    left_out: Counter[str],
) -> int:
    config = stored_config(warehouse)
    rules = IdentifierRules(config.country_code, config.strip_plus_addressing)
    vault = warehouse.vault
    written = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(AD_FORMATS[format])
        for person in people:
            traits = _traits(person)
            email = hashed_email(reveal(vault, traits.get("email"), "email"), rules)
            phone = hashed_phone(
                reveal(vault, traits.get("phone"), "phone"), rules, plus=format == "google"
            )
            if email is None and phone is None:
                left_out[NO_CONTACT] += 1
                continue
            writer.writerow([email or "", phone or ""])
            written += 1
    return written
