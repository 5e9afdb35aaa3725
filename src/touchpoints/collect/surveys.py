"""Surveys defined in the product: their definitions, and a person's answers turned into
the "Survey Responded" events the feedback analysis reads (`touchpoints.insights.feedback`).

A definition is JSON (see docs/feedback.md)::

    {"survey_id": "post-purchase", "title": "How did we do?",
     "questions": [{"id": "nps", "type": "nps", "text": "How likely …?", "required": true},
                   {"id": "why", "type": "text", "text": "What is the main reason?"}]}

Question types and the answers they take: `nps` a whole number 0–10, `csat` 1–5, `ces`
1–7 (the scales the analysis reads; `low` and `high` say what the ends mean), `single`
one of its `choices`, `multiple` a list of its `choices`, `text` free text (emails and
phone numbers masked, `text_privacy`).

Each answered question is one event, with the properties the importer and the tracker
use: `survey` (the survey id), `question` (its text), `question_id`, `question_type`,
`response_id` (shared by the answers of one submission), and `kind` + `score` for the
scored types, `answer` for choices, `comment` for free text. Definitions live in the
`surveys` table; only the functions under "storage" touch it.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from touchpoints.collect.text_privacy import mask_text
from touchpoints.errors import InvalidInput
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.definitions import load_definition, store_definition

SURVEYS = "surveys"
SURVEY_RESPONDED = "Survey Responded"
#: The range of each scored type: the scales `touchpoints.insights.feedback` reads.
SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
CHOICE_TYPES = ("single", "multiple")
TYPES = (*SCALES, *CHOICE_TYPES, "text")
SURVEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
QUESTION_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
RESPONSE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Names a form posts beside the answers; no question may take them.
RESERVED = frozenset({"anonymous_id", "user_id", "response_id", "context"})
MAX_QUESTIONS, MAX_CHOICES, MAX_TEXT, MAX_ID = 50, 50, 2000, 200
_SURVEY_KEYS = ("survey_id", "title", "description", "thanks", "source_id", "questions")
_QUESTION_KEYS = ("id", "type", "text", "required", "choices", "low", "high")
#: What the ends of each scale say unless a question names its own `low` and `high`.
SCALE_LABELS: dict[str, tuple[str, str]] = {
    "nps": ("Not at all likely", "Extremely likely"),
    "csat": ("Very dissatisfied", "Very satisfied"),
    "ces": ("Strongly disagree", "Strongly agree"),
}


# -- definitions ------------------------------------------------------------------------


def _text(value: Any, field: str, most: int, *, required: bool = True) -> str | None:
    if (value is None or value == "") and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field} is required: a non-empty string", field=field)
    if len(value) > most or any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise InvalidInput(f"{field} is at most {most} printable characters", field=field)
    return value.strip()


def _unknown(data: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in known:
            raise InvalidInput(
                f"unknown field {key!r} (known: {', '.join(known)})", field=f"{where}{key}"
            )


def _choices(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_CHOICES:
        raise InvalidInput(f"{field} is a list of 2 to {MAX_CHOICES} choices", field=field)
    found = [_text(v, f"{field}[{i}]", 200) for i, v in enumerate(value)]
    seen: set[str] = set()
    for index, choice in enumerate(found):
        if choice in seen:
            raise InvalidInput(f"choice {choice!r} appears twice", field=f"{field}[{index}]")
        seen.add(str(choice))
    return [str(c) for c in found]


def _question(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput("a question is a JSON object", field=where)
    _unknown(value, _QUESTION_KEYS, f"{where}.")
    qid = value.get("id")
    if not isinstance(qid, str) or not QUESTION_ID.match(qid) or qid in RESERVED:
        raise InvalidInput(
            "id is 1-40 lower-case letters, digits or _, starting with a letter, and not "
            + ", ".join(sorted(RESERVED)),
            field=f"{where}.id",
        )
    kind = value.get("type")
    if kind not in TYPES:
        raise InvalidInput(
            f"type must be one of {', '.join(TYPES)}, not {str(kind)[:40]!r}", field=f"{where}.type"
        )
    required = value.get("required", False)
    if not isinstance(required, bool):
        raise InvalidInput("required is true or false", field=f"{where}.required")
    question = {"id": qid, "type": kind, "text": _text(value.get("text"), f"{where}.text", 500),
                "required": required}  # fmt: skip
    for end, default in zip(("low", "high"), SCALE_LABELS.get(kind, ()), strict=False):
        question[end] = _text(value.get(end), f"{where}.{end}", 60, required=False) or default
    if kind not in SCALES:
        for end in ("low", "high"):
            if end in value:
                raise InvalidInput(
                    f"{end} labels the end of a scale: only for nps, csat and ces questions",
                    field=f"{where}.{end}",
                )
    if kind in CHOICE_TYPES:
        question["choices"] = _choices(value.get("choices"), f"{where}.choices")
    elif "choices" in value:
        raise InvalidInput(
            f"choices are only for single and multiple questions, not {kind}",
            field=f"{where}.choices",
        )
    return question


def parse_survey(definition: str | Mapping[str, Any]) -> dict[str, Any]:
    """A definition (JSON text or a dict) checked field by field and normalised; every
    error names the bad field (`questions[2].choices`)."""
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"the definition is not JSON: {exc.msg}", field="definition"
            ) from None
    if not isinstance(definition, Mapping):
        raise InvalidInput("a survey definition is a JSON object", field="definition")
    _unknown(definition, _SURVEY_KEYS, "")
    survey_id = definition.get("survey_id")
    if not isinstance(survey_id, str) or not SURVEY_ID.match(survey_id):
        raise InvalidInput(
            "survey_id is 1-64 letters, digits, _ or -, starting with a letter or digit",
            field="survey_id",
        )
    survey: dict[str, Any] = {"survey_id": survey_id,
                              "title": _text(definition.get("title"), "title", 200)}  # fmt: skip
    for key, most in (("description", MAX_TEXT), ("thanks", 500), ("source_id", 64)):
        found = _text(definition.get(key), key, most, required=False)
        if found is not None:
            survey[key] = found
    questions = definition.get("questions")
    if not isinstance(questions, list) or not 1 <= len(questions) <= MAX_QUESTIONS:
        raise InvalidInput(f"questions is a list of 1 to {MAX_QUESTIONS}", field="questions")
    parsed, seen = [], set()
    for index, value in enumerate(questions):
        question = _question(value, f"questions[{index}]")
        if question["id"] in seen:
            raise InvalidInput(
                f"question id {question['id']!r} is used twice", field=f"questions[{index}].id"
            )
        seen.add(question["id"])
        parsed.append(question)
    survey["questions"] = parsed
    return survey


# -- storage ----------------------------------------------------------------------------


def save_survey(warehouse: Warehouse, definition: str | Mapping[str, Any]) -> dict[str, Any]:
    """Create or replace a survey; returns the definition as stored. A `source_id` must
    name an existing source (its answers are that source's events)."""
    survey = parse_survey(definition)
    with warehouse.lock:
        if "source_id" in survey:
            sources = warehouse.table("sources")
            known = sources.filter(sources.source_id == survey["source_id"]).count()
            if not known.to_pyarrow().as_py():
                raise InvalidInput(f"no source {survey['source_id']!r}", field="source_id")
        store_definition(warehouse, SURVEYS, "survey_id", survey["survey_id"], survey)
    return survey


def get_survey(warehouse: Warehouse, survey_id: str) -> dict[str, Any]:
    """The definition of survey `survey_id` (`NotFound` when there is none)."""
    return load_definition(warehouse, SURVEYS, "survey_id", survey_id, "survey")


def list_surveys(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Every survey: id, title, number of questions, source, created and updated."""
    rows = warehouse.table(SURVEYS).order_by("survey_id").to_pyarrow().to_pylist()
    out = []
    for row in rows:
        survey = json.loads(row["definition"])
        out.append({"survey_id": row["survey_id"], "title": survey["title"],
                    "questions": len(survey["questions"]), "source_id": survey.get("source_id"),
                    "created_at": row["created_at"], "updated_at": row["updated_at"]})  # fmt: skip
    return out


def delete_survey(warehouse: Warehouse, survey_id: str) -> dict[str, Any]:
    """Remove a survey's definition (its answers, being events, stay)."""
    with warehouse.lock:
        get_survey(warehouse, survey_id)
        warehouse.delete_where(SURVEYS, lambda t: t.survey_id == survey_id)
    return {"deleted": survey_id}


# -- answers ----------------------------------------------------------------------------


def _score(question: dict[str, Any], value: Any, field: str) -> int:
    low, high = SCALES[question["type"]]
    number: Any = value
    whole_text = isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value)
    if whole_text or (isinstance(value, float) and value.is_integer()):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
        raise InvalidInput(
            f"question {question['id']!r} takes a whole number from {low} to {high}, "
            f"not {str(value)[:40]!r}",
            field=field,
        )
    return number


def _choice(question: dict[str, Any], value: Any, field: str) -> str:
    if value not in question["choices"]:
        raise InvalidInput(
            f"question {question['id']!r} takes one of {', '.join(question['choices'])}, "
            f"not {str(value)[:40]!r}",
            field=field,
        )
    return str(value)


def _answer(question: dict[str, Any], value: Any, field: str) -> dict[str, Any] | None:
    """The properties an answer adds, or None when it is empty (not answered)."""
    kind = question["type"]
    if value is None or value == "" or value == []:
        return None
    if kind in SCALES:
        return {"kind": kind, "score": _score(question, value, field)}
    if kind == "single":
        return {"answer": _choice(question, value, field)}
    if kind == "multiple":
        values = value if isinstance(value, list) else [value]
        chosen = [_choice(question, v, field) for v in values]
        if len(set(chosen)) != len(chosen):
            raise InvalidInput(f"question {question['id']!r}: a choice is given twice", field=field)
        return {"answer": [c for c in question["choices"] if c in chosen]}
    if not isinstance(value, str):
        raise InvalidInput(f"question {question['id']!r} takes text", field=field)
    if len(value) > MAX_TEXT:
        raise InvalidInput(
            f"question {question['id']!r} takes at most {MAX_TEXT} characters", field=field
        )
    text = value.strip()
    return {"comment": mask_text(text)} if text else None


def _identifier(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_ID or any(ord(c) < 32 for c in value):
        raise InvalidInput(f"{field} is at most {MAX_ID} printable characters", field=field)
    return value


def answer_events(
    survey: Mapping[str, Any],
    answers: Mapping[str, Any],
    *,
    anonymous_id: str | None = None,
    user_id: str | None = None,
    response_id: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The "Survey Responded" track messages of one submission, one per answered
    question, after checking every answer (the range of a score, a choice among the
    question's choices, required questions answered, no unknown question): a bad one
    raises InvalidInput naming `answers.<question id>`, and no message is made.
    The same `response_id` (generated when not given) gives the same message ids, so
    a retried submission is stored once."""
    if not isinstance(answers, Mapping):
        raise InvalidInput("answers is an object of question id to answer", field="answers")
    anonymous_id = _identifier(anonymous_id, "anonymous_id")
    user_id = _identifier(user_id, "user_id")
    if anonymous_id is None and user_id is None:
        raise InvalidInput("anonymous_id or user_id is required", field="anonymous_id")
    if response_id is None:
        response_id = uuid.uuid4().hex
    elif not isinstance(response_id, str) or not RESPONSE_ID.match(response_id):
        raise InvalidInput("response_id is 1-64 letters, digits, _ or -", field="response_id")
    questions = {q["id"]: q for q in survey["questions"]}
    for key in answers:
        if key not in questions:
            raise InvalidInput(
                f"survey {survey['survey_id']!r} has no question {str(key)[:40]!r}",
                field=f"answers.{str(key)[:40]}",
            )
    messages = []
    for qid, question in questions.items():
        field = f"answers.{qid}"
        given = _answer(question, answers.get(qid), field)
        if given is None:
            if question["required"]:
                raise InvalidInput(
                    f"question {qid!r} ({question['text']}) is required", field=field
                )
            continue
        key = "\x1f".join((survey["survey_id"], response_id, qid)).encode()
        message: dict[str, Any] = {
            "type": "track",
            "event": SURVEY_RESPONDED,
            "messageId": "survey-" + hashlib.sha256(key).hexdigest()[:40],
            "properties": {
                "survey": survey["survey_id"],
                "question": question["text"],
                "question_id": qid,
                "question_type": question["type"],
                "response_id": response_id,
                **given,
            },
        }
        if user_id is not None:
            message["userId"] = user_id
        if anonymous_id is not None:
            message["anonymousId"] = anonymous_id
        if context:
            message["context"] = dict(context)
        messages.append(message)
    if not messages:
        raise InvalidInput("no question was answered", field="answers")
    return messages
