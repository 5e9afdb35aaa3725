"""Offers and coupons: definitions stored, code pools loaded, codes given one per person.

Assignment is decided once per offer and person and then kept: asking again returns the
same arm and code. The arm is fixed by a hash (`models.experiment_assign.point` of
`offer:{offer_id}` and the customer id): a person whose point is below the offer's
`holdout` share is kept back (no code), so the holdout is a random sample whatever order
people are assigned in. The offer arm gets the next free code of the pool (by upload
time, then code) or a fresh random one of `offer_define.ALPHABET`, valid for
`valid_days` from the moment it is given.

Codes are written before the assignments, and a code found already given to a person with
no assignment (a crash in between) is given back to them, so a retry never burns codes.
A pool too small for the batch is refused before anything is written.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from touchpoints.activate.offer_define import ALPHABET, normalise_codes, parse_offer
from touchpoints.errors import Conflict, InvalidInput
from touchpoints.models.experiment_assign import point
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.definitions import load_definition, store_definition

__all__ = [
    "assign",
    "code_for",
    "get_offer",
    "list_offers",
    "load_codes",
    "save_offer",
]

OFFERS, COUPONS, ASSIGNMENTS = "offers", "coupons", "offer_assignments"
MAX_BATCH = 100_000
_STAMP = pa.timestamp("us", tz="UTC")


# -- definitions ---------------------------------------------------------------------------


def save_offer(warehouse: Warehouse, definition: str | Mapping[str, Any]) -> dict[str, Any]:
    """Create or replace an offer; returns the definition as stored (defaults filled in).
    People already assigned keep their arm and code; a new holdout share or validity
    applies to those assigned from now on."""
    offer = parse_offer(definition)
    store_definition(warehouse, OFFERS, "offer_id", offer["offer_id"], offer)
    return offer


def get_offer(warehouse: Warehouse, offer_id: str) -> dict[str, Any]:
    """The stored definition of `offer_id` (`NotFound` when there is none)."""
    return load_definition(warehouse, OFFERS, "offer_id", offer_id, "offer")


def list_offers(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Every offer's definition with how many people each arm holds and, for a pool, how
    many codes are still free."""
    offers = warehouse.table(OFFERS).order_by("offer_id").to_pyarrow().to_pylist()
    given = warehouse.table(ASSIGNMENTS)
    arms = given.group_by(["offer_id", "arm"]).agg(n=given.count()).to_pyarrow().to_pylist()
    coupons = warehouse.table(COUPONS)
    free = coupons.filter(coupons.customer_id.isnull())
    free_by = free.group_by("offer_id").agg(n=free.count()).to_pyarrow().to_pylist()
    counts = {(r["offer_id"], r["arm"]): r["n"] for r in arms}
    free_codes = {r["offer_id"]: r["n"] for r in free_by}
    out = []
    for row in offers:
        offer = json.loads(row["definition"])
        key = offer["offer_id"]
        out.append({
            **offer,
            "offered": counts.get((key, "offer"), 0),
            "held_out": counts.get((key, "holdout"), 0),
            "free_codes": free_codes.get(key, 0) if "pool" in offer["codes"] else None,
            "updated_at": row["updated_at"],
        })  # fmt: skip
    return out


# -- the pool ------------------------------------------------------------------------------


def load_codes(
    warehouse: Warehouse,
    offer_id: str,
    codes: Sequence[object],
    *,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Add codes to the pool of a pool offer: upper-cased, each checked; a repeat within
    the upload or a code already stored (for any offer) is refused by its position
    (`labels`, such as `line 4`, else `codes[3]`) and nothing is added."""
    normalised = normalise_codes(codes, labels)
    where = list(labels) if labels is not None else [f"codes[{i}]" for i in range(len(codes))]
    if not normalised:
        raise InvalidInput("there are no codes to load", field="codes")
    if len(normalised) > MAX_BATCH:
        raise InvalidInput(f"load at most {MAX_BATCH} codes at once", field="codes")
    with warehouse.lock:
        offer = get_offer(warehouse, offer_id)
        if "pool" not in offer["codes"]:
            raise InvalidInput(
                f'offer {offer_id!r} generates its codes; set codes to {{"pool": true}} '
                "to load a pool",
                field="codes",
            )
        stored = _existing(warehouse, normalised)
        if stored:
            first = min(normalised.index(c) for c in stored)
            raise Conflict(
                f"{where[first]}: code {normalised[first]} is already stored "
                f"({len(stored)} of the upload are)",
                field="codes",
            )
        now = pa.array([datetime.now(UTC)] * len(normalised), _STAMP)
        nothing = pa.nulls(len(normalised), _STAMP)
        warehouse.insert(COUPONS, pa.table({
            "code": normalised, "offer_id": [offer_id] * len(normalised),
            "customer_id": pa.nulls(len(normalised), pa.string()),
            "assigned_at": nothing, "expires_at": nothing, "created_at": now,
        }))  # fmt: skip
        return {"offer_id": offer_id, "loaded": len(normalised), "free": _free(warehouse, offer_id)}


def _existing(warehouse: Warehouse, codes: Sequence[str]) -> set[str]:
    coupons = warehouse.table(COUPONS)
    found: set[str] = set()
    for start in range(0, len(codes), 5000):
        part = list(codes[start : start + 5000])
        rows = coupons.filter(coupons.code.isin(part)).code.to_pyarrow().to_pylist()
        found.update(rows)
    return found


def _free(warehouse: Warehouse, offer_id: str) -> int:
    coupons = warehouse.table(COUPONS)
    mine = coupons.filter((coupons.offer_id == offer_id) & coupons.customer_id.isnull())
    return int(mine.count().to_pyarrow().as_py())


# -- assignment ----------------------------------------------------------------------------


def arm_of(offer: Mapping[str, Any], customer_id: str) -> str:
    """`holdout` or `offer`, the same on every machine and every call."""
    kept = point(f"offer:{offer['offer_id']}", customer_id) < offer["holdout"]
    return "holdout" if kept else "offer"


def assign(
    warehouse: Warehouse,
    offer_id: str,
    customer_ids: Sequence[str],
    *,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Decide the offer for each customer (once: a repeat gets the earlier answer) and
    return, in the order asked, `{customer_id, arm, code, assigned_at, expires_at}` (times
    as ISO 8601 text; code and expiry null in the holdout). See the module docstring."""
    ids = _customer_ids(customer_ids)
    now = now or datetime.now(UTC)
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    with warehouse.lock:
        offer = get_offer(warehouse, offer_id)
        known = _assignments(warehouse, offer_id, ids)
        new = [c for c in ids if c not in known]
        if new:
            if not offer["active"]:
                raise InvalidInput(f"offer {offer_id!r} is not active", field="offer_id")
            _decide(warehouse, offer, new, now)
            known.update(_assignments(warehouse, offer_id, new))
    return [known[c] for c in ids]


def code_for(warehouse: Warehouse, offer_id: str, customer_id: str) -> dict[str, Any] | None:
    """The customer's assignment to the offer (arm, code, expiry), or None when the offer
    was never decided for them."""
    return _assignments(warehouse, offer_id, [customer_id]).get(customer_id)


def _customer_ids(values: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise InvalidInput("customer_ids is a non-empty list of ids", field="customer_ids")
    if len(values) > MAX_BATCH:
        raise InvalidInput(f"assign at most {MAX_BATCH} customers at once", field="customer_ids")
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.strip() or len(value) > 500:
            raise InvalidInput(
                f"customer_ids[{i}] is not a customer id: {value!r}", field=f"customer_ids[{i}]"
            )
    return list(dict.fromkeys(values))


def _assignments(warehouse: Warehouse, offer_id: str, ids: Sequence[str]) -> dict[str, Any]:
    given = warehouse.table(ASSIGNMENTS)
    coupons = warehouse.table(COUPONS).select("code", "expires_at")
    out: dict[str, Any] = {}
    for start in range(0, len(ids), 5000):
        part = list(ids[start : start + 5000])
        mine = given.filter((given.offer_id == offer_id) & given.customer_id.isin(part))
        joined = mine.left_join(coupons, mine.code == coupons.code)
        rows = joined.select(
            "customer_id", "arm", mine.code, "assigned_at", "expires_at"
        ).to_pyarrow().to_pylist()  # fmt: skip
        for row in rows:
            out[row["customer_id"]] = {
                "offer_id": offer_id,
                "customer_id": row["customer_id"],
                "arm": row["arm"],
                "code": row["code"],
                "assigned_at": _iso(row["assigned_at"]),
                "expires_at": _iso(row["expires_at"]),
            }
    return out


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _decide(warehouse: Warehouse, offer: Mapping[str, Any], ids: list[str], now: datetime) -> None:
    """Write the arms and codes of customers not yet decided (the lock is held)."""
    offer_id = offer["offer_id"]
    arms = {c: arm_of(offer, c) for c in ids}
    takers = [c for c in ids if arms[c] == "offer"]
    held = _held_codes(warehouse, offer_id, takers)  # given before a crash, kept
    needy = [c for c in takers if c not in held]
    expires = now + timedelta(days=offer["valid_days"])
    fresh: dict[str, str] = {}
    if needy and "pool" in offer["codes"]:
        free = _free_codes(warehouse, offer_id, len(needy))
        if len(free) < len(needy):
            raise Conflict(
                f"the pool of offer {offer_id!r} has {len(free)} free codes and "
                f"{len(needy)} are needed; load more codes (nobody was assigned)",
                field="codes",
            )
        fresh = dict(zip(needy, free, strict=True))
        warehouse.update_many(COUPONS, ["code"], _coupon_rows(fresh, now, expires))
    elif needy:
        fresh = dict(zip(needy, _generate(warehouse, offer["codes"]["generate"], len(needy)),
                         strict=True))  # fmt: skip
        rows = _coupon_rows(fresh, now, expires)
        rows = rows.append_column("offer_id", pa.array([offer_id] * len(fresh)))
        warehouse.insert(COUPONS, rows.append_column("created_at", rows["assigned_at"]))
    codes = {**held, **fresh}
    warehouse.insert(ASSIGNMENTS, pa.table({
        "offer_id": [offer_id] * len(ids),
        "customer_id": ids,
        "arm": [arms[c] for c in ids],
        "code": pa.array([codes.get(c) for c in ids], pa.string()),
        "assigned_at": pa.array([now] * len(ids), _STAMP),
    }))  # fmt: skip


def _coupon_rows(codes: Mapping[str, str], now: datetime, expires: datetime) -> pa.Table:
    n = len(codes)
    return pa.table({
        "code": list(codes.values()), "customer_id": list(codes),
        "assigned_at": pa.array([now] * n, _STAMP), "expires_at": pa.array([expires] * n, _STAMP),
    })  # fmt: skip


def _held_codes(warehouse: Warehouse, offer_id: str, ids: Sequence[str]) -> dict[str, str]:
    if not ids:
        return {}
    coupons = warehouse.table(COUPONS)
    mine = coupons.filter((coupons.offer_id == offer_id) & coupons.customer_id.isin(list(ids)))
    rows = mine.order_by("code").select("customer_id", "code").to_pyarrow().to_pylist()
    return {r["customer_id"]: r["code"] for r in rows}


def _free_codes(warehouse: Warehouse, offer_id: str, n: int) -> list[str]:
    coupons = warehouse.table(COUPONS)
    free = coupons.filter((coupons.offer_id == offer_id) & coupons.customer_id.isnull())
    return free.order_by(["created_at", "code"]).limit(n).code.to_pyarrow().to_pylist()


def _generate(warehouse: Warehouse, settings: Mapping[str, Any], n: int) -> list[str]:
    """`n` random codes no coupon holds yet (drawn again on the rare collision)."""
    prefix, length = settings["prefix"], settings["length"]
    made: list[str] = []
    for _ in range(20):
        want = n - len(made)
        batch = list(dict.fromkeys(
            prefix + "".join(secrets.choice(ALPHABET) for _ in range(length)) for _ in range(want)
        ))  # fmt: skip
        taken = _existing(warehouse, batch) | set(made)
        made.extend(c for c in batch if c not in taken)
        if len(made) == n:
            return made
    raise Conflict(
        f"could not draw {n} unused codes of length {length}; make the codes longer",
        field="codes.generate.length",
    )
