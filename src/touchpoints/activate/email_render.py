"""Email templates (Jinja2, sandboxed): the subject, a plain-text and an HTML body,
personalised with the person's traits, their coupon and recommendations.

Templates are written by operators, yet rendered with values that came from customers
(a first name), so the environment is sandboxed and the HTML body autoescaped. Links in
the HTML body become signed click redirects and an open pixel is added, so that clicks
and opens come back as events (see `touchpoints.activate.links`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from touchpoints.errors import InvalidInput

__all__ = ["Rendered", "check_templates", "render", "track_links"]

TEMPLATE_FIELDS = ("subject", "text", "html")
_PLAIN = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
_HTML = SandboxedEnvironment(autoescape=True, keep_trailing_newline=True)
_HREF = re.compile(r"""href\s*=\s*(["'])(https?://[^"']+)\1""", re.IGNORECASE)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def _env(field: str) -> SandboxedEnvironment:
    return _HTML if field == "html" else _PLAIN


@lru_cache(maxsize=256)
def _compiled(field: str, source: str) -> Template:
    """A template compiled once per text (a campaign renders it for every person)."""
    return _env(field).from_string(source)


def check_templates(templates: Mapping[str, Any]) -> None:
    """InvalidInput naming the template (and line) that does not compile."""
    for field in TEMPLATE_FIELDS:
        source = templates.get(field)
        if source is None:
            continue
        if not isinstance(source, str) or len(source) > 200_000:
            raise InvalidInput(
                f"{field} is template text (at most 200 000 characters)", field=field
            )
        try:
            _env(field).from_string(source)
        except TemplateSyntaxError as exc:
            raise InvalidInput(f"{field}, line {exc.lineno}: {exc.message}", field=field) from exc


def uses(templates: Mapping[str, Any], name: str) -> bool:
    """Does any template mention `name` (so that costly values are computed only then)?"""
    return any(name in (templates.get(f) or "") for f in TEMPLATE_FIELDS)


def render(templates: Mapping[str, Any], context: Mapping[str, Any]) -> Rendered:
    """The message's parts; InvalidInput naming the template that fails for this person."""
    parts: dict[str, str | None] = {}
    for field in TEMPLATE_FIELDS:
        source = templates.get(field)
        if source is None:
            parts[field] = None
            continue
        try:
            parts[field] = _compiled(field, source).render(**context)
        except (UndefinedError, SecurityError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{field} cannot be rendered: {exc}", field=field) from exc
    subject = " ".join((parts["subject"] or "").split())  # one line, no header injection
    return Rendered(subject, parts["text"] or "", parts["html"])


def track_links(
    body: str,
    click_url: Callable[[str], str],
    pixel_url: str | None,
    keep: Callable[[str], bool] = lambda url: False,
) -> str:
    """The HTML body with each http(s) link sent through its signed redirect (except
    those `keep` says to leave, such as the unsubscribe link) and, when given, the open
    pixel before </body> (or at the end)."""

    def swap(match: re.Match[str]) -> str:
        target = html.unescape(match.group(2))
        if keep(target):
            return match.group(0)
        return f'href="{html.escape(click_url(target), quote=True)}"'

    tracked = _HREF.sub(swap, body)
    if pixel_url is None:
        return tracked
    pixel = f'<img src="{html.escape(pixel_url, quote=True)}" width="1" height="1" alt="">'
    at = tracked.lower().rfind("</body>")
    return tracked + pixel if at < 0 else tracked[:at] + pixel + tracked[at:]
