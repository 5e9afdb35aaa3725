"""Email over HTTP: the links inside messages (public: the signature is the credential)
and the SMTP settings (admin to change, read to view)."""

from __future__ import annotations

import asyncio
import base64
import html
from typing import Any

from fastapi import APIRouter, Body, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from touchpoints.activate import email_responses
from touchpoints.activate.email_settings import load_email_settings, save_email_settings
from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON

router = APIRouter(prefix="/v1/email", tags=["email"])
#: A transparent 1×1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(title: str, text: str, status: int = 200) -> HTMLResponse:
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width">'
        f"<title>{html.escape(title)}</title>"
        '<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


async def _unsubscribe(request: Request, token: str | None) -> dict[str, Any]:
    services = request.app.state.services
    return await asyncio.to_thread(
        email_responses.unsubscribe, services.warehouse, services.writer, token
    )


@router.get("/unsubscribe", response_class=HTMLResponse)
async def get_unsubscribe(request: Request, t: str | None = None) -> Response:
    """The unsubscribe link of a message: withdraws email marketing consent at once."""
    await _unsubscribe(request, t)
    return _page("You are unsubscribed", "You will receive no more marketing email from us.")


@router.post("/unsubscribe")
async def post_unsubscribe(request: Request, t: str | None = None) -> Response:
    """One-click unsubscribe (RFC 8058: mail clients POST `List-Unsubscribe=One-Click`)."""
    return JSON(await _unsubscribe(request, t), headers=NO_STORE)


@router.get("/open")
async def get_open(request: Request, t: str | None = None) -> Response:
    """The open pixel: records `Email Opened`, answers a transparent GIF."""
    services = request.app.state.services
    await asyncio.to_thread(email_responses.opened, services.warehouse, services.writer, t)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/click")
async def get_click(request: Request, t: str | None = None) -> Response:
    """A tracked link: records `Email Link Clicked`, then redirects to the link."""
    services = request.app.state.services
    url = await asyncio.to_thread(email_responses.clicked, services.warehouse, services.writer, t)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


@router.get("/settings")
async def get_settings(request: Request) -> Response:
    """The SMTP and sender settings (the password is never stored, only the name of the
    environment variable that holds it)."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    found = await off_loop(request, load_email_settings, warehouse)
    return JSON(found.as_dict())


@router.put("/settings")
async def put_settings(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Change settings: the keys given change, the others stay. Errors name the key."""
    caller = await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    saved = await off_loop(request, save_email_settings, warehouse, body, actor=caller.key_id)
    return JSON(saved.as_dict())
