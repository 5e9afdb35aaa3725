"""Offers and coupons over HTTP: saving an offer, loading its code pool and assigning it
need an admin key (they give codes out); listing offers, their results and a customer's
next best offer need a read key. Results are also the `offer` report under
`/v1/insights/offer?offer_id=...`."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from touchpoints.activate.offer_define import codes_from_text
from touchpoints.activate.offers import assign as assign_offer
from touchpoints.activate.offers import get_offer, list_offers, load_codes, save_offer
from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.errors import InvalidInput, PayloadTooLarge
from touchpoints.models.next_best_offer import best_offers
from touchpoints.models.offer_results import DEFAULT_WINDOW, offer_results

router = APIRouter(prefix="/v1/offers", tags=["offers"])
MAX_UPLOAD = 8 * 1024 * 1024
MAX_ID = 500


@router.get("")
async def get_offers(request: Request) -> Response:
    """Every offer: its definition, people in each arm, free pool codes."""
    await require(request, "read")
    return JSON(await off_loop(request, list_offers, request.app.state.services.warehouse))


@router.get("/next-best")
async def get_next_best(request: Request, customer_id: str | None = None) -> Response:
    """The active offer worth most to a customer (retention offers by churn risk × CLV,
    product offers by purchase probability × order value; see docs), with every offer
    considered and why any was left out. Nothing is assigned."""
    await require(request, "read")
    if customer_id is None or not customer_id.strip() or len(customer_id) > MAX_ID:
        raise InvalidInput("customer_id is a non-empty id", field="customer_id")
    warehouse = request.app.state.services.warehouse
    found = await off_loop(request, best_offers, warehouse, [customer_id])
    return JSON(found[0])


@router.get("/{offer_id}")
async def get_one(offer_id: str, request: Request) -> Response:
    """One offer's stored definition."""
    await require(request, "read")
    return JSON(await off_loop(request, get_offer, request.app.state.services.warehouse, offer_id))


@router.put("/{offer_id}")
async def put_offer(
    offer_id: str, request: Request, definition: dict[str, Any] = Body(...)
) -> Response:
    """Create or replace an offer (see docs/activation.md for the fields); the id in the
    body, if any, must be the one in the path. Errors name the bad field."""
    await require(request, "admin")
    if definition.get("offer_id", offer_id) != offer_id:
        raise InvalidInput("the offer_id in the body differs from the path", field="offer_id")
    warehouse = request.app.state.services.warehouse
    made = await off_loop(request, save_offer, warehouse, {**definition, "offer_id": offer_id})
    return JSON(made)


@router.post("/{offer_id}/codes")
async def post_codes(offer_id: str, request: Request) -> Response:
    """Load codes into a pool offer: a JSON list (or `{"codes": [...]}`), or a text/CSV
    body with one code a line (first column; a `code` header is skipped). A repeat or a
    code stored already is refused by its position, and nothing is loaded."""
    await require(request, "admin")
    body = await request.body()
    if len(body) > MAX_UPLOAD:
        raise PayloadTooLarge(f"upload at most {MAX_UPLOAD} bytes of codes", field="codes")
    labels = None
    if "json" in request.headers.get("content-type", ""):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidInput("the body is not valid JSON", field="codes") from None
        codes = parsed.get("codes") if isinstance(parsed, dict) else parsed
        if not isinstance(codes, list):
            raise InvalidInput("send a JSON list of codes", field="codes")
    else:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInput("the codes file is not UTF-8 text", field="codes") from None
        codes, labels = codes_from_text(text)
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, load_codes, warehouse, offer_id, codes, labels=labels))


@router.post("/{offer_id}/assign")
async def post_assign(
    offer_id: str, request: Request, payload: dict[str, Any] = Body(...)
) -> Response:
    """Decide the offer for customers (`{"customer_ids": [...]}`): each gets the same
    arm and code on every call; the offer arm gets a code, the holdout none."""
    await require(request, "admin")
    ids = payload.get("customer_ids")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, assign_offer, warehouse, offer_id, ids))


@router.get("/{offer_id}/results")
async def get_results(
    offer_id: str, request: Request, window_days: int = DEFAULT_WINDOW
) -> Response:
    """Redemption per arm, code uses by kind (redemption, expired, by someone else) and the
    incremental revenue over the holdout with its 95% interval, from `Order Completed`
    events within `window_days` of each assignment."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, offer_results, warehouse, offer_id, window_days))
