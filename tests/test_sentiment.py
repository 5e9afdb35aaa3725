"""Text analytics: sentiment of clear texts, the language noted, themes that surface a
planted complaint, share of voice, and spikes found in a planted burst of mentions."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from tests.insights_data import event, write_events
from touchpoints.errors import InvalidInput
from touchpoints.models import sentiment as s
from touchpoints.models.reports import run_report
from touchpoints.warehouse import Warehouse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I love these shoes, great quality and super comfy!", "positive"),
        ("Terrible service, the worst order I have ever had.", "negative"),
        ("The parcel arrived on Tuesday.", "neutral"),
        ("Not good at all :(", "negative"),
    ],
)
def test_sentiment_of_clear_texts(text: str, expected: str) -> None:
    assert s.label(s.sentiment(text)) == expected


def test_language_is_noted() -> None:
    assert s.language("The delivery was late and the box was broken") == "en"
    assert s.language("El pedido llegó muy tarde y la caja estaba rota") == "es"
    assert s.language("Le colis est arrivé très en retard") == "fr"
    assert s.language("12345 !!!") == "und"


POSITIVE = [
    "Great fit and lovely colours, very happy",
    "Love the new jacket, excellent quality",
    "Fantastic support, quick and friendly",
    "Really happy with the comfy boots",
    "Excellent price and great style",
    "Wonderful shop, lovely staff",
]
NEGATIVE = ["Late delivery again, really annoying", "Awful: late delivery and no apology",
            "Late delivery ruined my weekend, terrible", "Second late delivery this month, bad",
            "The late delivery made me angry", "Bad experience, the box was damaged"]  # fmt: skip


def _scored(texts: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({"text": texts, "timestamp": pd.Timestamp("2026-03-02", tz="UTC")})
    return pd.concat([frame, s.score_texts(texts)], axis=1)


def test_themes_surface_the_planted_complaint() -> None:
    scored = _scored(POSITIVE + NEGATIVE)
    assert (scored["label"] == "negative").sum() == len(NEGATIVE)
    found = s.themes(scored, top=3)
    negative = found[found["side"] == "negative"]
    assert negative["term"].iloc[0] == "late delivery"
    assert negative["texts"].iloc[0] == 5
    assert all("ate delivery" in t for t in negative["examples"].iloc[0])
    assert (found["side"] == "positive").any()
    assert s.themes(_scored(POSITIVE)).empty  # nothing negative: nothing to contrast


def test_spikes_flag_a_planted_burst() -> None:
    days = pd.date_range("2026-03-01", periods=30, freq="D")
    counts = pd.Series([3, 4, 2, 5, 3, 4, 3] * 4 + [3, 4], index=days)
    counts.iloc[20] = 40
    found = s.spikes(counts, window=14)
    assert list(found.loc[found["spike"], "day"]) == [date(2026, 3, 21)]
    assert not found["spike"].iloc[:7].any() and found["z"].iloc[:7].isna().all()
    with pytest.raises(InvalidInput) as caught:
        s.spikes(counts, window=1)
    assert caught.value.field == "window"


def test_mentions_report_share_of_voice_and_volume(duck: Warehouse) -> None:
    rows = []
    for day in range(21):
        burst = day == 17
        for k in range(25 if burst else 2):
            text = "Acme late delivery, awful" if burst else ["Love Acme", "Globex is ok"][k % 2]
            post = {"platform": "x", "text": text, "author_handle": f"h{k}", "reach": 10}
            rows.append(event(f"h{day}-{k}", day * 86400 + k, "Brand Mentioned", anonymous=True,
                              channel="social", properties=post))  # fmt: skip
    write_events(duck, rows)
    share = run_report(duck, "mentions", {"term": ["Acme", "Globex"]}).rows
    assert [(r["term"], r["mentions"]) for r in share] == [("Acme", 45), ("Globex", 20)]
    assert share[0]["share"] == pytest.approx(45 / 65) and share[0]["reach"] == 450
    volume = run_report(duck, "mentions", {"view": "volume"}).rows
    assert [str(r["day"]) for r in volume if r["spike"]] == ["2026-03-19"]
    trend = run_report(duck, "sentiment", {"period": "all", "source": "mention"}).rows
    assert trend[0]["texts"] == 65 and trend[0]["negative"] == pytest.approx(25 / 65)
    with pytest.raises(InvalidInput) as caught:
        run_report(duck, "mentions", {})
    assert caught.value.field == "term"
