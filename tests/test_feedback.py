"""Surveys: free text masked on the way in, NPS (with its interval checked against an
independent computation), CSAT and CES, the response rate, what detractors did before
answering, and the reports over REST (read key), the CLI and the customer profile."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.insights_data import event, write_events
from tests.live import LiveServer
from touchpoints.collect.importers import import_file
from touchpoints.collect.text_privacy import mask_properties, mask_text
from touchpoints.identity.build import build
from touchpoints.identity.lookup import profile
from touchpoints.insights import feedback
from touchpoints.insights.frame import Scope
from touchpoints.models.reports import run_report
from touchpoints.privacy.keys import add_key
from touchpoints.warehouse import Warehouse

SCORES = [10, 9, 9, 8, 7, 3, 0, 6, 10, 10, 5, 9]  # 6 promoters, 2 passives, 4 detractors


def _answers(scores: list[int], survey: str = "NPS Q1", prefix: str = "u") -> list[dict]:
    return [
        event(f"{prefix}{i}", 3600 * i, "Survey Responded",
              properties={"score": s, "survey": survey, "comment": "ok"})
        for i, s in enumerate(scores)
    ]  # fmt: skip


# -- masking --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Mail jane.doe@example.co.uk now", "Mail [email] now"),
        ("Call +44 20 7946 0958 or (555) 123-4567.", "Call [phone] or [phone]."),
        ("ring 0612345678 after 5", "ring [phone] after 5"),
        ("Order 12 of 2026-03-14 cost 1299.00, ref 1234567", None),  # numbers, not phones
    ],
)
def test_emails_and_phones_in_text_are_masked(text: str, masked: str | None) -> None:
    assert mask_text(text) == (masked or text)


def test_masking_touches_only_free_text_of_feedback_events() -> None:
    props = {"comment": "x@y.com", "survey": "a@b.com"}
    assert mask_properties("Survey Responded", props) == {"comment": "[email]", "survey": "a@b.com"}
    assert mask_properties("Order Completed", props) is props


def test_imported_comments_and_mentions_are_stored_masked(duck: Warehouse, tmp_path: Path) -> None:
    answers = tmp_path / "answers.csv"
    answers.write_text(
        "email,score,comment,timestamp,survey\n"
        'ana@example.com,2,"Late again, call me on +1 415 555 0100 or ana@example.com",'
        "2026-03-02T10:00:00Z,NPS\n"
    )
    posts = tmp_path / "posts.csv"
    posts.write_text(
        "platform,author_handle,text,timestamp\n"
        "x,@bob,DM me at bob@mail.example or 07700 900123,2026-03-02T11:00:00Z\n"
    )
    import_file(duck, "feedback", answers)
    import_file(duck, "mentions", posts)
    texts = [r["text"] for r in run_report(duck, "sentiment", {"view": "texts"}).rows]
    assert sorted(texts) == [
        "DM me at [email] or [phone]",
        "Late again, call me on [phone] or [email]",
    ]


# -- NPS --------------------------------------------------------------------------------


def _independent(scores: list[int]) -> tuple[float, float]:
    """NPS and its 95% margin from the ±1/0 coding of the answers (the delta method for a
    multinomial: the NPS is 100 × the mean of the coding)."""
    coded = np.array([1 if s >= 9 else -1 if s <= 6 else 0 for s in scores], dtype=float)
    return 100 * coded.mean(), 100 * 1.959963984540054 * coded.std(ddof=0) / np.sqrt(len(coded))


def test_nps_and_its_interval(warehouse: Warehouse) -> None:
    write_events(warehouse, _answers(SCORES))
    row = feedback.nps(feedback.answers(warehouse)).to_pyarrow().to_pylist()[0]
    assert (row["responses"], row["promoters"], row["passives"], row["detractors"]) == (12, 6, 2, 4)
    score, margin = _independent(SCORES)
    assert row["nps"] == pytest.approx(score) == pytest.approx(100 * 2 / 12)
    assert row["nps_low"] == pytest.approx(score - margin)
    assert row["nps_high"] == pytest.approx(score + margin)
    # and against a seeded bootstrap of the same answers (within a tenth of the margin)
    rng = np.random.default_rng(7)
    coded = np.array([1 if s >= 9 else -1 if s <= 6 else 0 for s in SCORES])
    boot = 100 * rng.choice(coded, (20_000, len(coded))).mean(axis=1)
    assert boot.std() * 1.96 == pytest.approx(margin, rel=0.1)


def test_nps_edge_cases(duck: Warehouse) -> None:
    empty = feedback.nps(feedback.answers(duck)).to_pyarrow().to_pylist()
    assert empty == [{"responses": 0, "promoters": 0, "passives": 0, "detractors": 0,
                      "nps": None, "nps_low": None, "nps_high": None,
                      "promoter_share": None, "detractor_share": None}]  # fmt: skip
    assert run_report(duck, "nps", {"period": "week"}).rows == []
    write_events(duck, _answers([9, 10, 10, 9]))
    row = run_report(duck, "nps", {}).rows[0]
    assert (row["nps"], row["nps_low"], row["nps_high"]) == (100.0, 100.0, 100.0)


def test_nps_by_period_and_field_and_kinds_told_by_name(duck: Warehouse) -> None:
    rows = [
        *_answers([10, 0]),
        event("w1", 8 * 86400, "Survey Responded", properties={"score": 9, "survey": "NPS Q1"},
              channel="app"),
        event("z1", 60, "Survey Responded",
              properties={"score": 2, "question": "Were you satisfied?"}),
        event("z2", 60, "Survey Responded", properties={"score": "n/a", "survey": "NPS Q1"}),
    ]  # fmt: skip
    write_events(duck, rows)
    by_week = run_report(duck, "nps", {"period": "week", "by": "channel"}).rows
    assert [(str(r["period"]), r["channel"], r["responses"], r["nps"]) for r in by_week] == [
        ("2026-03-02", "web", 2, 0.0), ("2026-03-09", "app", 1, 100.0)
    ]  # fmt: skip


def test_csat_and_ces(warehouse: Warehouse) -> None:
    rows = [event(f"c{i}", i, "Survey Responded", properties={"score": s, "kind": "csat"})
            for i, s in enumerate([5, 4, 3, 1, 5])]  # fmt: skip
    rows += [event(f"e{i}", i, "Survey Responded", properties={"score": s, "survey": "Effort"})
             for i, s in enumerate([2, 3, 7])]  # fmt: skip
    write_events(warehouse, rows)
    row = feedback.satisfaction(feedback.answers(warehouse)).to_pyarrow().to_pylist()[0]
    assert (row["csat_responses"], row["satisfied"]) == (5, 3)
    assert row["csat"] == pytest.approx(0.6) and row["csat_mean"] == pytest.approx(3.6)
    assert row["ces_responses"] == 3 and row["ces_mean"] == pytest.approx(4.0)


def test_response_rate_and_what_detractors_did(duck: Warehouse) -> None:
    rows = _answers([10, 9, 2, 3, 1])
    rows += [event(f"u{i}", 3600 * i - 30, "Survey Shown", properties={"survey": "NPS Q1"})
             for i in range(8)]  # fmt: skip
    rows += [event(f"u{i}", 3600 * i - 600, "Delivery Delayed") for i in (2, 3, 4)]
    rows += [event(f"u{i}", 3600 * i - 600, "Product Viewed") for i in (0, 1, 2)]
    rows += [event("u2", 3600 * 2 - 9 * 86400, "Support Ticket")]  # outside the 7 days
    write_events(duck, rows)
    rate = feedback.response_rate(duck, Scope(), "all").to_pyarrow().to_pylist()[0]
    assert (rate["shown"], rate["responded"]) == (8, 5)
    did = run_report(duck, "nps", {"view": "detractors"}).rows
    assert [(r["event"], r["detractors"], r["promoters"]) for r in did] == [
        ("Delivery Delayed", 3, 0), ("Product Viewed", 1, 2)
    ]  # fmt: skip
    assert did[1]["lift"] == pytest.approx((1 / 3) / 1.0)


# -- faces ------------------------------------------------------------------------------


def test_rest_cli_and_profile(server: LiveServer) -> None:
    """`GET /v1/insights/nps` (read key) and `touchpoints feedback nps --format json` give
    the report's rows; the answer is on the customer's profile timeline."""
    warehouse = server.warehouse
    write_events(warehouse, _answers(SCORES))
    _, reader = add_key(warehouse, "analyst", "read")
    expected = run_report(warehouse, "nps", {})
    for name in ("nps", "csat", "sentiment", "themes"):
        answer = httpx.get(f"{server.url}/v1/insights/{name}",
                           headers={"Authorization": f"Bearer {reader}"}, timeout=60)  # fmt: skip
        assert answer.status_code == 200, answer.text
        if name == "nps":
            assert answer.json()["rows"] == expected.rows
    mentions = httpx.get(f"{server.url}/v1/insights/mentions",
                         headers={"Authorization": f"Bearer {reader}"}, timeout=60)  # fmt: skip
    assert mentions.status_code == 400 and "term" in mentions.text  # share of voice needs terms
    assert httpx.get(f"{server.url}/v1/insights/nps",
                     auth=(server.write_key, "")).status_code == 403  # fmt: skip
    from touchpoints.cli.main import app

    shown = CliRunner().invoke(app, ["-w", warehouse.url, "feedback", "nps", "-f", "json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == expected.rows
    with warehouse.lock:
        build(warehouse)
        timeline = profile(warehouse, "u5")["timeline"]
    assert [row["event"] for row in timeline] == ["Survey Responded"]
