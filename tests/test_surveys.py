"""Surveys defined in the product: definitions checked field by field; the hosted page
and the embeddable form over real HTTP (escaped, no script); answers posted as JSON and
as a form, checked (a bad one names its question and stores nothing), stored through
the collector's writer, and counted by the existing NPS/CSAT analysis exactly as an
independent computation says; the customer's voice on their profile; mention authors
linked only through a handle a profile carries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from typer.testing import CliRunner
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from tests.browser import Tab
from tests.live import LiveServer
from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.collect.surveys import (
    answer_events,
    delete_survey,
    get_survey,
    list_surveys,
    parse_survey,
    save_survey,
)
from touchpoints.errors import InvalidInput, NotFound
from touchpoints.identity.build import build
from touchpoints.insights import feedback, mention_authors
from touchpoints.models.customer_voice import voice_summary
from touchpoints.privacy.keys import add_key
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.schema import IDENTITIES, PROFILES
from touchpoints.warehouse.writer import open_writer

SURVEY: dict[str, Any] = {
    "survey_id": "post-purchase",
    "title": "<script>alert('x')</script> How did we do?",
    "description": "Two minutes & no more.",
    "questions": [
        {"id": "nps", "type": "nps", "text": "How likely are you to recommend us?",
         "required": True},
        {"id": "csat", "type": "csat", "text": "How satisfied are you with the delivery?"},
        {"id": "effort", "type": "ces", "text": "It was easy to order.", "low": "No",
         "high": "Yes"},
        {"id": "topics", "type": "multiple", "text": "What mattered most?",
         "choices": ["Price", "Delivery", "Service <b>"]},
        {"id": "again", "type": "single", "text": "Would you buy again?",
         "choices": ["Yes", "No"]},
        {"id": "why", "type": "text", "text": "Why?"},
    ],
}  # fmt: skip
ADMIN = {"Authorization": "Bearer test-admin-token"}
HTML = {"Accept": "text/html"}  # as a browser posts a form


def _bad(change: dict[str, Any], question: dict[str, Any] | None = None) -> dict[str, Any]:
    definition = json.loads(json.dumps(SURVEY)) | change
    if question is not None:
        definition["questions"][2] = question
    return definition


# -- definitions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        (_bad({"survey_id": "no spaces"}), "survey_id"),
        (_bad({"title": ""}), "title"),
        (_bad({"questions": []}), "questions"),
        (_bad({"colour": "red"}), "colour"),
        (_bad({}, {"id": "c", "type": "single", "text": "Pick"}), "questions[2].choices"),
        (_bad({}, {"id": "c", "type": "single", "text": "Pick", "choices": ["a", "a"]}),
         "questions[2].choices[1]"),
        (_bad({}, {"id": "c", "type": "nps", "text": "?", "choices": ["a", "b"]}),
         "questions[2].choices"),
        (_bad({}, {"id": "c", "type": "stars", "text": "?"}), "questions[2].type"),
        (_bad({}, {"id": "nps", "type": "text", "text": "?"}), "questions[2].id"),
        (_bad({}, {"id": "user_id", "type": "text", "text": "?"}), "questions[2].id"),
        (_bad({}, {"id": "c", "type": "text", "text": ""}), "questions[2].text"),
        (_bad({}, {"id": "c", "type": "text", "text": "?", "required": "yes"}),
         "questions[2].required"),
        (_bad({}, {"id": "c", "type": "text", "text": "?", "low": "no"}), "questions[2].low"),
        (_bad({}, {"id": "c", "type": "text", "text": "?", "size": 3}), "questions[2].size"),
        ("{not json", "definition"),
    ],
)  # fmt: skip
def test_a_bad_definition_names_its_field(definition: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_survey(definition)
    assert caught.value.field == field


def test_definitions_are_stored_listed_and_deleted(duck: Warehouse) -> None:
    saved = save_survey(duck, SURVEY)
    assert saved["questions"][0] == {**SURVEY["questions"][0], "low": "Not at all likely",
                                     "high": "Extremely likely"}  # fmt: skip
    assert get_survey(duck, "post-purchase") == saved
    changed = save_survey(duck, {**SURVEY, "title": "Thanks!"})
    assert [(s["survey_id"], s["title"], s["questions"]) for s in list_surveys(duck)] == [
        ("post-purchase", "Thanks!", 6)
    ]
    assert get_survey(duck, "post-purchase") == changed
    with pytest.raises(InvalidInput) as caught:
        save_survey(duck, {**SURVEY, "source_id": "src_nothing"})
    assert caught.value.field == "source_id"
    assert delete_survey(duck, "post-purchase") == {"deleted": "post-purchase"}
    with pytest.raises(NotFound):
        get_survey(duck, "post-purchase")


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({"nps": 11}, "answers.nps"),
        ({"nps": 7.5}, "answers.nps"),
        ({"nps": True}, "answers.nps"),
        ({"nps": 5, "csat": 0}, "answers.csat"),
        ({"nps": 5, "effort": "8"}, "answers.effort"),
        ({"nps": 5, "topics": ["Price", "Quality"]}, "answers.topics"),
        ({"nps": 5, "topics": ["Price", "Price"]}, "answers.topics"),
        ({"nps": 5, "again": "Maybe"}, "answers.again"),
        ({"nps": 5, "why": 42}, "answers.why"),
        ({"csat": 4}, "answers.nps"),  # required
        ({"nps": 5, "shoe_size": 9}, "answers.shoe_size"),
    ],
)
def test_a_bad_answer_names_its_question(answers: dict[str, Any], field: str) -> None:
    survey = parse_survey(SURVEY)
    with pytest.raises(InvalidInput) as caught:
        answer_events(survey, answers, user_id="u1")
    assert caught.value.field == field
    assert field.removeprefix("answers.") in caught.value.message


def test_answers_become_the_events_the_analysis_reads() -> None:
    survey = parse_survey(SURVEY)
    answers = {"nps": "9", "topics": ["Service <b>", "Price"], "why": "Mail ana@example.com"}
    made = answer_events(survey, answers, anonymous_id="a1", response_id="r1")
    assert [m["properties"]["question_id"] for m in made] == ["nps", "topics", "why"]
    assert made[0]["properties"] | {} == {
        "survey": "post-purchase", "question": "How likely are you to recommend us?",
        "question_id": "nps", "question_type": "nps", "response_id": "r1", "kind": "nps",
        "score": 9,
    }  # fmt: skip
    assert made[1]["properties"]["answer"] == ["Price", "Service <b>"]  # in the survey's order
    assert made[2]["properties"]["comment"] == "Mail [email]"
    again = answer_events(survey, answers, anonymous_id="a1", response_id="r1")
    assert [m["messageId"] for m in again] == [m["messageId"] for m in made]  # retries: one copy
    with pytest.raises(InvalidInput, match="anonymous_id or user_id"):
        answer_events(survey, answers)


# -- over HTTP ----------------------------------------------------------------------------


def _events(warehouse: Warehouse) -> list[dict[str, Any]]:
    rows = warehouse.query(
        "SELECT user_id, anonymous_id, source_id, properties FROM events "
        "WHERE event = 'Survey Responded' ORDER BY received_at, message_id"
    ).to_pylist()
    return [{**row, "properties": json.loads(row["properties"])} for row in rows]


#: (user, NPS score, CSAT score or None, comment) of the people who answer.
PEOPLE = [("u-ana", 3, 2, "The delivery was late and the box was broken, terrible."),
          ("u-ben", 10, 5, "Great service, I love it"), ("u-cy", 9, 4, None),
          ("u-dee", 7, None, None), ("u-eli", 0, 1, "Awful"), ("u-fay", 8, 4, None),
          ("u-gus", 10, None, None)]  # fmt: skip


def test_hosted_survey_round_trip(server: LiveServer, tmp_path: Path) -> None:
    url = server.url
    put = httpx.put(f"{url}/v1/surveys/post-purchase", json=SURVEY, headers=ADMIN, timeout=30)
    assert put.status_code == 200, put.text
    assert httpx.put(f"{url}/v1/surveys/other", json=SURVEY, headers=ADMIN).status_code == 400
    bad = httpx.put(f"{url}/v1/surveys/x", json={"title": "t", "questions": [{"id": "q"}]},
                    headers=ADMIN)  # fmt: skip
    assert bad.status_code == 400 and bad.json()["field"] == "questions[0].type"

    # the hosted page and the form: every question, everything escaped, no script
    for kind, framing in (("page", "frame-ancestors 'none'"), ("form", "frame-ancestors *")):
        shown = httpx.get(f"{url}/v1/surveys/post-purchase/{kind}?user_id=u-zed", timeout=30)
        assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
        html = shown.text
        assert "<script" not in html
        assert "script-src" not in shown.headers["content-security-policy"]
        assert framing in shown.headers["content-security-policy"]
        for question in SURVEY["questions"]:
            assert f'name="{question["id"]}"' in html
            assert question["text"] in html
        assert "Service &lt;b&gt;" in html and 'value="u-zed"' in html
        assert html.count('type="radio" name="nps"') == 11
        assert html.count('type="radio" name="effort"') == 7
    assert (
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        in httpx.get(f"{url}/v1/surveys/post-purchase/page").text
    )
    assert httpx.get(f"{url}/v1/surveys/nothing/page").status_code == 404

    # answers: JSON for some people, a posted form (ids in the query) for the others
    for i, (user, nps, csat, comment) in enumerate(PEOPLE):
        answers: dict[str, Any] = {"nps": nps, "csat": csat, "why": comment}
        answers = {k: v for k, v in answers.items() if v is not None}
        if i % 2:
            posted = httpx.post(f"{url}/v1/surveys/post-purchase/responses",
                                json={"answers": answers, "user_id": user}, timeout=30)  # fmt: skip
            assert posted.status_code == 200 and posted.json()["stored"] == len(answers)
        else:
            form = {k: str(v) for k, v in answers.items()} | {"topics": ["Price", "Delivery"]}
            posted = httpx.post(f"{url}/v1/surveys/post-purchase/responses?user_id={user}",
                                data=form, headers=HTML, timeout=30)  # fmt: skip
            assert posted.status_code == 200 and "Thank you" in posted.text, posted.text
    retry = {"answers": {"nps": 10}, "user_id": "u-gus", "response_id": "fixed-1"}
    for _ in range(2):  # a retried submission is stored once
        assert (
            httpx.post(f"{url}/v1/surveys/post-purchase/responses", json=retry).status_code == 200
        )
    before = len(_events(server.warehouse))

    # bad answers: 400 naming the question, nothing stored
    path = f"{url}/v1/surveys/post-purchase/responses"
    for body, field in (({"nps": 11}, "answers.nps"), ({"csat": 3}, "answers.nps"),
                        ({"nps": 5, "again": "Maybe"}, "answers.again")):  # fmt: skip
        refused = httpx.post(path, json={"answers": body, "user_id": "u-bad"})
        assert refused.status_code == 400 and refused.json()["field"] == field
    refused = httpx.post(path + "?embed=1", data={"nps": "ten", "why": "<i>hm</i>"}, headers=HTML)
    assert refused.status_code == 400 and "&#39;nps&#39;" in refused.text
    assert "&lt;i&gt;hm&lt;/i&gt;</textarea>" in refused.text  # the answer given, kept, escaped
    plain = httpx.post(path, data={"nps": "ten"})  # a form from a program: a JSON error
    assert plain.status_code == 400 and plain.json()["field"] == "answers.nps"
    assert httpx.post(path, content=b"{oops", headers={"content-type": "application/json"}
                      ).status_code == 400  # fmt: skip

    warehouse = server.warehouse
    stored = _events(warehouse)
    assert len(stored) == before == sum(
        1 + (c is not None) + (t is not None) + (i % 2 == 0) for i, (_, _, c, t) in
        enumerate(PEOPLE)
    ) + 1  # fmt: skip
    assert not [r for r in stored if r["user_id"] == "u-bad"]
    assert {r["source_id"] for r in stored} == {
        s["source_id"] for s in httpx.get(f"{url}/v1/admin/sources", headers=ADMIN).json()
        if s["name"] == "surveys"
    }  # fmt: skip

    # the existing analysis reads them: NPS and CSAT as computed independently
    scores = [nps for _, nps, _, _ in PEOPLE] + [10]
    expected = 100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores)
    row = feedback.nps(feedback.answers(warehouse)).to_pyarrow().to_pylist()[0]
    assert row["responses"] == len(scores) and row["nps"] == pytest.approx(expected)
    satisfied = feedback.satisfaction(feedback.answers(warehouse)).to_pyarrow().to_pylist()[0]
    csats = [c for _, _, c, _ in PEOPLE if c is not None]
    assert satisfied["csat_responses"] == len(csats)
    assert satisfied["csat"] == pytest.approx(sum(c >= 4 for c in csats) / len(csats))

    # the customer's voice on their profile
    _, reader = add_key(warehouse, "analyst", "read")
    with warehouse.lock:
        build(warehouse)
    shown = httpx.get(f"{url}/v1/profiles/u-ana", headers={"Authorization": f"Bearer {reader}"},
                      timeout=60)  # fmt: skip
    assert shown.status_code == 200, shown.text
    voice = shown.json()["voice"]
    assert voice["latest"]["nps"]["score"] == 3 and voice["latest"]["csat"]["score"] == 2
    assert voice["latest"]["ces"] is None
    assert (voice["answers"], voice["mentions"], voice["texts"]) == (4, 0, 1)
    vader = SentimentIntensityAnalyzer().polarity_scores(PEOPLE[0][3])["compound"]
    assert voice["mean_sentiment"] == pytest.approx(vader) and vader < 0
    page = httpx.get(f"{url}/dashboard/customers?q=u-ana", cookies={"tp_dashboard": reader})
    assert page.status_code == 200
    for tile, value in (("nps", "3"), ("csat", "2"), ("survey_answers", "4"), ("mentions", "0")):
        assert f'data-tile="{tile}" data-value="{value}"' in page.text
    assert f'data-tile="sentiment" data-value="{voice["mean_sentiment"]}"' in page.text


def test_cli_save_list_show_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The verbs call /v1/surveys (answered in process when no server runs)."""
    from touchpoints.cli.context import state
    from touchpoints.cli.feedback import feedback_app

    monkeypatch.setattr(state, "warehouse", f"duckdb:///{tmp_path / 'cli.duckdb'}")
    definition = tmp_path / "survey.json"
    definition.write_text(json.dumps(SURVEY))
    runner = CliRunner()
    saved = runner.invoke(feedback_app, ["surveys", "save", str(definition), "-f", "json"])
    assert saved.exit_code == 0, saved.output
    assert json.loads(saved.stdout) == {"saved": "post-purchase", "questions": 6,
                                        "page": "/v1/surveys/post-purchase/page"}  # fmt: skip
    listed = runner.invoke(feedback_app, ["surveys", "list", "-f", "json"])
    assert [s["survey_id"] for s in json.loads(listed.stdout)] == ["post-purchase"]
    shown = runner.invoke(feedback_app, ["surveys", "show", "post-purchase", "-f", "json"])
    assert json.loads(shown.stdout) == parse_survey(SURVEY)
    table = runner.invoke(feedback_app, ["surveys", "show", "post-purchase"])
    assert table.exit_code == 0 and "Delivery" in table.stdout
    definition.write_text(json.dumps({**SURVEY, "questions": [{"id": "a", "type": "x"}]}))
    refused = runner.invoke(feedback_app, ["surveys", "save", str(definition)])
    assert refused.exit_code != 0
    gone = runner.invoke(feedback_app, ["surveys", "delete", "post-purchase", "-f", "json"])
    assert json.loads(gone.stdout) == {"deleted": "post-purchase"}
    missing = runner.invoke(feedback_app, ["surveys", "show", "post-purchase"])
    assert missing.exit_code != 0


# -- mention authors ------------------------------------------------------------------------


def _store(warehouse: Warehouse, messages: list[dict[str, Any]]) -> None:
    envelope = Envelope("src_test", "web", now_us())
    writer = open_writer(warehouse)
    writer.write([normalize(m, envelope) for m in messages])
    writer.close()


def _identify(user: str, **traits: str) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "traits": traits}


def _mention(platform: str, handle: str, text: str) -> dict[str, Any]:
    properties = {"platform": platform, "author_handle": handle, "text": text}
    return {"type": "track", "event": "Brand Mentioned", "properties": properties,
            "anonymousId": f"social:{platform}:{handle}"}  # fmt: skip


def test_mentions_are_linked_only_through_a_handle_a_profile_carries(duck: Warehouse) -> None:
    _store(duck, [
        _identify("ana", instagram="@Ana.Example"),
        _identify("bob", instagram="bob_example"),
        _identify("cy", instagram="shared"), _identify("dee", instagram="shared"),
        _identify("eve", tiktok="eve.tok"),
        _mention("instagram", "ana.example", "Love my new boots from Acme!"),  # ana
        _mention("Instagram", "@ANA.EXAMPLE", "Acme is great"),  # ana: case and @ aside
        _mention("instagram", "ana_example", "Acme boots hurt"),  # look-alike: nobody
        _mention("instagram", "bob_examp1e", "meh"),  # look-alike of bob: nobody
        _mention("twitter", "bob_example", "Acme support is slow"),  # bob has no twitter
        _mention("instagram", "shared", "two people carry it"),  # ambiguous: nobody
        _mention("tiktok", "Eve.Tok", "Acme haul"),  # eve, through her identity kind
    ])  # fmt: skip
    with duck.lock:
        build(duck, settings={"traits": ["tiktok"]})
    linked = mention_authors.mentions(duck).to_pyarrow().to_pylist()
    customers = {
        row["identifier"].removeprefix("user_id:"): row["customer_id"]
        for row in duck.table("identities").to_pyarrow().to_pylist()
        if row["kind"] == "user_id"
    }
    owner = {v: k for k, v in customers.items()}
    found = sorted(
        (json.loads(r["properties"])["author_handle"], owner.get(r[mention_authors.AUTHOR]))
        for r in linked
    )
    assert found == [
        ("@ANA.EXAMPLE", "ana"), ("Eve.Tok", "eve"), ("ana.example", "ana"),
        ("ana_example", None), ("bob_examp1e", None), ("bob_example", None), ("shared", None),
    ]  # fmt: skip
    voice = voice_summary(duck, customers["ana"])
    assert (voice["mentions"], voice["texts"], voice["answers"]) == (2, 2, 0)
    vader = SentimentIntensityAnalyzer()
    texts = ["Love my new boots from Acme!", "Acme is great"]
    mean = sum(vader.polarity_scores(t)["compound"] for t in texts) / 2
    assert voice["mean_sentiment"] == pytest.approx(mean)
    assert voice_summary(duck, customers["bob"])["mentions"] == 0


def test_linking_reads_profiles_and_identities_as_a_build_leaves_them(
    duck: Warehouse,
) -> None:
    """Trait values with white space and "@", identifiers of a configured kind, written
    here directly. (The same expressions ran on Spark too, but a Spark session costs more
    than this file's time budget.)"""
    warehouse = duck
    _store(warehouse, [_mention("instagram", "@Ana.Example", "Acme rocks"),
                       _mention("instagram", "ana_example", "Acme rocks"),
                       _mention("tiktok", "eve.tok", "Acme haul")])  # fmt: skip
    now = datetime.now(UTC)
    profiles = [
        {"customer_id": c, "traits": json.dumps({"instagram": h}), "built_at": now}
        for c, h in (("cus_ana", " @ana.example"), ("cus_bob", "bob"))
    ]
    identities = [{"identifier": "tiktok:Eve.Tok", "kind": "tiktok", "customer_id": "cus_eve",
                   "quarantined": False, "resolved_at": now}]  # fmt: skip
    warehouse.insert("profiles", pa.Table.from_pylist(profiles, schema=PROFILES.to_pyarrow()))
    warehouse.insert("identities", pa.Table.from_pylist(identities, IDENTITIES.to_pyarrow()))
    rows = mention_authors.mentions(warehouse).to_pyarrow().to_pylist()
    found = sorted((r["platform"], r["handle"], r[mention_authors.AUTHOR]) for r in rows)
    assert found == [("instagram", "ana.example", "cus_ana"), ("instagram", "ana_example", None),
                     ("tiktok", "eve.tok", "cus_eve")]  # fmt: skip


def test_the_hosted_form_in_a_browser(server: LiveServer, tab: Tab) -> None:
    """A person fills in the hosted page in Chromium: no script, no console error, and
    the answers arrive as events."""
    put = httpx.put(f"{server.url}/v1/surveys/post-purchase", json=SURVEY, headers=ADMIN)
    assert put.status_code == 200
    page = tab.page
    page.goto(f"{server.url}/v1/surveys/post-purchase/page?user_id=u-web")
    page.check("input[name=nps][value='9']")
    page.check("input[name=topics][value='Delivery']")
    page.fill("textarea[name=why]", "Quick delivery, thanks")
    page.click("button[type=submit]")
    page.wait_for_selector(".thanks", timeout=10_000)
    assert tab.errors == [], tab.errors
    stored = [r for r in _events(server.warehouse) if r["user_id"] == "u-web"]
    assert sorted((r["properties"]["question_id"], r["properties"].get("score"),
                   r["properties"].get("answer"), r["properties"].get("comment"))
                  for r in stored) == [
        ("nps", 9, None, None), ("topics", None, ["Delivery"], None),
        ("why", None, None, "Quick delivery, thanks"),
    ]  # fmt: skip
