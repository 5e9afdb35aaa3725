"""Sending a campaign: the send log makes it exactly-once per person and resumable.

Each recipient gets one `sends` row, keyed by campaign and customer (and occasion, for a
trigger), so nobody is queued twice. A run takes the queued rows a second's worth at a
time and, for each person, right before handing the message over:

1. asks the door (`activate.gate`) whether their latest consent allows the campaign's
   purpose and they were not erased; if not the row becomes `skipped` with the reason;
2. marks the row `sending` (committed), hands the message to the SMTP server, and marks
   it `sent` once the server accepted it, then records an `Email Delivered` event.

A run that starts and finds rows still `sending` knows a crash came between steps 2's
two writes: the server may or may not have the message. Those become `uncertain` and are
not sent again — never twice beats never skipped for marketing mail, and the window is
one message wide. Everyone still `queued` is sent by the next run.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import ibis
import pyarrow as pa

from touchpoints.activate import gate
from touchpoints.activate.audiences import current_members, refresh
from touchpoints.activate.campaigns import get_campaign
from touchpoints.activate.compose import compose, email_event
from touchpoints.activate.email_render import uses
from touchpoints.activate.email_settings import EmailSettings, load_email_settings
from touchpoints.activate.mailer import Mailer, MailError, MessageRefused
from touchpoints.activate.recipients import recipients
from touchpoints.collect.internal import internal_source, record_events
from touchpoints.errors import Conflict, InvalidInput
from touchpoints.identity.lookup import pseudonymous, stored_config
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import SENDS
from touchpoints.warehouse.writer import EventWriter

__all__ = ["queue", "send_campaign", "send_id_of", "send_log", "send_queued"]

EMAIL_SOURCE = "touchpoints email"
_SENDS_ARROW = SENDS.to_pyarrow()
_running: set[str] = set()
_running_lock = threading.Lock()


def send_id_of(campaign_id: str, customer_id: str, occasion: str = "") -> str:
    digest = hashlib.sha256(f"{campaign_id}\x1f{customer_id}\x1f{occasion}".encode())
    return "snd_" + digest.hexdigest()[:24]


def queue(
    warehouse: Warehouse,
    campaign_id: str,
    customer_ids: Sequence[str],
    *,
    occasion: str = "",
    now: datetime | None = None,
) -> list[str]:
    """Queue the campaign for these customers; those queued before stay as they are.
    Returns the send ids of all of them."""
    now = now or datetime.now(UTC)
    wanted = {send_id_of(campaign_id, c, occasion): c for c in dict.fromkeys(customer_ids)}
    with warehouse.lock:
        sends = warehouse.table("sends")
        known = set(sends.filter(sends.send_id.isin(list(wanted))).send_id.to_pyarrow().to_pylist())
        fresh = [
            {"send_id": s, "campaign_id": campaign_id, "customer_id": c, "status": "queued",
             "queued_at": now}
            for s, c in wanted.items() if s not in known
        ]  # fmt: skip
        warehouse.insert("sends", pa.Table.from_pylist(fresh, schema=_SENDS_ARROW))
    return list(wanted)


def _audience_members(warehouse: Warehouse, audience: str, now: datetime) -> list[str]:
    """The audience as it is now (refreshed, so entered and left are recorded too)."""
    refresh(warehouse, audience, now=now)
    return current_members(warehouse, audience).customer_id.to_pyarrow().to_pylist()


def send_campaign(
    warehouse: Warehouse,
    campaign_id: str,
    *,
    writer: EventWriter,
    now: Callable[[], datetime] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Queue the campaign's audience as it is now (newcomers included, nobody twice) and
    send everything queued; returns the counts of this run."""
    with warehouse.lock:
        campaign = get_campaign(warehouse, campaign_id)
    if not campaign.get("audience"):
        raise InvalidInput("this campaign has no audience: triggers send it", field="audience")
    moment = (now or _utcnow)()
    with warehouse.lock:
        members = _audience_members(warehouse, campaign["audience"], moment)
    queue(warehouse, campaign_id, members, now=moment)
    return send_queued(warehouse, campaign_id, writer=writer, now=now, limit=limit)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def send_queued(
    warehouse: Warehouse,
    campaign_id: str,
    *,
    writer: EventWriter,
    now: Callable[[], datetime] | None = None,
    limit: int | None = None,
    send_ids: Sequence[str] | None = None,
    settings: EmailSettings | None = None,
) -> dict[str, Any]:
    """Send the queued messages of a campaign (only `send_ids`, when given); see the
    module docstring. One run per campaign at a time in this process."""
    clock = now or _utcnow
    with warehouse.lock:
        campaign = get_campaign(warehouse, campaign_id)
    with _running_lock:
        if campaign_id in _running:
            raise Conflict(f"campaign {campaign_id!r} is being sent already", field="campaign_id")
        _running.add(campaign_id)
    try:
        return _run(warehouse, campaign, writer, clock, limit, send_ids, settings)
    finally:
        with _running_lock:
            _running.discard(campaign_id)


def _run(
    warehouse: Warehouse,
    campaign: dict[str, Any],
    writer: EventWriter,
    clock: Callable[[], datetime],
    limit: int | None,
    send_ids: Sequence[str] | None,
    settings: EmailSettings | None,
) -> dict[str, Any]:
    campaign_id = campaign["campaign_id"]
    with warehouse.lock:
        settings = settings or load_email_settings(warehouse)
        uncertain = _mark_interrupted(warehouse, campaign_id)
        source = internal_source(warehouse, EMAIL_SOURCE, "email")
    counts: Counter[str] = Counter()
    step = max(1, min(200, int(settings.rate_per_second)))
    with Mailer(settings) as mailer:
        while limit is None or counts["sent"] + counts["skipped"] < limit:
            with warehouse.lock:
                batch = _queued(warehouse, campaign_id, send_ids, step)
            if not batch:
                break
            events: list[dict[str, Any]] = []
            try:
                _send_batch(warehouse, campaign, batch, settings, mailer, clock, counts, events)
            finally:  # what was sent is recorded even when the mail server goes away
                if events:
                    record_events(writer, source, events)
    return {
        "campaign_id": campaign_id,
        "sent": counts["sent"],
        "skipped": {k.removeprefix("skip:"): v for k, v in counts.items() if k.startswith("skip:")},
        "uncertain": uncertain,
        "failed": counts["failed"],
    }


def _send_batch(
    warehouse: Warehouse,
    campaign: dict[str, Any],
    batch: list[dict[str, Any]],
    settings: EmailSettings,
    mailer: Mailer,
    clock: Callable[[], datetime],
    counts: Counter[str],
    events: list[dict[str, Any]],
) -> None:
    ids = [row["customer_id"] for row in batch]
    with warehouse.lock:
        people = recipients(warehouse, ids)
        config = stored_config(warehouse)
        forms = {
            c: pseudonymous(warehouse, f"email:{p.email}", config)
            for c, p in people.items()
            if p.email
        }
        verdicts = gate.verdicts(
            warehouse, ids, campaign["purpose"], identifiers={c: [f] for c, f in forms.items()}
        )
    for row in batch:
        send_id, customer = row["send_id"], row["customer_id"]
        verdict, person = verdicts[customer], people.get(customer)
        reason = None
        if not verdict.allowed:
            reason = verdict.reason
        elif person is None or person.email is None:
            reason = "no email address"
        extra: dict[str, Any] = {}
        if reason is None:
            reason, extra = _offer_and_picks(warehouse, campaign, customer, clock())
        if reason is not None:
            _mark(warehouse, send_id, {"status": "skipped", "reason": reason})
            counts["skip:" + reason] += 1
            continue
        assert person is not None
        moment = clock()
        try:
            message = compose(
                campaign, person, send_id=send_id, address_form=forms[customer],
                settings=settings, vault=warehouse.vault, extra=extra, now=moment,
            )  # fmt: skip
        except InvalidInput as exc:
            _mark(warehouse, send_id, {"status": "failed", "reason": exc.message})
            counts["failed"] += 1
            continue
        _mark(warehouse, send_id, {"status": "sending", "message_id": message["Message-ID"]})
        try:
            mailer.send(message)
        except MessageRefused as exc:
            _mark(warehouse, send_id, {"status": "failed", "reason": exc.message})
            counts["failed"] += 1
            continue
        except MailError as exc:  # the server went away: this one waits for the next run
            _mark(warehouse, send_id, {"status": "queued", "reason": exc.message})
            raise
        _mark(warehouse, send_id, {"status": "sent", "sent_at": moment, "reason": None})
        counts["sent"] += 1
        events.append(
            email_event(
                "Email Delivered", campaign, person.identity, send_id=send_id,
                subject=str(message["Subject"]), at=moment,
            )
        )  # fmt: skip


def _offer_and_picks(
    warehouse: Warehouse, campaign: Mapping[str, Any], customer: str, at: datetime
) -> tuple[str | None, dict[str, Any]]:
    """(reason to skip, or None; the coupon and recommendations for the templates)."""
    extra: dict[str, Any] = {}
    if campaign.get("offer_id"):
        from touchpoints.activate.offers import assign

        with warehouse.lock:
            given = assign(warehouse, campaign["offer_id"], [customer], now=at)[0]
        if given["arm"] != "offer":
            return "holdout", extra  # kept back to measure what the offer adds
        extra["coupon"] = given
    if campaign.get("recommendations") and uses(campaign, "recommendations"):
        from touchpoints.models.recommend_service import recommend_for

        with warehouse.lock:
            picks = recommend_for(warehouse, customer, campaign["recommendations"])
        extra["recommendations"] = [item["item_id"] for item in picks["items"]]
    return None, extra


def _mark(warehouse: Warehouse, send_id: str, values: dict[str, Any]) -> None:
    with warehouse.lock:
        warehouse.update_rows("sends", "send_id", send_id, values)


def _queued(
    warehouse: Warehouse, campaign_id: str, send_ids: Sequence[str] | None, n: int
) -> list[dict[str, Any]]:
    sends = warehouse.table("sends")
    mine = sends.filter((sends.campaign_id == campaign_id) & (sends.status == "queued"))
    if send_ids is not None:
        mine = mine.filter(mine.send_id.isin(list(send_ids)))
    return mine.order_by("queued_at", "send_id").limit(n).to_pyarrow().to_pylist()


def _mark_interrupted(warehouse: Warehouse, campaign_id: str) -> int:
    """Rows a crashed run left `sending` become `uncertain`; returns how many."""
    sends = warehouse.table("sends")
    stuck = sends.filter((sends.campaign_id == campaign_id) & (sends.status == "sending"))
    ids = stuck.send_id.to_pyarrow().to_pylist()
    if ids:
        reason = "the sender stopped while handing it over; not sent again"
        updates = pa.table({"send_id": ids, "status": ["uncertain"] * len(ids),
                            "reason": [reason] * len(ids)})  # fmt: skip
        warehouse.update_many("sends", ["send_id"], updates)
    return len(ids)


def send_log(
    warehouse: Warehouse, campaign_id: str | None = None, *, limit: int = 100
) -> dict[str, Any]:
    """Counts by status and the latest rows of the send log (customer ids, no addresses)."""
    sends = warehouse.table("sends")
    if campaign_id is not None:
        sends = sends.filter(sends.campaign_id == campaign_id)
    counts = sends.group_by("status").agg(n=sends.count()).to_pyarrow().to_pylist()
    rows = sends.order_by(ibis.desc("queued_at"), "send_id").limit(limit).to_pyarrow().to_pylist()
    return {
        "campaign_id": campaign_id,
        "counts": {row["status"]: row["n"] for row in counts},
        "sends": [
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
            for row in rows
        ],
    }
