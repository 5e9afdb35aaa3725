"""One customer's voice, for their profile: their latest NPS, CSAT and CES answers, how
many survey answers and brand mentions they gave, and the mean sentiment of their texts.

The answers are theirs by the rule every analysis uses (`insights.frame.USER`); a
mention is theirs when its author's handle is one their profile carries
(`touchpoints.insights.mention_authors`). Sentiment is VADER's compound score
(`touchpoints.models.sentiment`), averaged over their comments and mention texts.
"""

from __future__ import annotations

from typing import Any

import ibis

from touchpoints.insights import mention_authors
from touchpoints.insights.feedback import KINDS, answers
from touchpoints.insights.frame import USER
from touchpoints.models.sentiment import score_texts
from touchpoints.privacy.audit import audited_profile
from touchpoints.warehouse.connection import Warehouse
from touchpoints.warehouse.functions import json_text

#: The texts whose sentiment is averaged, at most (the latest first).
MAX_TEXTS = 500


def voice_summary(warehouse: Warehouse, customer_id: str) -> dict[str, Any]:
    """`answers`, `latest` (kind → score, survey, question, timestamp of the latest
    scored answer of that kind, or None), `mentions`, `texts` and `mean_sentiment`
    (None without texts) of one customer."""
    answered = answers(warehouse)
    mine = (
        answered.filter(answered[USER] == customer_id)
        .select("timestamp", "kind", "score", "survey", "question", "comment")
        .order_by(ibis.desc("timestamp"))
        .to_pyarrow()
        .to_pylist()
    )
    latest: dict[str, Any] = dict.fromkeys(KINDS)
    for row in mine:
        if row["kind"] in KINDS and row["score"] is not None and latest[row["kind"]] is None:
            found = {k: row[k] for k in ("score", "survey", "question", "timestamp")}
            if float(found["score"]).is_integer():  # 9, as answered, not 9.0
                found["score"] = int(found["score"])
            latest[row["kind"]] = found
    posted = mention_authors.mentions(warehouse)
    theirs = posted.filter(
        ibis.coalesce(posted[mention_authors.AUTHOR], posted[USER]) == customer_id
    )
    posts = (
        theirs.select("timestamp", text=json_text(theirs.properties, "text"))
        .order_by(ibis.desc("timestamp"))
        .to_pyarrow()
        .to_pylist()
    )
    dated = [(r["timestamp"], r["comment"]) for r in mine if r["comment"]]
    dated += [(r["timestamp"], r["text"]) for r in posts if r["text"]]
    texts = [text for _, text in sorted(dated, key=lambda d: d[0], reverse=True)][:MAX_TEXTS]
    scored = score_texts(texts) if texts else None
    return {
        "answers": len(mine),
        "latest": latest,
        "mentions": len(posts),
        "texts": len(texts),
        "mean_sentiment": float(scored["compound"].mean()) if scored is not None else None,
    }


def profile_with_voice(
    warehouse: Warehouse, identifier: str, limit: int, *, actor: str, reason: str | None = None
) -> dict[str, Any]:
    """The audited profile read (`privacy.audit.audited_profile`) with `voice`, the
    summary above: what the API and the CLI show."""
    found = audited_profile(warehouse, identifier, limit, actor=actor, reason=reason)
    return {**found, "voice": voice_summary(warehouse, found["customer_id"])}
