"""Answers to a hosted survey on their way in: which source they belong to, what a
posted form says, and the `events` rows the collector's writer stores.

The rows go through the collector's own steps — `normalize` (checks, free text masked),
the source's ip mode and consent collection mode — and are then handed to the writer,
which seals personal values and answers once they are durable, exactly as for
`/v1/track`.

Source: a survey's `source_id` when its definition names one; otherwise the built-in
source named `surveys` (channel `web`), made on the first answer. Its consent and ip
modes are set like any source's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from touchpoints.collect.consent import apply_mode
from touchpoints.collect.ip import IpMasker
from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.collect.sources import Source, add_source, find_source, list_sources
from touchpoints.collect.surveys import RESERVED
from touchpoints.errors import InvalidInput, NotFound
from touchpoints.warehouse import Warehouse

#: The source of answers to surveys that name none.
SURVEYS_SOURCE = "surveys"


def survey_source(warehouse: Warehouse, survey: Mapping[str, Any]) -> Source:
    """The source a survey's answers belong to (see the module docstring)."""
    wanted = survey.get("source_id")
    with warehouse.lock:
        if wanted:
            found = next((s for s in list_sources(warehouse) if s.source_id == wanted), None)
            if found is None:
                raise NotFound(
                    f"survey {survey['survey_id']!r} names source {wanted!r}, which no "
                    "longer exists",
                    field="source_id",
                )
            return found
        found = find_source(warehouse, SURVEYS_SOURCE)
        return found or add_source(warehouse, SURVEYS_SOURCE, "web").source


def form_answers(
    survey: Mapping[str, Any], pairs: Iterable[tuple[str, str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(answers, other fields) from a posted HTML form: a `multiple` question's answer
    is the list of its checked boxes, any other question's its last value; the other
    fields are the reserved names (anonymous_id, user_id, response_id)."""
    multiple = {q["id"] for q in survey["questions"] if q["type"] == "multiple"}
    answers: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for name, value in pairs:
        if name in RESERVED:
            extra[name] = value
        elif name in multiple:
            answers.setdefault(name, []).append(value)
        else:
            answers[name] = value
    return answers, extra


def answer_rows(
    messages: list[dict[str, Any]],
    source: Source,
    client_ip: str | None,
    ip_secret: bytes | None = None,
) -> list[dict[str, Any]]:
    """The `events` rows of a submission's messages under the source's ip and consent
    modes (`ip_secret` is needed when its ip mode is `hash`). Any invalid message raises
    InvalidInput before a row is made; rows the consent mode drops are left out."""
    envelope = Envelope(source.source_id, source.channel, now_us(), client_ip)
    masker = IpMasker(source.ip_mode, ip_secret)
    rows = []
    for index, message in enumerate(messages):
        try:
            row = normalize(message, envelope, kind="track")
        except InvalidInput as exc:
            raise InvalidInput(exc.message, field=exc.field or f"answers[{index}]") from None
        masker.row(row)
        kept = apply_mode(row, source.consent_mode)
        if kept is not None:
            rows.append(kept)
    return rows
