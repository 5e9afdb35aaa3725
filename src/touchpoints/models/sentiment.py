"""Text analytics on survey comments and social mentions: sentiment, language, themes,
share of voice and volume spikes.

- Sentiment is VADER's compound score (Hutto & Gilbert, 2014), a lexicon and rules
  tuned for short social text; its lexicon ships inside the `vaderSentiment` package,
  so nothing is downloaded at run time. Labels use VADER's own cut-offs: positive at
  ≥ 0.05, negative at ≤ −0.05, neutral between. VADER reads English; other languages
  are scored too but their `language` column says what they were.
- Language is a stop-word vote (the language whose commonest words appear most among
  the text's words; "und" when none do): cheap, deterministic, good for a note.
- Themes are TF-IDF keyness: the mean TF-IDF weight of each word or two-word phrase
  in negative texts minus that in positive texts; the top of each side, with examples.
- Volume spikes: a day is a spike when its robust z-score against the trailing window
  (the median and MAD of the `window` days before it, MAD scaled by 1.4826 and at
  least 1 mention) reaches `threshold` (3.5, Iglewicz & Hoaglin).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import ibis
import numpy as np
import pandas as pd

from touchpoints.errors import InvalidInput, MissingDependency
from touchpoints.insights import mention_authors
from touchpoints.insights.feedback import answers
from touchpoints.insights.frame import USER, Period, Scope, event_field
from touchpoints.warehouse.connection import Warehouse
from touchpoints.warehouse.functions import json_text

BRAND_MENTIONED = "Brand Mentioned"
POSITIVE, NEGATIVE = 0.05, -0.05
LABELS = ("positive", "neutral", "negative")
TEXT_COLUMNS = ["timestamp", USER, "source", "platform", "kind", "score", "reach", "likes",
                "url", "text"]  # fmt: skip

#: The commonest words of each language, for `language`.
STOP_WORDS: dict[str, frozenset[str]] = {
    code: frozenset(words.split())
    for code, words in {
        "en": "the and is it to was of my i you this that for with not but very are have",
        "es": "el la los las que es y de en un una por muy pero no con para lo mi",
        "fr": "le la les est et de des un une que pas très mais pour avec je il ce mon",
        "de": "der die das und ist nicht ein eine ich sehr aber mit zu auf es war mein",
        "it": "il la e di che non un una per con molto ma sono lo mi è",
        "pt": "o a os as que e de não um uma para com muito mas é meu foi",
        "nl": "de het een en is niet van ik zeer maar met voor op dat was mijn",
    }.items()
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_MASKS = re.compile(r"\[(?:email|phone)\]")


@cache
def _analyzer() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise MissingDependency(
            "sentiment needs vaderSentiment: pip install vaderSentiment"
        ) from exc
    return SentimentIntensityAnalyzer()


def label(compound: float) -> str:
    """positive, neutral or negative, by VADER's cut-offs."""
    if compound >= POSITIVE:
        return "positive"
    if compound <= NEGATIVE:
        return "negative"
    return "neutral"


def sentiment(text: str) -> float:
    """VADER's compound score of `text`, from −1 (most negative) to 1."""
    return float(_analyzer().polarity_scores(_MASKS.sub(" ", text))["compound"])


def language(text: str) -> str:
    """The ISO 639-1 code of the language whose stop words `text` uses most, else "und"."""
    words = [w.lower() for w in _WORD.findall(text)]
    votes = {code: sum(w in stop for w in words) for code, stop in STOP_WORDS.items()}
    best = max(votes, key=lambda code: votes[code])
    return best if votes[best] > 0 else "und"


def score_texts(texts: Sequence[str]) -> pd.DataFrame:
    """`compound`, `label` and `language` of each text, in order."""
    compounds = [sentiment(t) for t in texts]
    return pd.DataFrame(
        {
            "compound": compounds,
            "label": [label(c) for c in compounds],
            "language": [language(t) for t in texts],
        }
    )


# -- reading the texts ----------------------------------------------------------------


def texts(warehouse: Warehouse, scope: Scope = Scope(), by: str | None = None) -> pd.DataFrame:
    """Every survey comment and mention text in scope, scored: `TEXT_COLUMNS`, `by` (when
    given), `compound`, `label` and `language`. `source` is survey or mention; a
    mention's `customer_id` is the customer carrying its author's handle, where one
    does (`touchpoints.insights.mention_authors`)."""
    answered = answers(warehouse, scope)
    answered = answered.filter(answered.comment.notnull() & (answered.comment != ""))
    surveys = answered.select(
        "timestamp", USER, source=ibis.literal("survey"), platform=answered.channel,
        kind=answered.kind, score=answered.score, reach=ibis.null("float64"),
        likes=ibis.null("float64"), url=ibis.null("string"), text=answered.comment,
        _by=event_field(answered, by) if by else ibis.null("string"),
    )  # fmt: skip
    posted = mention_authors.mentions(warehouse, scope)
    post = json_text(posted.properties, "text")
    posted = posted.filter(post.notnull() & (post != ""))
    mentions = posted.select(
        # the customer carrying the author's handle, where one does (mention_authors)
        "timestamp", **{USER: ibis.coalesce(posted[mention_authors.AUTHOR], posted[USER])},
        source=ibis.literal("mention"), platform=json_text(posted.properties, "platform"),
        kind=ibis.null("string"), score=ibis.null("float64"),
        reach=json_text(posted.properties, "reach").try_cast("float64"),
        likes=json_text(posted.properties, "likes").try_cast("float64"),
        url=json_text(posted.properties, "url"), text=json_text(posted.properties, "text"),
        _by=event_field(posted, by) if by else ibis.null("string"),
    )  # fmt: skip
    frame = surveys.union(mentions).order_by("timestamp").to_pandas()
    frame = frame.rename(columns={"_by": by}) if by else frame.drop(columns="_by")
    scored = score_texts(frame["text"].astype(str).tolist())
    return pd.concat([frame.reset_index(drop=True), scored], axis=1)


def _period(moments: pd.Series, period: Period | str) -> pd.Series:
    period = Period(period)
    moments = pd.to_datetime(moments, utc=True).dt.tz_localize(None)
    if period is Period.all:
        return pd.Series(pd.Timestamp("1970-01-01"), index=moments.index)
    if period is Period.week:
        return moments.dt.normalize() - pd.to_timedelta(moments.dt.weekday, unit="D")
    if period is Period.month:
        return moments.dt.to_period("M").dt.to_timestamp()
    return moments.dt.normalize()


def sentiment_trend(
    scored: pd.DataFrame, period: Period | str = Period.week, by: str | None = None
) -> pd.DataFrame:
    """Per period, source (and `by`): texts, mean compound score, and the shares of
    positive, neutral and negative texts."""
    keys = ["period", "source", *([by] if by else [])]
    columns = [*keys, "texts", "mean_compound", *LABELS]
    if scored.empty:
        return pd.DataFrame(columns=columns)
    frame = scored.assign(period=_period(scored["timestamp"], period).dt.date)
    grouped = frame.groupby(keys, dropna=False)
    result = grouped.agg(texts=("text", "size"), mean_compound=("compound", "mean"))
    for name in LABELS:
        result[name] = grouped["label"].apply(lambda s, n=name: float((s == n).mean()))
    return result.reset_index()[columns]


# -- themes ---------------------------------------------------------------------------


def themes(scored: pd.DataFrame, top: int = 10, examples: int = 2) -> pd.DataFrame:
    """The most characteristic words and two-word phrases of negative texts against
    positive ones and the reverse (TF-IDF keyness), each with how many texts of its
    side use it and up to `examples` of them (the strongest first)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    columns = ["side", "rank", "term", "keyness", "texts", "examples"]
    negative = (scored["label"] == "negative").to_numpy() if not scored.empty else None
    positive = (scored["label"] == "positive").to_numpy() if not scored.empty else None
    if negative is None or positive is None or not negative.any() or not positive.any():
        return pd.DataFrame(columns=columns)
    documents = [_MASKS.sub(" ", str(t)) for t in scored["text"]]
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), stop_words="english", sublinear_tf=True,
        min_df=2 if len(documents) >= 10 else 1, token_pattern=r"(?u)\b[^\W\d_][^\W\d_']+\b",
    )  # fmt: skip
    try:
        matrix = vectorizer.fit_transform(documents).tocsc()
    except ValueError:  # nothing but stop words
        return pd.DataFrame(columns=columns)
    terms = vectorizer.get_feature_names_out()
    keyness = np.asarray(matrix[negative].mean(axis=0) - matrix[positive].mean(axis=0)).ravel()
    strength = scored["compound"].to_numpy()
    words = np.array([term.count(" ") + 1 for term in terms])
    rows: list[dict[str, Any]] = []
    for side, mask, sign in (("negative", negative, 1.0), ("positive", positive, -1.0)):
        # strongest first; on a tie the longer phrase ("late delivery" before "late")
        order = np.lexsort((-words, -np.round(sign * keyness, 12)))
        for rank, j in enumerate([j for j in order if sign * keyness[j] > 0][:top], start=1):
            users = np.flatnonzero(mask & (matrix[:, j].toarray().ravel() > 0))
            users = users[np.argsort(sign * strength[users], kind="stable")]
            rows.append({
                "side": side, "rank": rank, "term": str(terms[j]),
                "keyness": float(sign * keyness[j]), "texts": len(users),
                "examples": [str(scored["text"].iloc[i]) for i in users[:examples]],
            })  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


# -- mentions -------------------------------------------------------------------------


def _term_pattern(term: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(term.lower())}(?!\w)")


def share_of_voice(mentions: pd.DataFrame, terms: Sequence[str]) -> pd.DataFrame:
    """Per configured term (brand and competitors): the mentions naming it, its share of
    all term mentions, reach, likes, mean sentiment and the negative share. A mention
    naming two terms counts for both."""
    if not terms:
        raise InvalidInput("share of voice needs the brand and competitor terms", field="term")
    rows = []
    lowered = mentions["text"].astype(str).str.lower() if not mentions.empty else pd.Series()
    for term in terms:
        hits = lowered.map(lambda t, p=_term_pattern(term): bool(p.search(t))).astype(bool)
        found = mentions[hits.to_numpy()] if not mentions.empty else mentions
        rows.append({
            "term": term, "mentions": len(found),
            "reach": float(found["reach"].fillna(0).sum()) if len(found) else 0.0,
            "likes": float(found["likes"].fillna(0).sum()) if len(found) else 0.0,
            "mean_compound": float(found["compound"].mean()) if len(found) else None,
            "negative": float((found["label"] == "negative").mean()) if len(found) else None,
        })  # fmt: skip
    total = sum(row["mentions"] for row in rows)
    for row in rows:
        row["share"] = row["mentions"] / total if total else None
    columns = ["term", "mentions", "share", "reach", "likes", "mean_compound", "negative"]
    return pd.DataFrame(rows, columns=columns)


def spikes(
    daily: pd.Series, window: int = 14, threshold: float = 3.5, min_history: int = 7
) -> pd.DataFrame:
    """Each day of a daily count series (gaps are zero) with the median and MAD of the
    `window` days before it, its robust z-score and whether it is a spike. Days with
    fewer than `min_history` days before them are never flagged."""
    if window < 2:
        raise InvalidInput("window must be at least 2 days", field="window")
    columns = ["day", "mentions", "baseline", "mad", "z", "spike"]
    if daily.empty:
        return pd.DataFrame(columns=columns)
    index = pd.date_range(daily.index.min(), daily.index.max(), freq="D")
    counts = daily.reindex(index, fill_value=0).astype(float).to_numpy()
    rows = []
    for i, count in enumerate(counts):
        before = counts[max(0, i - window) : i]
        if len(before) < min_history:
            rows.append({"day": index[i].date(), "mentions": int(count), "baseline": None,
                         "mad": None, "z": None, "spike": False})  # fmt: skip
            continue
        median = float(np.median(before))
        mad = float(np.median(np.abs(before - median)))
        z = (count - median) / max(1.4826 * mad, 1.0)
        rows.append({"day": index[i].date(), "mentions": int(count), "baseline": median,
                     "mad": mad, "z": z, "spike": bool(z >= threshold)})  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def mention_volume(
    mentions: pd.DataFrame, window: int = 14, threshold: float = 3.5
) -> pd.DataFrame:
    """Mentions per day with spikes flagged (see `spikes`)."""
    if mentions.empty:
        return spikes(pd.Series(dtype=float), window, threshold)
    days = pd.to_datetime(mentions["timestamp"], utc=True).dt.tz_localize(None).dt.normalize()
    return spikes(days.value_counts().sort_index(), window, threshold)


def by_platform(mentions: pd.DataFrame) -> pd.DataFrame:
    """Mentions, reach and mean sentiment per platform."""
    columns = ["platform", "mentions", "reach", "mean_compound", "negative"]
    if mentions.empty:
        return pd.DataFrame(columns=columns)
    grouped = mentions.groupby("platform", dropna=False)
    result = grouped.agg(
        mentions=("text", "size"), reach=("reach", "sum"), mean_compound=("compound", "mean")
    )
    result["negative"] = grouped["label"].apply(lambda s: float((s == "negative").mean()))
    return result.reset_index().sort_values("mentions", ascending=False)[columns]
