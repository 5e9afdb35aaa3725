"""Survey analysis as Ibis expressions (DuckDB and Spark alike): NPS with its confidence
interval, CSAT and CES, the response rate, and what detractors did before answering.

Answers are "Survey Responded" events (the tracker's `tp.track('Survey Responded', …)`
or the feedback importer) with properties `score`, `survey`, `question`, `comment` and
optionally `kind` (`nps`, `csat` or `ces`). Without `kind`, the survey and question
words tell it: "nps" or "recommend" is NPS, "csat" or "satisf" is CSAT, "ces" or
"effort" or "easy" is CES. Scales: NPS 0–10, CSAT 1–5, CES 1–7.

NPS = %promoters (9–10) − %detractors (0–6), from −100 to 100. Its standard error
follows from the multinomial variance of the difference of two shares of one sample,

    var(p_P − p_D) = (p_P + p_D − (p_P − p_D)²) / n

(e.g. Rocks, "Confidence intervals for the Net Promoter Score", 2016), and the interval is
the normal approximation NPS ± z·100·sqrt(var), clipped to [−100, 100]. When every answer
is a promoter (or a detractor) the variance is 0 and the interval collapses to the point,
as the formula says; with few answers, read it with care.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import USER, Period, Scope, event_field, period_start, user_events
from touchpoints.warehouse.connection import Warehouse
from touchpoints.warehouse.functions import json_text

SURVEY_RESPONDED = "Survey Responded"
SURVEY_SHOWN = "Survey Shown"
KINDS = ("nps", "csat", "ces")
#: Words of a survey or question name that tell its kind, tried in this order.
KIND_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("nps", ("nps", "recommend")),
    ("csat", ("csat", "satisf")),
    ("ces", ("ces", "effort", "easy")),
)
#: z for a two-sided 95% interval.
Z95 = 1.959963984540054


def _kind(properties: ir.StringValue) -> ir.StringValue:
    given = json_text(properties, "kind").lower()
    words = (
        json_text(properties, "survey").fill_null("")
        + " "
        + json_text(properties, "question").fill_null("")
    ).lower()
    cases = [(words.contains(word), kind) for kind, found in KIND_WORDS for word in found]
    inferred = ibis.cases(*cases, else_=ibis.null("string"))
    return ibis.ifelse(given.isin(KINDS), given, inferred)


def answers(warehouse: Warehouse, scope: Scope = Scope()) -> ir.Table:
    """The survey answers in scope: the events with `USER`, `kind`, `score` (a number or
    null), `survey`, `question` and `comment` added."""
    events = user_events(warehouse, scope)
    found = events.filter(events.event == SURVEY_RESPONDED)
    return found.mutate(
        kind=_kind(found.properties),
        score=json_text(found.properties, "score").try_cast("float64"),
        survey=json_text(found.properties, "survey"),
        question=json_text(found.properties, "question"),
        comment=json_text(found.properties, "comment"),
    )


def _grouped(table: ir.Table, period: Period | str, by: str | None) -> tuple[ir.Table, list[str]]:
    keys = ["period"] if Period(period) is not Period.all else []
    table = table.mutate(period=period_start(table.timestamp, period))
    if by:
        table = table.mutate(**{by: event_field(table, by)})
        keys.append(by)
    return table, keys


def _share(part: ir.NumericValue, whole: ir.NumericValue) -> ir.FloatingValue:
    return ibis.ifelse(whole > 0, part.cast("float64") / whole.cast("float64"), ibis.null())


def nps(answered: ir.Table, period: Period | str = Period.all, by: str | None = None) -> ir.Table:
    """NPS per period (and per value of field `by`): responses, promoters, passives,
    detractors, `nps` and its 95% interval `nps_low`..`nps_high`. With `Period.all`
    and no `by`, one row even when nobody answered (0 responses, null NPS)."""
    scored = answered.filter((answered.kind == "nps") & answered.score.between(0, 10))
    scored, keys = _grouped(scored, period, by)
    counts = dict(
        responses=scored.count(),
        promoters=(scored.score >= 9).cast("int64").sum().fill_null(0),
        passives=((scored.score >= 7) & (scored.score < 9)).cast("int64").sum().fill_null(0),
        detractors=(scored.score < 7).cast("int64").sum().fill_null(0),
    )
    counted = scored.group_by(keys).aggregate(**counts) if keys else scored.aggregate(**counts)
    p_promoter = _share(counted.promoters, counted.responses)
    p_detractor = _share(counted.detractors, counted.responses)
    difference = p_promoter - p_detractor
    variance = (p_promoter + p_detractor - difference * difference) / counted.responses
    margin = Z95 * 100 * variance.clip(lower=0).sqrt()
    score = difference * 100
    result = counted.mutate(
        nps=score,
        nps_low=ibis.ifelse(score.isnull(), ibis.null(), ibis.greatest(score - margin, -100.0)),
        nps_high=ibis.ifelse(score.isnull(), ibis.null(), ibis.least(score + margin, 100.0)),
        promoter_share=p_promoter,
        detractor_share=p_detractor,
    )
    return result.order_by(keys) if keys else result


def satisfaction(
    answered: ir.Table, period: Period | str = Period.all, by: str | None = None
) -> ir.Table:
    """CSAT and CES per period (and `by`): CSAT is the share of 4–5 answers on the 1–5
    scale (with the mean beside it); CES is the mean effort score (1–7)."""
    scored = answered.filter(answered.kind.isin(["csat", "ces"]) & answered.score.notnull())
    scored, keys = _grouped(scored, period, by)
    csat = (scored.kind == "csat") & scored.score.between(1, 5)
    ces = (scored.kind == "ces") & scored.score.between(1, 7)
    values = dict(
        csat_responses=csat.cast("int64").sum().fill_null(0),
        satisfied=(csat & (scored.score >= 4)).cast("int64").sum().fill_null(0),
        csat_mean=ibis.ifelse(csat, scored.score, ibis.null()).mean(),
        ces_responses=ces.cast("int64").sum().fill_null(0),
        ces_mean=ibis.ifelse(ces, scored.score, ibis.null()).mean(),
    )
    counted = scored.group_by(keys).aggregate(**values) if keys else scored.aggregate(**values)
    result = counted.mutate(csat=_share(counted.satisfied, counted.csat_responses))
    result = result.select(
        *keys, "csat_responses", "satisfied", "csat", "csat_mean", "ces_responses", "ces_mean"
    )
    return result.order_by(keys) if keys else result


def response_rate(warehouse: Warehouse, scope: Scope, period: Period | str) -> ir.Table:
    """Of the people shown a survey ("Survey Shown", by `survey` property) in each period,
    how many answered it afterwards: shown, responded, response_rate."""
    events = user_events(warehouse, scope)
    survey = json_text(events.properties, "survey").fill_null("")
    shown = events.filter(events.event == SURVEY_SHOWN).mutate(_survey=survey)
    shown = shown.group_by([USER, "_survey"]).aggregate(_shown=shown.timestamp.min())
    replied = events.filter(events.event == SURVEY_RESPONDED).mutate(_survey=survey)
    replied = replied.group_by([USER, "_survey"]).aggregate(_replied=replied.timestamp.max())
    replied = replied.rename(_r_user=USER, _r_survey="_survey")
    joined = shown.left_join(
        replied, (shown[USER] == replied._r_user) & (shown._survey == replied._r_survey)
    )
    joined = joined.mutate(
        period=period_start(joined._shown, period),
        _answered=(joined._replied.notnull() & (joined._replied >= joined._shown)).cast("int64"),
    )
    counted = joined.group_by("period").aggregate(
        shown=joined.count(), responded=joined._answered.sum()
    )
    return counted.mutate(response_rate=_share(counted.responded, counted.shown)).order_by("period")


def before_detractors(warehouse: Warehouse, scope: Scope, days: int = 7, top: int = 20) -> ir.Table:
    """What detractors did in the `days` before answering an NPS question, against what
    promoters did: per event name, the share of each group who did it, and the lift."""
    if days < 1:
        raise InvalidInput("days must be at least 1", field="days")
    answered = answers(warehouse, scope)
    answered = answered.filter((answered.kind == "nps") & answered.score.between(0, 10))
    answered = answered.select(
        _who=answered[USER],
        _at=answered.timestamp,
        _group=ibis.cases(
            (answered.score >= 9, "promoter"), (answered.score < 7, "detractor"), else_="passive"
        ),
    ).filter(lambda t: t._group != "passive")
    groups = answered.group_by("_group").aggregate(_people=answered._who.nunique())
    events = user_events(warehouse)
    events = events.filter(~events.event.isin([SURVEY_RESPONDED, SURVEY_SHOWN]))
    window = ibis.interval(days=days)
    near = answered.join(
        events,
        (answered._who == events[USER])
        & (events.timestamp < answered._at)
        & (events.timestamp >= answered._at - window),
    )
    did = near.group_by(["_group", "event"]).aggregate(people=near._who.nunique())
    did = did.join(groups, "_group")
    did = did.mutate(share=did.people.cast("float64") / did._people.cast("float64"))
    detractors = did.filter(did._group == "detractor").select(
        "event", detractors=did.people, detractor_share=did.share
    )
    promoters = did.filter(did._group == "promoter").select(
        _event="event", promoters=did.people, promoter_share=did.share
    )
    both = detractors.left_join(promoters, detractors.event == promoters._event)
    both = both.select(
        "event",
        "detractors",
        "detractor_share",
        promoters=both.promoters.fill_null(0),
        promoter_share=both.promoter_share.fill_null(0.0),
    )
    both = both.mutate(
        lift=ibis.ifelse(
            both.promoter_share > 0, both.detractor_share / both.promoter_share, ibis.null()
        )
    )
    return both.order_by([ibis.desc("detractors"), "event"]).limit(top)
