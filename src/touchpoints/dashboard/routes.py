"""The dashboard's HTTP routes: sign-in with a read or admin key (kept in an HttpOnly
cookie), one route per page, the funnel drop-off download, the live event stream
(server-sent events) and the static files (plotly.js from the plotly package)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import ibis
import orjson
from fastapi import APIRouter, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from touchpoints.api.auth import off_loop
from touchpoints.api.errors import status_of
from touchpoints.dashboard import activation_page, feedback_page, insight_pages, people_pages
from touchpoints.dashboard.filters import FIELDS, Filters
from touchpoints.dashboard.format import cell, tile_value
from touchpoints.dashboard.page import Page
from touchpoints.errors import TouchpointsError
from touchpoints.privacy.keys import Caller

COOKIE = "tp_dashboard"
HERE = Path(__file__).parent
router = APIRouter(prefix="/dashboard", include_in_schema=False)

#: (path, title) of every page, in the order of the navigation.
NAV = (
    ("", "Overview"),
    ("traffic", "Traffic"),
    ("funnel", "Funnel"),
    ("journeys", "Journeys"),
    ("retention", "Retention"),
    ("campaigns", "Campaigns"),
    ("customers", "Customers"),
    ("predictions", "Segments & predictions"),
    ("feedback", "Voice of the customer"),
    ("activation", "Activation"),
    ("heatmaps", "Heat maps"),
    ("live", "Live"),
    ("install", "Install"),
)
INSIGHTS: dict[str, Callable[..., Page]] = {
    "": insight_pages.overview,
    "traffic": insight_pages.traffic,
    "funnel": insight_pages.funnel,
    "journeys": insight_pages.journeys,
    "retention": insight_pages.retention,
    "campaigns": insight_pages.campaigns,
    "predictions": people_pages.predictions,
    "feedback": feedback_page.voice,
    "activation": activation_page.activation,
    "heatmaps": people_pages.heatmaps,
}


@cache
def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
    )
    env.filters["cell"] = cell
    env.filters["tile"] = tile_value
    env.filters["json"] = script_json
    return env


def script_json(value: Any) -> Markup:
    """JSON safe inside a <script> element: no `<`, `>` or `&` that could end it."""
    text = orjson.dumps(value, default=str).decode()
    for character, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(character, escape)
    return Markup(text)


async def _caller(request: Request) -> Caller | None:
    """The signed-in caller (a read or admin key in the cookie), else None."""
    key = request.cookies.get(COOKIE)
    if not key:
        return None
    try:
        caller = await off_loop(request, request.app.state.services.keys.identify, key)
        caller.check("read")
    except TouchpointsError:
        return None
    return caller


def _signin_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/dashboard/signin?next={quote(target)}", status_code=303)


#: Only our own scripts run (the figures are JSON data, not code); nothing frames us.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates().get_template(name).render(nav=NAV, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _last_day(request: Request) -> date:
    warehouse = request.app.state.services.warehouse
    latest = warehouse.table("events").timestamp.max().to_pyarrow().as_py()
    return latest.date() if latest is not None else datetime.now(UTC).date()


@router.get("/signin")
async def signin_form(request: Request, next: str = "/dashboard") -> HTMLResponse:
    return _render("signin.html", next=_safe_next(next), error=None)


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Check the key typed in (read or admin) and keep it in an HttpOnly cookie."""
    form = {k: v[-1] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
    key, target = form.get("key", "").strip(), _safe_next(form.get("next", "/dashboard"))
    services = request.app.state.services
    try:
        caller = await off_loop(request, services.keys.identify, key or None)
        caller.check("read")
    except TouchpointsError as exc:
        return _render("signin.html", 401, next=target, error=exc.message)
    response = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(
        COOKIE, key, httponly=True, samesite="strict", secure=secure, path="/dashboard"
    )
    return response


@router.post("/signout")
async def signout() -> Response:
    response = RedirectResponse("/dashboard/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


def _safe_next(target: str) -> str:
    """Only a path of the dashboard: never a redirect to another site."""
    return target if target.startswith("/dashboard") and "//" not in target else "/dashboard"


@router.get("/static/plotly.js")
async def plotly_js() -> Response:
    return Response(_plotly(), media_type="application/javascript", headers=_CACHED)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    files = {"dashboard.css": "text/css", "dashboard.js": "application/javascript"}
    if name not in files:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response((HERE / "static" / name).read_bytes(), media_type=files[name])


_CACHED = {"Cache-Control": "public, max-age=86400"}


@cache
def _plotly() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


@router.get("/funnel/dropped.csv")
async def dropped_csv(request: Request) -> Response:
    """The users who dropped off after a step of the funnel (an audience to act on)."""
    caller = await _caller(request)
    if caller is None:
        return _signin_redirect(request)
    query = {k: request.query_params.getlist(k) for k in request.query_params}
    warehouse = request.app.state.services.warehouse

    def run() -> Any:
        flat = {k: v[-1] for k, v in query.items()}
        return insight_pages.dropped_csv(
            warehouse, Filters.from_query(flat, lambda: _last_day(request)), query
        )

    try:
        result = await off_loop(request, run)
    except TouchpointsError as exc:
        return Response(exc.message, status_code=400, media_type="text/plain")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=result.columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    headers = {"Content-Disposition": 'attachment; filename="funnel_dropped.csv"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/live/stream")
async def live_stream(request: Request) -> Response:
    """Events as they are stored, as server-sent events (one JSON object each)."""
    if await _caller(request) is None:
        return Response("sign in first", status_code=401, media_type="text/plain")
    warehouse = request.app.state.services.warehouse
    services = request.app.state.services

    def newer(since: datetime) -> list[dict[str, Any]]:
        services.writer.flush()
        events = warehouse.table("events")
        recent = events.filter(events.received_at > since).order_by(ibis.desc("received_at"))
        columns = ("received_at", "timestamp", "source_id", "channel", "type", "event", "name",
                   "page_path", "message_id")  # fmt: skip
        return recent.limit(50).select(*columns).to_pyarrow().to_pylist()[::-1]

    async def stream() -> AsyncIterator[bytes]:
        since = datetime.now(UTC) - timedelta(minutes=10)
        yield b"retry: 2000\n\n"
        while not await request.is_disconnected():
            rows = await off_loop(request, newer, since)
            for row in rows:
                since = max(since, row["received_at"])
                yield b"data: " + orjson.dumps(row, default=str) + b"\n\n"
            await asyncio.sleep(1.0)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get("")
@router.get("/{page}")
async def page(request: Request, page: str = "") -> Response:
    """One page of the dashboard for the filters in the URL."""
    caller = await _caller(request)
    if caller is None:
        return _signin_redirect(request)
    titles = dict(NAV)
    if page not in titles:
        return _render("error.html", 404, title="Not found", message=f"no page {page!r}")
    query = {k: request.query_params.getlist(k) for k in request.query_params}
    flat = {k: v[-1] for k, v in query.items()}
    warehouse = request.app.state.services.warehouse
    base = f"{request.url.scheme}://{request.url.netloc}"

    def build() -> tuple[Filters, Page]:
        filters = Filters.from_query(flat, lambda: _last_day(request))
        if page == "customers":
            return filters, people_pages.customers(warehouse, filters, query, caller.key_id)
        if page == "install":
            return filters, people_pages.install(warehouse, base)
        if page == "live":
            return filters, Page("Live events")
        return filters, INSIGHTS[page](warehouse, filters, query)

    context = {"current": page, "fields": FIELDS, "caller": caller}
    try:
        filters, built = await off_loop(request, build)
    except TouchpointsError as exc:
        return _render(
            "error.html",
            status_of(exc),
            title=titles[page],
            message=exc.message,
            field=exc.field,
            **context,
        )
    template = {"live": "live.html", "install": "install.html"}.get(page, "page.html")
    return _render(template, page=built, filters=filters, **context)
