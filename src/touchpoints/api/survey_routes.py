"""Surveys over HTTP. Saving and deleting a definition need an admin key, reading them a
read key. The page, the embeddable form and the answers are public, like the write key
of a web source: whoever has the survey's link may answer it.

- `GET /v1/surveys/{id}/page`: the hosted page (a link in an email, a QR code).
- `GET /v1/surveys/{id}/form`: the same form without the page around it, to put in an
  `<iframe>` on any site. Neither has any script; the form posts plain HTML.
- `POST /v1/surveys/{id}/responses`: the answers, as JSON (`{"answers": {...},
  "anonymous_id" | "user_id", "response_id", "context"}`) or a posted form; the ids may
  also come in the query (`?user_id=…`, as the page passes them on). Every answer is
  checked before anything is stored; a bad one is a 400 naming `answers.<question id>`.
  The events are stored through the collector's writer (durable, sealed, deduplicated)
  under the survey's source (`touchpoints.collect.survey_intake`).
"""

from __future__ import annotations

import asyncio
import uuid
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Body, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, Response

from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.collect.survey_intake import answer_rows, form_answers, survey_source
from touchpoints.collect.surveys import (
    MAX_TEXT,
    SCALES,
    answer_events,
    delete_survey,
    get_survey,
    list_surveys,
    save_survey,
)
from touchpoints.errors import InvalidInput, PayloadTooLarge

router = APIRouter(prefix="/v1/surveys", tags=["surveys"])
TEMPLATES = Path(__file__).parent / "templates"
#: The most a submission's body may hold (fifty questions of long text fit).
MAX_BODY = 256 * 1024
FORM = "application/x-www-form-urlencoded"
#: No script runs; styles are the page's own; the form posts only to us. The hosted page
#: is not framed; the form (and what its post answers) may be framed by any site.
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors ")  # fmt: skip
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}  # fmt: skip


@cache
def templates() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def _html(name: str, embedded: bool, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates().get_template(name).render(embedded=embedded, **context)
    csp = _CSP + ("*" if embedded else "'none'")
    return HTMLResponse(html, status, headers={**HEADERS, "Content-Security-Policy": csp})


def _form_page(
    survey: dict[str, Any], embedded: bool, hidden: dict[str, str],
    values: dict[str, Any] | None = None, error: str | None = None, status: int = 200,
) -> HTMLResponse:  # fmt: skip
    action = f"/v1/surveys/{survey['survey_id']}/responses" + ("?embed=1" if embedded else "")
    hidden = {**hidden, "response_id": hidden.get("response_id") or uuid.uuid4().hex}
    return _html("survey.html", embedded, status, survey=survey, action=action, hidden=hidden,
                 values=values or {}, error=error, scales=SCALES, max_text=MAX_TEXT)  # fmt: skip


def _ids(request: Request) -> dict[str, str]:
    query = request.query_params
    return {k: query[k] for k in ("anonymous_id", "user_id") if query.get(k)}


@router.get("")
async def get_surveys(request: Request) -> Response:
    """The surveys: id, title, number of questions, source, created and updated."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, list_surveys, warehouse))


@router.get("/{survey_id}")
async def get_one(survey_id: str, request: Request) -> Response:
    """A survey's definition."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, get_survey, warehouse, survey_id))


@router.put("/{survey_id}")
async def put_survey(
    survey_id: str, request: Request, definition: dict[str, Any] = Body(...)
) -> Response:
    """Create or replace a survey (docs/feedback.md has the definition); the survey_id
    in the body, if any, must be the one in the path. Errors name the bad field."""
    await require(request, "admin")
    if definition.get("survey_id", survey_id) != survey_id:
        raise InvalidInput("the survey_id in the body differs from the path", field="survey_id")
    warehouse = request.app.state.services.warehouse
    saved = await off_loop(request, save_survey, warehouse, {**definition, "survey_id": survey_id})
    return JSON(saved)


@router.delete("/{survey_id}")
async def remove_survey(survey_id: str, request: Request) -> Response:
    """Delete a survey's definition; the answers already given stay (they are events)."""
    await require(request, "admin")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, delete_survey, warehouse, survey_id))


@router.get("/{survey_id}/page", response_class=HTMLResponse)
async def survey_page(survey_id: str, request: Request) -> Response:
    """The hosted survey page (public). `?user_id=` or `?anonymous_id=` say who answers;
    without either, the answers get a new anonymous id."""
    warehouse = request.app.state.services.warehouse
    survey = await off_loop(request, get_survey, warehouse, survey_id)
    return _form_page(survey, False, _ids(request))


@router.get("/{survey_id}/form", response_class=HTMLResponse)
async def survey_form(survey_id: str, request: Request) -> Response:
    """The survey's form alone, for an `<iframe>` on another site (public)."""
    warehouse = request.app.state.services.warehouse
    survey = await off_loop(request, get_survey, warehouse, survey_id)
    return _form_page(survey, True, _ids(request))


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise PayloadTooLarge(f"the body is over {MAX_BODY} bytes", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


def _client_ip(request: Request) -> str | None:
    collector = request.app.state.services.collector
    if collector.settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "").split(",", 1)[0].strip()
        if forwarded:
            return forwarded
    return request.client.host if request.client else None


#: The JSON body of an answer, for the API description (a posted form carries the same
#: fields: one per question, named by its id, and the ids).
RESPONSE_BODY = {
    "type": "object",
    "required": ["answers"],
    "properties": {
        "answers": {"type": "object", "description": "question id -> answer",
                    "additionalProperties": True},
        "anonymous_id": {"type": "string"},
        "user_id": {"type": "string"},
        "response_id": {"type": "string", "description": "the same id makes a retry harmless"},
        "context": {"type": "object", "description": "as a Segment message's context"},
    },
}  # fmt: skip


@router.post(
    "/{survey_id}/responses",
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": RESPONSE_BODY}}}},
)
async def post_responses(survey_id: str, request: Request) -> Response:
    """Answer a survey (public): JSON or a posted form; see the module docstring. The
    answer is `{"success", "response_id", "stored"}`, or, for a form posted by a browser
    (one that accepts text/html), the survey's thank-you page (a bad answer: the form
    again, with the error)."""
    services = request.app.state.services
    warehouse = services.warehouse
    survey = await off_loop(request, get_survey, warehouse, survey_id)
    as_form = request.headers.get("content-type", "").split(";")[0].strip().lower() == FORM
    as_page = as_form and "text/html" in request.headers.get("accept", "")
    embedded = request.query_params.get("embed") == "1"
    raw = await _body(request)
    answers: Any
    if as_form:
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        answers, fields = form_answers(survey, pairs)
        context: Any = None
    else:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidInput("the body is not JSON (or post a form)", field="body") from None
        if not isinstance(document, dict):
            raise InvalidInput("the body is a JSON object with answers", field="body")
        answers, context = document.get("answers"), document.get("context")
        if context is not None and not isinstance(context, dict):
            raise InvalidInput("context is a JSON object", field="context")
        fields = {k: document[k] for k in ("anonymous_id", "user_id", "response_id")
                  if document.get(k) is not None}  # fmt: skip
    ids = {**_ids(request), **fields}
    if not ids.get("anonymous_id") and not ids.get("user_id"):
        ids["anonymous_id"] = f"survey-{uuid.uuid4().hex}"
    agent = request.headers.get("user-agent")
    context = {**({"userAgent": agent} if agent else {}), **(context or {})}
    try:
        messages = answer_events(survey, answers, anonymous_id=ids.get("anonymous_id"),
                                 user_id=ids.get("user_id"), response_id=ids.get("response_id"),
                                 context=context)  # fmt: skip
    except InvalidInput as exc:
        if not as_page:
            raise
        return _form_page(survey, embedded, {k: str(v) for k, v in ids.items()},
                          answers, exc.message, 400)  # fmt: skip
    stored = await _store(request, survey, messages)
    if as_page:
        return _html("survey_thanks.html", embedded, survey=survey)
    response_id = messages[0]["properties"]["response_id"]
    return JSON({"success": True, "response_id": response_id, "stored": stored})


async def _store(request: Request, survey: dict[str, Any], messages: list[dict]) -> int:
    """Write the messages as the collector does: rows checked and masked first, then
    handed to the writer, answering once they are durable."""
    services = request.app.state.services

    def prepare() -> tuple[Any, bytes | None]:
        source = survey_source(services.warehouse, survey)
        secret = services.collector.registry.ip_secret() if source.ip_mode == "hash" else None
        return source, secret

    source, secret = await off_loop(request, prepare)
    services.collector.limiter.take(source.source_id, len(messages))
    rows = answer_rows(messages, source, _client_ip(request), secret)
    if rows:
        await asyncio.wrap_future(services.writer.submit(rows, []))
    return len(rows)
