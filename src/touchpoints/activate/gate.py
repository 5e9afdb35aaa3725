"""Consent at the door: may this person be contacted for this purpose, right now?

Every contact (an email, a webhook carrying personal data, an export row) asks here
first, one person or many at once. A person is refused when their latest consent for
the purpose does not allow it (`privacy.consent_read.allowed_many`, the purpose's
default when there is no record) or when any of their ids or identifiers belonged to an
erased person (`privacy.tombstones`), which covers an uploaded list bringing an erased
address back. The answer is computed at the moment of asking, never cached.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from touchpoints.identity.lookup import pseudonymous, stored_config
from touchpoints.privacy import tombstones
from touchpoints.privacy.consent_read import allowed_many
from touchpoints.warehouse import Warehouse

__all__ = ["Verdict", "may_contact", "verdicts"]

ERASED = "erased"


@dataclass(frozen=True)
class Verdict:
    """The answer for one person: allowed, or refused with the reason in words."""

    customer_id: str
    allowed: bool
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"customer_id": self.customer_id, "allowed": self.allowed, "reason": self.reason}


def verdicts(
    warehouse: Warehouse,
    customer_ids: Sequence[str],
    purpose: str,
    *,
    identifiers: Mapping[str, Iterable[str]] | None = None,
    at: datetime | None = None,
) -> dict[str, Verdict]:
    """One verdict per customer id. `identifiers` adds, per customer, the identifiers the
    contact would use (`email:ana@example.com`), checked against erasures too."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    with warehouse.lock:
        table = allowed_many(warehouse, ids, purpose, at).to_pyarrow()
        consented = dict(
            zip(table["customer_id"].to_pylist(), table["allowed"].to_pylist(), strict=True)
        )
        forms = {cid: {cid} for cid in ids}
        config = stored_config(warehouse) if identifiers else None
        for cid, given in (identifiers or {}).items():
            if cid in forms:
                forms[cid] |= {pseudonymous(warehouse, i, config) for i in given}
        gone = tombstones.erased(warehouse, {f for fs in forms.values() for f in fs})
    answers = {}
    for cid in ids:
        if forms[cid] & gone:
            answers[cid] = Verdict(cid, False, ERASED)
        elif not consented.get(cid, False):
            answers[cid] = Verdict(cid, False, f"no {purpose} consent")
        else:
            answers[cid] = Verdict(cid, True)
    return answers


def may_contact(
    warehouse: Warehouse,
    customer_id: str,
    purpose: str,
    *,
    identifiers: Iterable[str] = (),
    at: datetime | None = None,
) -> Verdict:
    """The verdict for one person (see `verdicts`)."""
    found = verdicts(
        warehouse, [customer_id], purpose, identifiers={customer_id: list(identifiers)}, at=at
    )
    return found[customer_id]
